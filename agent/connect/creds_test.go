package connect

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/brokertest"
)

// credsSecrets returns Secrets that use systemd-creds with a host key of
// this test (SYSTEMD_CREDENTIAL_SECRET), so the machine's own key is not
// created or used. It fails the test when systemd-creds is missing.
func credsSecrets(t *testing.T, configDir string) Secrets {
	t.Helper()
	bin, err := exec.LookPath("systemd-creds")
	if err != nil {
		t.Fatalf("systemd-creds is not installed (Debian's systemd package ships it): %v", err)
	}
	return Secrets{ConfigDir: configDir, Creds: bin,
		Env: append(os.Environ(), "SYSTEMD_CREDENTIAL_SECRET="+filepath.Join(t.TempDir(), "host.secret"))}
}

// TestEncryptedPassword: with systemd-creds the password is stored only
// encrypted (the file does not contain it, the config does not name it),
// the agent uses it from $CREDENTIALS_DIRECTORY as systemd's
// LoadCredentialEncrypted= provides it, another host key cannot decrypt it,
// and disconnect removes it.
func TestEncryptedPassword(t *testing.T) {
	const pw = "device-password-7f3a9c"
	b := brokertest.Mosquitto(t, brokertest.Options{ACL: aclFile + "user watcher\ntopic read #\n",
		Users: map[string]string{"pi1": pw, "watcher": "pw"}})
	o := setup(t)
	o.Secrets = credsSecrets(t, o.ConfigDir)
	o.URLs, o.Username, o.Password = []string{b.URL}, "pi1", []byte(pw)
	res, err := Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stored.Encrypted || res.Stored.Path != CredentialPath(o.ConfigDir) {
		t.Fatalf("stored %+v", res.Stored)
	}
	enc, err := os.ReadFile(res.Stored.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range []string{pw, base64.StdEncoding.EncodeToString([]byte(pw)), base64.RawStdEncoding.EncodeToString([]byte(pw))} {
		if bytes.Contains(enc, []byte(form)) {
			t.Errorf("the credential file contains the password (%q)", form)
		}
	}
	if st, _ := os.Stat(res.Stored.Path); st.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v", st.Mode())
	}
	cfgBytes, _ := os.ReadFile(filepath.Join(o.ConfigDir, agent.ConfigFileName))
	if bytes.Contains(cfgBytes, []byte(pw)) || bytes.Contains(cfgBytes, []byte("password")) {
		t.Errorf("the config names a password:\n%s", cfgBytes)
	}
	if _, err := os.Stat(PlainPasswordPath(o.ConfigDir)); !os.IsNotExist(err) {
		t.Errorf("plain password file exists: %v", err)
	}
	got, err := o.Secrets.Decrypt(res.Stored.Path)
	if err != nil || string(got) != pw {
		t.Fatalf("decrypt: %q %v", got, err)
	}
	other := credsSecrets(t, o.ConfigDir)
	if _, err := other.Decrypt(res.Stored.Path); err == nil {
		t.Error("another host key decrypted the credential")
	}

	// What systemd does for LoadCredentialEncrypted=: decrypt into the
	// service's credentials directory.
	credDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(credDir, agent.CredentialName), got, 0o400); err != nil {
		t.Fatal(err)
	}
	w := brokertest.Connect(t, b.URL, brokertest.ClientOptions{Username: "watcher", Password: "pw"})
	w.Subscribe("picockpit/pi1/status")
	stop := runAgentEnv(t, o.ConfigDir, []string{"CREDENTIALS_DIRECTORY=" + credDir})
	w.WaitFor(15*time.Second, "the agent online with the encrypted password", brokertest.Topic("picockpit/pi1/status", "online"))
	stop()

	dres, err := Disconnect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(dres.Cleared, "picockpit/pi1/status") {
		t.Errorf("cleared %v", dres.Cleared)
	}
	if _, err := os.Stat(res.Stored.Path); !os.IsNotExist(err) {
		t.Errorf("the credential survived disconnect: %v", err)
	}
}

func runAgentEnv(t *testing.T, configDir string, environ []string) func() {
	t.Helper()
	a, res, err := agent.New(agent.Options{ConfigDir: configDir, StateDir: t.TempDir(), Version: "test", Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, res.Modules, res.Problems) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}
