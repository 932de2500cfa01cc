package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/contract"
)

// Options of Connect and Disconnect. Empty fields keep what the config has.
type Options struct {
	ConfigDir string
	StateDir  string
	// Sections are the module sections the config file may hold.
	Sections []string

	URLs     []string
	Username string
	// Password of Username (nil: none, for brokers that allow anonymous).
	Password []byte
	CAFile   string
	CertFile string
	KeyFile  string
	DeviceID string
	Prefix   string

	// Admin, when set, provisions the device's own account with Mosquitto's
	// dynamic security plugin using this login (only Username and Password
	// are used; the broker URLs and TLS files are the device's). Its
	// password is used for this run only and never stored.
	Admin *Target
	// HADiscoveryPrefixes are the Home Assistant discovery prefixes whose
	// device topic (HADiscoveryTopic) the provisioned role may write and
	// disconnect clears. Default: DefaultHADiscoveryPrefix. Wire the
	// configured homeassistant.discovery_prefix here.
	HADiscoveryPrefixes []string

	Secrets Secrets
	// Timeout bounds each network step (default 10s).
	Timeout time.Duration
	// ProbeWait bounds the wait for the test message (default Timeout).
	ProbeWait time.Duration
}

// Result says what Connect did.
type Result struct {
	URL        string // the broker URL that worked
	Device     string
	Root       contract.Root
	Stored     Stored   // where the password went (zero when there is none)
	Account    *Account // the provisioned account
	ConfigFile string
}

// provisionFile in the state dir remembers the account connect --provision
// created, so that disconnect removes it.
const provisionFile = "provisioned.json"

type provisionRecord struct {
	Account
	Prefix string `json:"prefix"`
	Device string `json:"device"`
}

// current loads the config file (without environment or flag overrides:
// those are not what connect writes) and the device identity.
func current(o Options) (agent.Config, contract.Device, error) {
	cfg, err := agent.LoadConfig(o.ConfigDir, nil, nil, o.Sections)
	if err != nil {
		return cfg, contract.Device{}, fmt.Errorf("the current config has a problem; fix it first (picockpit-client check): %w", err)
	}
	id := cfg.Device.ID
	if o.DeviceID != "" {
		id = o.DeviceID
	}
	dev, err := agent.ReadDevice(cfg.Host.Root, id)
	if err != nil {
		return cfg, dev, fmt.Errorf("device id: %w", err)
	}
	return cfg, dev, nil
}

func (o Options) merged(cfg agent.Config) Options {
	if len(o.URLs) == 0 {
		o.URLs = cfg.Broker.URL
	}
	if o.Prefix == "" {
		o.Prefix = cfg.Topics.Prefix
	}
	if o.CAFile == "" {
		o.CAFile = cfg.Broker.CAFile
	}
	if o.CertFile == "" && o.KeyFile == "" {
		o.CertFile, o.KeyFile = cfg.Broker.CertFile, cfg.Broker.KeyFile
	}
	if o.Secrets.ConfigDir == "" {
		o.Secrets.ConfigDir = o.ConfigDir
	}
	if len(o.HADiscoveryPrefixes) == 0 {
		o.HADiscoveryPrefixes = []string{DefaultHADiscoveryPrefix}
	}
	return o
}

func (o Options) target(dev string) Target {
	return Target{URLs: o.URLs, Username: o.Username, Password: o.Password, CAFile: o.CAFile, CertFile: o.CertFile,
		KeyFile: o.KeyFile, ClientID: "picockpit-" + dev + "-connect", Timeout: o.Timeout, ProbeWait: o.ProbeWait}
}

func (o Options) haTopics(dev string) []string {
	var out []string
	for _, p := range o.HADiscoveryPrefixes {
		out = append(out, HADiscoveryTopic(p, dev))
	}
	return out
}

// Connect tests the login for real and, only when it works, stores the
// password (encrypted where systemd-creds works) and writes the config
// atomically. Any failure before that leaves the config and the stored
// password untouched; a provisioned account whose test failed is removed
// again.
func Connect(ctx context.Context, o Options) (Result, error) {
	var res Result
	cfg, dev, err := current(o)
	if err != nil {
		return res, err
	}
	o = o.merged(cfg)
	if err := contract.ValidatePrefix(o.Prefix); err != nil {
		return res, &Error{Kind: KindLocal, Detail: "--prefix", Err: err}
	}
	root := contract.Root{Prefix: o.Prefix, Device: dev.ID}
	res.Device, res.Root = dev.ID, root

	// Check what will be written before touching the network.
	path := filepath.Join(o.ConfigDir, agent.ConfigFileName)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, err
	}
	if _, err := ParseDoc(old); err != nil {
		return res, fmt.Errorf("%s: %w", path, err)
	}

	var acc *Account
	if o.Admin != nil {
		admin := o.target(dev.ID)
		admin.Username, admin.Password = o.Admin.Username, o.Admin.Password
		admin.ClientID = "picockpit-" + dev.ID + "-provision"
		ds, err := DialDynsec(ctx, admin)
		if err != nil {
			return res, fmt.Errorf("administrator login: %w", err)
		}
		a, err := ds.Provision(ctx, o.Prefix, dev.ID, o.haTopics(dev.ID)...)
		if err != nil {
			ds.Close()
			return res, fmt.Errorf("provisioning the device's broker account: %w", err)
		}
		acc = &a
		o.Username, o.Password = a.Username, a.Password
		defer func() {
			if acc != nil && res.ConfigFile == "" {
				// Nothing was saved: do not leave an account behind.
				rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = ds.Remove(rctx, *acc)
				cancel()
			}
			ds.Close()
		}()
	}

	url, err := Probe(ctx, o.target(dev.ID), root)
	if err != nil {
		return res, err
	}
	res.URL = url

	// The password: encrypted if systemd-creds works here, else a 0600 file.
	var enc []byte
	var encErr error
	if len(o.Password) > 0 {
		enc, encErr = o.Secrets.Encrypt(o.Password)
	}
	edit := func(d *Doc) error {
		urls := make([]any, len(o.URLs))
		for i, u := range o.URLs {
			urls[i] = u
		}
		d.Set("broker.url", urls)
		if o.Username != "" {
			d.Set("broker.username", o.Username)
		} else {
			d.Delete("broker.username")
		}
		d.Delete("broker.password")
		if len(o.Password) > 0 && enc == nil {
			d.Set("broker.password_file", PlainPasswordPath(o.ConfigDir))
		} else {
			d.Delete("broker.password_file")
		}
		for key, v := range map[string]string{"broker.ca_file": o.CAFile, "broker.cert_file": o.CertFile, "broker.key_file": o.KeyFile} {
			if v != "" {
				d.Set(key, v)
			}
		}
		if o.DeviceID != "" {
			d.Set("device.id", o.DeviceID)
		}
		if o.Prefix != cfg.Topics.Prefix || d.Get("topics.prefix") != nil {
			d.Set("topics.prefix", o.Prefix)
		}
		return nil
	}
	doc, _ := ParseDoc(old)
	_ = edit(doc)
	if err := validateDoc(doc, o.Sections); err != nil {
		return res, fmt.Errorf("the new config would not load (nothing was changed): %w", err)
	}

	switch {
	case len(o.Password) == 0:
		if err := o.Secrets.Remove(); err != nil {
			return res, err
		}
	case enc != nil:
		p := CredentialPath(o.ConfigDir)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return res, err
		}
		if err := WriteFileAtomic(p, enc, 0o600); err != nil {
			return res, err
		}
		_ = os.Remove(PlainPasswordPath(o.ConfigDir))
		res.Stored = Stored{Encrypted: true, Path: p}
	default:
		p := PlainPasswordPath(o.ConfigDir)
		if err := WriteFileAtomic(p, append(append([]byte(nil), o.Password...), '\n'), 0o600); err != nil {
			return res, err
		}
		_ = os.Remove(CredentialPath(o.ConfigDir))
		res.Stored = Stored{Path: p, Why: encErr.Error()}
	}
	if err := os.MkdirAll(o.ConfigDir, 0o755); err != nil {
		return res, err
	}
	if err := WriteFileAtomic(path, doc.Bytes(), 0o600); err != nil {
		return res, err
	}
	res.ConfigFile = path
	if err := writeProvision(o.StateDir, acc, o.Prefix, dev.ID); err != nil {
		return res, err
	}
	res.Account = acc
	return res, nil
}

// validateDoc loads doc the way the agent will.
func validateDoc(doc *Doc, sections []string) error {
	dir, err := os.MkdirTemp("", "picockpit-connect-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, agent.ConfigFileName), doc.Bytes(), 0o600); err != nil {
		return err
	}
	_, err = agent.LoadConfig(dir, nil, nil, sections)
	return err
}

func writeProvision(stateDir string, acc *Account, prefix, device string) error {
	p := filepath.Join(stateDir, provisionFile)
	if acc == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(provisionRecord{Account: *acc, Prefix: prefix, Device: device}, "", "  ")
	return WriteFileAtomic(p, append(b, '\n'), 0o600)
}

// Provisioned returns the account connect --provision created ("" username
// when there is none).
func Provisioned(stateDir string) (Account, error) {
	var rec provisionRecord
	b, err := os.ReadFile(filepath.Join(stateDir, provisionFile))
	if errors.Is(err, os.ErrNotExist) {
		return rec.Account, nil
	}
	if err != nil {
		return rec.Account, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec.Account, fmt.Errorf("%s: %w", provisionFile, err)
	}
	return rec.Account, nil
}

// DisconnectResult says what Disconnect did.
type DisconnectResult struct {
	Cleared        []string
	RemovedAccount string
}

// Disconnect clears the device's retained topics (and its Home Assistant
// discovery), removes the provisioned account (o.Admin is then required),
// then the stored password and the login keys of the config. Stop the
// service before: a running agent would publish its state again.
func Disconnect(ctx context.Context, o Options) (DisconnectResult, error) {
	var res DisconnectResult
	cfg, dev, err := current(o)
	if err != nil {
		return res, err
	}
	o = o.merged(cfg)
	root := contract.Root{Prefix: o.Prefix, Device: dev.ID}
	acc, err := Provisioned(o.StateDir)
	if err != nil {
		return res, err
	}
	if acc.Username != "" && o.Admin == nil {
		return res, &Error{Kind: KindLocal, Detail: fmt.Sprintf("the broker account %q was provisioned by connect: give the administrator login to remove it", acc.Username)}
	}
	o.Username = cfg.Broker.Username
	if o.Password == nil {
		o.Password, err = devicePassword(cfg, o)
		if err != nil {
			return res, err
		}
	}
	cleared, err := ClearRetained(ctx, o.target(dev.ID), root, o.haTopics(dev.ID)...)
	res.Cleared = cleared
	if err != nil {
		return res, fmt.Errorf("clearing the device's retained topics: %w", err)
	}
	if acc.Username != "" {
		admin := o.target(dev.ID)
		admin.Username, admin.Password = o.Admin.Username, o.Admin.Password
		admin.ClientID = "picockpit-" + dev.ID + "-provision"
		ds, err := DialDynsec(ctx, admin)
		if err != nil {
			return res, fmt.Errorf("administrator login: %w", err)
		}
		err = ds.Remove(ctx, acc)
		ds.Close()
		if err != nil {
			return res, fmt.Errorf("removing the broker account %s: %w", acc.Username, err)
		}
		res.RemovedAccount = acc.Username
	}
	path := filepath.Join(o.ConfigDir, agent.ConfigFileName)
	if _, err := os.Stat(path); err == nil {
		if err := EditConfig(path, func(d *Doc) error {
			d.Delete("broker.username")
			d.Delete("broker.password")
			if pf, _ := d.Get("broker.password_file").(string); pf == PlainPasswordPath(o.ConfigDir) {
				d.Delete("broker.password_file")
			}
			return nil
		}); err != nil {
			return res, err
		}
	}
	if err := o.Secrets.Remove(); err != nil {
		return res, err
	}
	return res, writeProvision(o.StateDir, nil, "", "")
}

// devicePassword finds the device's stored password: the config's, its
// password_file, or the encrypted credential (decrypted with systemd-creds).
func devicePassword(cfg agent.Config, o Options) ([]byte, error) {
	if cfg.Broker.Password != "" {
		return []byte(cfg.Broker.Password), nil
	}
	if cfg.Broker.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Broker.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("broker.password_file: %w", err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	}
	p := CredentialPath(o.ConfigDir)
	if _, err := os.Stat(p); err != nil {
		return nil, nil // no password: anonymous
	}
	return o.Secrets.Decrypt(p)
}

// Decrypt decrypts a credential file written by Store.
func (s Secrets) Decrypt(path string) ([]byte, error) {
	bin, err := s.credsBin()
	if err != nil {
		return nil, fmt.Errorf("%s is encrypted and systemd-creds is not available: %w", path, err)
	}
	cmd := exec.Command(bin, "decrypt", "--name="+CredentialName, path, "-")
	cmd.Env = s.Env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("systemd-creds decrypt %s: %w: %s", path, err, bytes.TrimSpace(errb.Bytes()))
	}
	return bytes.TrimRight(out.Bytes(), "\r\n"), nil
}
