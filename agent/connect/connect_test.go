package connect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/brokertest"
)

const oldConfig = `{
  "broker": {
    "url": ["mqtt://127.0.0.1:1"],
    "username": "old-user",
    "password": "old-password",
    "keepalive": "20s"
  },
  "device": {"id": "pi1"},
  "log": {"level": "warn"}
}
`

// setup writes the existing config and returns the options of a connect
// run against it (password stored in a plain file unless a test says otherwise).
func setup(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, agent.ConfigFileName), []byte(oldConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return Options{ConfigDir: dir, StateDir: t.TempDir(), Secrets: Secrets{ConfigDir: dir, Creds: "-"}, Timeout: 15 * time.Second}
}

// unchanged fails the test if the config dir holds anything but the old config.
func unchanged(t *testing.T, o Options) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(o.ConfigDir, agent.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != oldConfig {
		t.Errorf("the config changed:\n%s", b)
	}
	entries, _ := os.ReadDir(o.ConfigDir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the config dir holds more than the config: %v", names)
	}
}

var aclFile = `user pi1
topic readwrite picockpit/pi1/#
user readonly
topic read picockpit/pi1/#
user writeonly
topic write picockpit/pi1/#
`

// TestConnectFailureKinds: each way a login can fail gets its own kind and
// message, and leaves the existing config byte for byte as it was.
func TestConnectFailureKinds(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{TLS: true, ACL: aclFile,
		Users: map[string]string{"pi1": "pw1", "readonly": "pw", "writeonly": "pw"}})
	closed := fmt.Sprintf("mqtt://127.0.0.1:%d", brokertest.FreePort(t))
	cases := []struct {
		name       string
		url        string
		user, pass string
		ca         string
		kind       Kind
		want       []string
	}{
		{"dns", "mqtt://no-such-host.invalid:1883", "pi1", "pw1", "", KindDNS, []string{"DNS failure", "no-such-host.invalid"}},
		{"refused", closed, "pi1", "pw1", "", KindRefused, []string{"connection refused", "nothing listens"}},
		{"tls unknown CA", b.TLSURL, "pi1", "pw1", b.Certs.OtherCAFile, KindTLS,
			[]string{"TLS verification failed", "subject CN=localhost", "unknown authority", "--ca-file"}},
		{"tls without CA", b.TLSURL, "pi1", "pw1", "", KindTLS, []string{"TLS verification failed", "CN=localhost"}},
		{"plain to TLS port", strings.Replace(b.TLSURL, "mqtts", "mqtt", 1), "pi1", "pw1", "", KindProtocol, []string{"closed the connection"}},
		{"bad password", b.TLSURL, "pi1", "wrong", b.Certs.CAFile, KindCredentials, []string{"bad credentials", "user name and password"}},
		{"unknown user", b.URL, "nobody", "pw", "", KindCredentials, []string{"bad credentials"}},
		{"publish denied", b.URL, "readonly", "pw", "", KindPublishDenied, []string{"not authorized to publish", "picockpit/pi1/connect/probe/"}},
		{"read denied", b.URL, "writeonly", "pw", "", KindReadDenied, []string{"not authorized to read", "never came back"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := setup(t)
			o.URLs, o.Username, o.Password, o.CAFile = []string{c.url}, c.user, []byte(c.pass), c.ca
			if c.kind == KindReadDenied {
				o.ProbeWait = 500 * time.Millisecond // the message never comes: do not wait long
			}
			_, err := Connect(context.Background(), o)
			if err == nil {
				t.Fatal("connect succeeded")
			}
			if k := KindOf(err); k != c.kind {
				t.Errorf("kind %v, want %v: %v", k, c.kind, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q: %v", w, err)
				}
			}
			unchanged(t, o)
		})
	}
}

// TestConnectSavesAndAgentUses: a working login over TLS is saved (keys it
// did not change kept, in order; password out of the config, in a 0600
// file) and an agent started from that config connects with it.
func TestConnectSavesAndAgentUses(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{TLS: true, ACL: aclFile + "user watcher\ntopic read #\n",
		Users: map[string]string{"pi1": "pw1", "watcher": "pw"}})
	o := setup(t)
	o.URLs, o.Username, o.Password, o.CAFile = []string{b.TLSURL}, "pi1", []byte("pw1"), b.Certs.CAFile
	res, err := Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.URL != b.TLSURL || res.Stored.Encrypted || res.Stored.Path != PlainPasswordPath(o.ConfigDir) {
		t.Errorf("result %+v", res)
	}
	cfgPath := filepath.Join(o.ConfigDir, agent.ConfigFileName)
	got, _ := os.ReadFile(cfgPath)
	want := fmt.Sprintf(`{
  "broker": {
    "url": [
      %q
    ],
    "username": "pi1",
    "keepalive": "20s",
    "password_file": %q,
    "ca_file": %q
  },
  "device": {
    "id": "pi1"
  },
  "log": {
    "level": "warn"
  }
}
`, b.TLSURL, PlainPasswordPath(o.ConfigDir), b.Certs.CAFile)
	if string(got) != want {
		t.Errorf("config:\n%s\nwant:\n%s", got, want)
	}
	for _, p := range []string{cfgPath, PlainPasswordPath(o.ConfigDir)} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v (want 0600)", p, st.Mode(), err)
		}
	}
	if pw, _ := os.ReadFile(PlainPasswordPath(o.ConfigDir)); string(pw) != "pw1\n" {
		t.Errorf("password file %q", pw)
	}

	w := brokertest.Connect(t, b.URL, brokertest.ClientOptions{Username: "watcher", Password: "pw"})
	w.Subscribe("picockpit/pi1/status")
	runAgent(t, o.ConfigDir, nil)
	w.WaitFor(15*time.Second, "the agent online with the saved login", brokertest.Topic("picockpit/pi1/status", "online"))
}

// runAgent runs an agent from configDir until the test ends and returns its state dir.
func runAgent(t *testing.T, configDir string, environ []string) string {
	t.Helper()
	state := t.TempDir()
	a, res, err := agent.New(agent.Options{ConfigDir: configDir, StateDir: state, Version: "test", Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, res.Modules, res.Problems) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
	})
	return state
}

// TestConfigWriteKeepsKeys: the document editor keeps unknown keys, order
// and values it does not touch.
func TestConfigWriteKeepsKeys(t *testing.T) {
	in := `{"b": 1.50, "a": {"z": [1, {"y": true}], "x": null}, "stats": {"interval": "5s"}}`
	d, err := ParseDoc([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	d.Set("a.w", "new")
	d.Delete("b")
	d.Set("c.d", []any{"u"})
	want := `{
  "a": {
    "z": [
      1,
      {
        "y": true
      }
    ],
    "x": null,
    "w": "new"
  },
  "stats": {
    "interval": "5s"
  },
  "c": {
    "d": [
      "u"
    ]
  }
}
`
	if got := string(d.Bytes()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	for _, bad := range []string{`[1]`, `{"a":1} {"b":2}`, `{"a":`} {
		if _, err := ParseDoc([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if !bytes.Equal([]byte(want), mustDoc(t, want).Bytes()) {
		t.Error("rendering is not stable")
	}
}

func mustDoc(t *testing.T, s string) *Doc {
	d, err := ParseDoc([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
