package connect

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/picockpit/picockpit-client/agent"
)

// CredentialName is the systemd credential that holds the broker password:
// the unit loads <config dir>/credentials/broker-password.cred with
// LoadCredentialEncrypted= and the agent reads
// $CREDENTIALS_DIRECTORY/broker-password.
const CredentialName = agent.CredentialName

// CredentialPath is where connect stores the encrypted password.
func CredentialPath(configDir string) string {
	return filepath.Join(configDir, "credentials", CredentialName+".cred")
}

// PlainPasswordPath is where connect stores the password, mode 0600, when
// systemd-creds is not available; the config names it in broker.password_file.
func PlainPasswordPath(configDir string) string {
	return filepath.Join(configDir, "broker-password")
}

// Secrets stores the broker password: encrypted with systemd-creds (host
// key, and the TPM2 when there is one) when it works here, else in a 0600
// file.
type Secrets struct {
	ConfigDir string
	// Creds is the systemd-creds binary ("" looks it up in PATH; "-"
	// disables encryption).
	Creds string
	// Env is the environment of systemd-creds (nil: this process's).
	Env []string
}

// Stored says where the password went.
type Stored struct {
	Encrypted bool
	Path      string
	// Why says why it was not encrypted ("" when it was).
	Why string
}

func (s Secrets) credsBin() (string, error) {
	if s.Creds == "-" {
		return "", errors.New("encryption disabled")
	}
	if s.Creds != "" {
		return s.Creds, nil
	}
	return exec.LookPath("systemd-creds")
}

// Encrypt runs systemd-creds encrypt on password, bound to CredentialName.
func (s Secrets) Encrypt(password []byte) ([]byte, error) {
	bin, err := s.credsBin()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "encrypt", "--name="+CredentialName, "-", "-")
	cmd.Env = s.Env
	cmd.Stdin = bytes.NewReader(password)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("systemd-creds encrypt: %w: %s", err, bytes.TrimSpace(errb.Bytes()))
	}
	if out.Len() == 0 || bytes.Contains(out.Bytes(), password) {
		return nil, errors.New("systemd-creds encrypt: unexpected output")
	}
	return out.Bytes(), nil
}

// Remove deletes both forms of the stored password.
func (s Secrets) Remove() error {
	var errs []error
	for _, p := range []string{CredentialPath(s.ConfigDir), PlainPasswordPath(s.ConfigDir)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
