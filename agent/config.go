package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	kjson "github.com/knadh/koanf/parsers/json"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// ConfigFileName is the main config file inside the config directory.
const ConfigFileName = "picockpit-client.config.json"

// EnvPrefix prefixes the environment variables that override config keys:
// broker.ca_file is PICOCKPIT_BROKER_CA_FILE.
const EnvPrefix = "PICOCKPIT_"

// Config is the agent's own part of the main config. Module sections (one
// per module kind, e.g. "stats", "gpio") are kept raw in Sections and decoded
// strictly by their kinds.
type Config struct {
	Broker BrokerConfig `koanf:"broker"`
	Device struct {
		// ID overrides the device id (default: the Pi's serial number).
		ID string `koanf:"id"`
	} `koanf:"device"`
	Topics struct {
		Prefix string `koanf:"prefix"`
	} `koanf:"topics"`
	Host struct {
		// Root is where /proc, /sys, /etc and the device tree are read.
		Root string `koanf:"root"`
	} `koanf:"host"`
	Log struct {
		Level string `koanf:"level"`
	} `koanf:"log"`

	// Sections holds the raw JSON of each module kind's section.
	Sections map[string][]byte `koanf:"-"`
	// File is the path of the main config file that was read ("" if none).
	File string `koanf:"-"`
}

// BrokerConfig says how to reach the MQTT 5 broker.
type BrokerConfig struct {
	// URL lists one or more broker URLs (mqtt://, mqtts://, ws://, wss://),
	// tried in order for failover.
	URL            []string      `koanf:"url"`
	Username       string        `koanf:"username"`
	Password       string        `koanf:"password"`
	PasswordFile   string        `koanf:"password_file"`
	CAFile         string        `koanf:"ca_file"`
	CertFile       string        `koanf:"cert_file"`
	KeyFile        string        `koanf:"key_file"`
	ClientID       string        `koanf:"client_id"`
	Keepalive      time.Duration `koanf:"keepalive"`
	SessionExpiry  time.Duration `koanf:"session_expiry"`
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// ReconnectMax caps the exponential reconnect backoff.
	ReconnectMax time.Duration `koanf:"reconnect_max"`
}

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config {
	var c Config
	c.Broker.URL = []string{"mqtt://127.0.0.1:1883"}
	c.Broker.Keepalive = 30 * time.Second
	c.Broker.SessionExpiry = 24 * time.Hour
	c.Broker.ConnectTimeout = 10 * time.Second
	c.Broker.ReconnectMax = 2 * time.Minute
	c.Topics.Prefix = "picockpit"
	c.Host.Root = "/"
	c.Log.Level = "info"
	return c
}

// ConfigError is a config problem that names where it was found.
type ConfigError struct {
	Where string // file path, environment variable or flag
	Key   string
	Err   error
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %v", e.Where, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.Where, e.Key, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads <dir>/picockpit-client.config.json (a missing file means
// defaults), then applies environment variables (PICOCKPIT_*, from environ)
// and flag overrides (key=value, from sets), each strictly checked: an
// unknown or misspelled key is an error naming the key and where it came
// from. sections lists the module sections the file may also hold.
func LoadConfig(dir string, environ []string, sets []string, sections []string) (Config, error) {
	cfg := DefaultConfig()
	known := knownKeys(reflect.TypeOf(cfg), "")
	isSection := map[string]bool{}
	for _, s := range sections {
		isSection[s] = true
	}

	k := koanf.New(".")
	path := filepath.Join(dir, ConfigFileName)
	cfg.Sections = map[string][]byte{}
	if _, err := os.Stat(path); err == nil {
		fk := koanf.New("\x00") // no delimiter: keep the file's own nesting
		if err := fk.Load(file.Provider(path), kjson.Parser()); err != nil {
			return cfg, &ConfigError{Where: path, Err: fmt.Errorf("cannot parse: %w", err)}
		}
		cfg.File = path
		raw := fk.Raw()
		own := map[string]any{}
		for top, v := range raw {
			if isSection[top] {
				b, err := json.Marshal(v)
				if err != nil {
					return cfg, &ConfigError{Where: path, Key: top, Err: err}
				}
				cfg.Sections[top] = b
				continue
			}
			own[top] = v
		}
		if err := checkKeys(own, "", known, path, sections); err != nil {
			return cfg, err
		}
		if err := k.Load(confmap.Provider(own, "\x00"), nil); err != nil {
			return cfg, &ConfigError{Where: path, Err: err}
		}
		if err := decodeInto(k, &cfg, path); err != nil {
			return cfg, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return cfg, &ConfigError{Where: path, Err: err}
	}

	// Environment, then flags; each layer decoded on its own so an error
	// names the variable or flag it came from.
	envKeys := map[string]string{}
	for key := range known {
		envKeys[EnvPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
	}
	var envNames []string
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key, ok := envKeys[name]
		if !ok {
			// Only names in the config's own namespaces are ours to judge.
			if looksLikeConfigEnv(name, known) {
				return cfg, &ConfigError{Where: "environment", Key: name, Err: errors.New("unknown variable (no such config key)")}
			}
			continue
		}
		if err := applyOne(&cfg, key, val, "environment variable "+name); err != nil {
			return cfg, err
		}
		envNames = append(envNames, name)
	}
	_ = envNames
	for _, s := range sets {
		key, val, ok := strings.Cut(s, "=")
		if !ok {
			return cfg, &ConfigError{Where: "flag --set", Key: s, Err: errors.New("want key=value")}
		}
		if _, ok := known[key]; !ok {
			return cfg, &ConfigError{Where: "flag --set", Key: key, Err: unknownKeyErr(key, known)}
		}
		if err := applyOne(&cfg, key, val, "flag --set "+key); err != nil {
			return cfg, err
		}
	}
	if cfg.Broker.Password == "" && cfg.Broker.PasswordFile == "" {
		cfg.Broker.PasswordFile = credentialFile(environ)
	}
	return cfg, cfg.Validate()
}

// CredentialName is the systemd credential holding the broker password
// (stored by `picockpit-client connect`, loaded by the unit with
// LoadCredentialEncrypted=). When the config sets neither broker.password
// nor broker.password_file, the agent uses
// $CREDENTIALS_DIRECTORY/broker-password if it holds a password.
const CredentialName = "broker-password"

func credentialFile(environ []string) string {
	for _, kv := range environ {
		if dir, ok := strings.CutPrefix(kv, "CREDENTIALS_DIRECTORY="); ok && filepath.IsAbs(dir) {
			p := filepath.Join(dir, CredentialName)
			// The unit's fallback (SetCredential=) is an empty line: no password.
			if b, err := os.ReadFile(p); err == nil && strings.TrimRight(string(b), "\r\n") != "" {
				return p
			}
		}
	}
	return ""
}

func looksLikeConfigEnv(name string, known map[string]bool) bool {
	rest := strings.TrimPrefix(name, EnvPrefix)
	for key := range known {
		top, _, _ := strings.Cut(key, ".")
		if strings.HasPrefix(rest, strings.ToUpper(top)+"_") {
			return true
		}
	}
	return false
}

func applyOne(cfg *Config, key, val, where string) error {
	k := koanf.New(".")
	var v any = val
	if key == "broker.url" {
		var urls []any
		for _, u := range strings.Split(val, ",") {
			if u = strings.TrimSpace(u); u != "" {
				urls = append(urls, u)
			}
		}
		v = urls
	}
	if err := k.Set(key, v); err != nil {
		return &ConfigError{Where: where, Err: err}
	}
	return decodeInto(k, cfg, where)
}

func decodeInto(k *koanf.Koanf, cfg *Config, where string) error {
	err := k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			mapstructure.StringToSliceHookFunc(","),
		),
		ErrorUnused:      true,
		WeaklyTypedInput: false,
		Result:           cfg,
		TagName:          "koanf",
	}})
	if err != nil {
		return &ConfigError{Where: where, Err: cleanMapstructureErr(err)}
	}
	return nil
}

// durationHook accepts "30s"-style strings for durations and rejects bare
// numbers, whose unit would be a guess.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	s, ok := data.(string)
	if !ok {
		return nil, fmt.Errorf("want a duration string such as \"30s\", got %v", data)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"5m\")", s)
	}
	if d < 0 {
		return nil, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

func cleanMapstructureErr(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "decoding failed due to the following error(s):\n\n")
	msg = strings.ReplaceAll(msg, "error decoding ", "")
	return errors.New(msg)
}

// knownKeys lists the leaf keys of t's koanf tags ("broker.url", ...).
func knownKeys(t reflect.Type, prefix string) map[string]bool {
	out := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
			for k := range knownKeys(f.Type, key+".") {
				out[k] = true
			}
			continue
		}
		out[key] = true
	}
	return out
}

func checkKeys(m map[string]any, prefix string, known map[string]bool, where string, sections []string) error {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		key := prefix + n
		if known[key] {
			continue
		}
		if sub, ok := m[n].(map[string]any); ok && hasKeyPrefix(known, key+".") {
			if err := checkKeys(sub, key+".", known, where, sections); err != nil {
				return err
			}
			continue
		}
		return &ConfigError{Where: where, Key: key, Err: unknownKeyErr(key, known, sections...)}
	}
	return nil
}

func hasKeyPrefix(known map[string]bool, p string) bool {
	for k := range known {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func unknownKeyErr(key string, known map[string]bool, extra ...string) error {
	best, bestD := "", 4
	cands := append([]string(nil), extra...)
	for k := range known {
		cands = append(cands, k)
	}
	sort.Strings(cands)
	for _, c := range cands {
		if d := editDistance(key, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best != "" {
		return fmt.Errorf("unknown key (did you mean %q?)", best)
	}
	return errors.New("unknown key")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Validate checks values that decode but make no sense.
func (c *Config) Validate() error {
	where := c.File
	if where == "" {
		where = "config"
	}
	if len(c.Broker.URL) == 0 {
		return &ConfigError{Where: where, Key: "broker.url", Err: errors.New("no broker URL")}
	}
	for i, raw := range c.Broker.URL {
		u, err := url.Parse(raw)
		if err != nil {
			return &ConfigError{Where: where, Key: fmt.Sprintf("broker.url[%d]", i), Err: err}
		}
		switch u.Scheme {
		case "mqtt", "mqtts", "ws", "wss":
		default:
			return &ConfigError{Where: where, Key: fmt.Sprintf("broker.url[%d]", i),
				Err: fmt.Errorf("scheme %q not supported (want mqtt, mqtts, ws or wss)", u.Scheme)}
		}
		if u.Host == "" {
			return &ConfigError{Where: where, Key: fmt.Sprintf("broker.url[%d]", i), Err: fmt.Errorf("%q has no host", raw)}
		}
	}
	if err := contract.ValidatePrefix(c.Topics.Prefix); err != nil {
		return &ConfigError{Where: where, Key: "topics.prefix", Err: err}
	}
	if c.Device.ID != "" {
		if err := contract.ValidateDeviceID(c.Device.ID); err != nil {
			return &ConfigError{Where: where, Key: "device.id", Err: err}
		}
	}
	for key, p := range map[string]string{"broker.ca_file": c.Broker.CAFile, "broker.cert_file": c.Broker.CertFile,
		"broker.key_file": c.Broker.KeyFile, "broker.password_file": c.Broker.PasswordFile, "host.root": c.Host.Root} {
		if p != "" && !filepath.IsAbs(p) {
			return &ConfigError{Where: where, Key: key, Err: fmt.Errorf("%q is not an absolute path", p)}
		}
	}
	if (c.Broker.CertFile == "") != (c.Broker.KeyFile == "") {
		return &ConfigError{Where: where, Key: "broker.cert_file", Err: errors.New("cert_file and key_file go together")}
	}
	if c.Broker.Password != "" && c.Broker.PasswordFile != "" {
		return &ConfigError{Where: where, Key: "broker.password_file", Err: errors.New("set password or password_file, not both")}
	}
	if k := c.Broker.Keepalive; k < time.Second || k > 65535*time.Second {
		return &ConfigError{Where: where, Key: "broker.keepalive", Err: fmt.Errorf("%s out of range (1s to 18h12m15s)", k)}
	}
	if c.Broker.SessionExpiry < time.Second {
		return &ConfigError{Where: where, Key: "broker.session_expiry", Err: errors.New("must be at least 1s: a zero expiry loses in-flight QoS 1 messages on every reconnect")}
	}
	if c.Broker.ClientID != "" && len(c.Broker.ClientID) > 256 {
		return &ConfigError{Where: where, Key: "broker.client_id", Err: errors.New("longer than 256 bytes")}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &ConfigError{Where: where, Key: "log.level", Err: fmt.Errorf("%q is not one of debug, info, warn, error", c.Log.Level)}
	}
	return nil
}
