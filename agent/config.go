package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
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
	// Warnings are problems that do not stop the agent (a main config
	// readable by others), for the log and check.
	Warnings []string `koanf:"-"`

	// origin says where each key set away from its default came from: the
	// file's path, "environment variable NAME" or "--set key".
	origin map[string]string
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

// ConfigErrors is every problem LoadConfig found, one per key, in the order
// file, environment, flags, then the checks of the merged values.
type ConfigErrors []*ConfigError

func (e ConfigErrors) Error() string {
	msgs := make([]string, len(e))
	for i, ce := range e {
		msgs[i] = ce.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the single errors (for errors.As and errors.Is).
func (e ConfigErrors) Unwrap() []error {
	out := make([]error, len(e))
	for i, ce := range e {
		out[i] = ce
	}
	return out
}

// ErrNoConfigDir is the error of LoadConfig for a config directory that
// does not exist.
var ErrNoConfigDir = errors.New("the config directory does not exist")

// SecretKeys are the config keys that --set refuses: a command line is
// readable by every local user (/proc/PID/cmdline).
var SecretKeys = map[string]bool{"broker.password": true}

// LoadConfig reads <dir>/picockpit-client.config.json (a missing file means
// defaults; a missing dir is an error), then applies environment variables
// (PICOCKPIT_*, from environ) and flag overrides (key=value, from sets),
// each strictly checked: an unknown or misspelled key, a value of the wrong
// type or out of range is an error naming the key and where the value came
// from (the file, the variable or --set). Every problem is reported (as
// ConfigErrors), not only the first. sections lists the module sections
// the file may also hold.
func LoadConfig(dir string, environ []string, sets []string, sections []string) (Config, error) {
	cfg := DefaultConfig()
	known := knownKeys(reflect.TypeOf(cfg), "")
	isSection := map[string]bool{}
	for _, s := range sections {
		isSection[s] = true
	}
	var errs ConfigErrors
	cfg.origin = map[string]string{}

	path := filepath.Join(dir, ConfigFileName)
	cfg.Sections = map[string][]byte{}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		} else if errors.Is(err, os.ErrNotExist) {
			err = ErrNoConfigDir
		}
		return cfg, ConfigErrors{{Where: dir, Err: err}}
	}
	cfg.Warnings = appendNonEmpty(cfg.Warnings, trustWarning())
	if _, err := os.Lstat(path); err == nil {
		data, st, err := ReadTrusted(dir, path) // StrictModes: agent/strictmodes.go
		if err != nil {
			return cfg, ConfigErrors{{Where: path, Err: refusal(path, err)}}
		}
		cfg.Warnings = appendNonEmpty(cfg.Warnings, configReadableWarning(path, &st))
		cfg.File = path
		var doc map[string]json.RawMessage
		if err := modules.DecodeStrict(data, &doc); err != nil {
			return cfg, ConfigErrors{{Where: path, Err: err}}
		}
		own := map[string]any{}
		for _, top := range slices.Sorted(maps.Keys(doc)) {
			if isSection[top] {
				cfg.Sections[top] = doc[top]
				continue
			}
			if strings.Contains(top, ".") {
				errs = append(errs, &ConfigError{Where: path, Key: top, Err: errors.New("unknown key (nest objects: {\"broker\": {\"url\": ...}})")})
				continue
			}
			errs = append(errs, fileValues(doc[top], top, known, leafTypes(reflect.TypeOf(cfg), ""), path, sections, own, cfg.origin)...)
		}
		k := koanf.New(".")
		if err := k.Load(confmap.Provider(own, "."), nil); err != nil {
			errs = append(errs, &ConfigError{Where: path, Err: err})
		} else if err := decodeInto(k, &cfg, path); err != nil {
			errs = append(errs, err.(*ConfigError))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return cfg, ConfigErrors{{Where: path, Err: err}}
	}

	// Environment, then flags; each value decoded on its own so an error
	// names the variable or flag it came from.
	envKeys := map[string]string{}
	for key := range known {
		envKeys[EnvPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
	}
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key, ok := envKeys[name]
		if !ok {
			// Only names in the config's own namespaces are ours to judge.
			if looksLikeConfigEnv(name, known) {
				errs = append(errs, &ConfigError{Where: "environment variable " + name, Err: errors.New("unknown variable (no such config key)")})
			}
			continue
		}
		where := "environment variable " + name
		if err := applyOne(&cfg, key, val, where); err != nil {
			errs = append(errs, err.(*ConfigError))
			continue
		}
		cfg.origin[key] = where
	}
	for _, s := range sets {
		key, val, ok := strings.Cut(s, "=")
		where := "--set " + key
		switch {
		case !ok:
			errs = append(errs, &ConfigError{Where: "--set " + s, Err: errors.New("want key=value")})
		case known[key] && SecretKeys[key]:
			errs = append(errs, &ConfigError{Where: where, Err: fmt.Errorf("refused: a secret on the command line is readable by every local user (/proc/PID/cmdline); "+
				"put it in a file named by %s_file, or in the environment variable %s", key, envName(key))})
		case !known[key]:
			errs = append(errs, &ConfigError{Where: where, Err: unknownKeyErr(key, known)})
		default:
			if err := applyOne(&cfg, key, val, where); err != nil {
				errs = append(errs, err.(*ConfigError))
				continue
			}
			cfg.origin[key] = where
		}
	}
	if cfg.Broker.Password == "" && cfg.Broker.PasswordFile == "" {
		cfg.Broker.PasswordFile = credentialFile(environ)
	}
	if len(errs) > 0 {
		// Values that failed keep their defaults; check the rest anyway.
		errs = append(errs, cfg.validate()...)
		return cfg, errs
	}
	return cfg, cfg.Validate()
}

func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// fileValues checks the JSON value raw of key against the config's type and
// copies what is valid into own (nested maps, for koanf), noting the file as
// the key's origin; it returns a problem for every unknown key and wrong
// type.
func fileValues(raw json.RawMessage, key string, known map[string]bool, types map[string]reflect.Type, path string,
	sections []string, own map[string]any, origin map[string]string) ConfigErrors {
	bad := func(err error) ConfigErrors { return ConfigErrors{{Where: path, Key: key, Err: err}} }
	if !known[key] {
		if !hasKeyPrefix(known, key+".") {
			var extra []string
			if !strings.Contains(key, ".") {
				extra = sections
			}
			return bad(unknownKeyErr(key, known, extra...))
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return bad(fmt.Errorf("want an object, got %s", modules.DescribeJSON(raw)))
		}
		var errs ConfigErrors
		for _, n := range slices.Sorted(maps.Keys(obj)) {
			if strings.Contains(n, ".") {
				errs = append(errs, &ConfigError{Where: path, Key: key + "." + n, Err: errors.New("unknown key")})
				continue
			}
			errs = append(errs, fileValues(obj[n], key+"."+n, known, types, path, sections, own, origin)...)
		}
		return errs
	}
	var v any
	switch t := types[key]; {
	case t == reflect.TypeOf(time.Duration(0)):
		d, err := modules.DurationJSON(raw)
		if err != nil {
			return bad(err)
		}
		v = d.String()
	case t.Kind() == reflect.String:
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return bad(fmt.Errorf("want a string, got %s", modules.DescribeJSON(raw)))
		}
		v = s
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var one string
		var list []string
		if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &one) == nil {
			v = one
			break
		}
		var elems []json.RawMessage
		if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
			return bad(fmt.Errorf("want a string or an array of strings, got %s", modules.DescribeJSON(raw)))
		}
		var errs ConfigErrors
		for i, e := range elems {
			var s string
			if len(e) == 0 || e[0] != '"' || json.Unmarshal(e, &s) != nil {
				errs = append(errs, &ConfigError{Where: path, Key: fmt.Sprintf("%s[%d]", key, i), Err: fmt.Errorf("want a string, got %s", modules.DescribeJSON(e))})
			}
			list = append(list, s)
		}
		if len(errs) > 0 {
			return errs
		}
		v = list
	default:
		return bad(fmt.Errorf("unsupported config type %s", t)) // a new field type needs a case here
	}
	m := own
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	m[parts[len(parts)-1]] = v
	origin[key] = path
	return nil
}

// leafTypes maps the leaf keys of t's koanf tags to their Go types.
func leafTypes(t reflect.Type, prefix string) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			maps.Copy(out, leafTypes(f.Type, prefix+tag+"."))
			continue
		}
		out[prefix+tag] = f.Type
	}
	return out
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
	return modules.ParseDuration(s)
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

func hasKeyPrefix(known map[string]bool, p string) bool {
	for k := range known {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func unknownKeyErr(key string, known map[string]bool, extra ...string) error {
	cands := append([]string(nil), extra...)
	for k := range known {
		cands = append(cands, k)
		for i := range len(k) {
			if k[i] == '.' {
				cands = append(cands, k[:i]) // "broker" for "brokr"
			}
		}
	}
	if best := modules.Closest(key, cands, 3); best != "" {
		return fmt.Errorf("unknown key (did you mean %q?)", best)
	}
	return errors.New("unknown key")
}

// Validate checks values that decode but make no sense; the error is a
// ConfigErrors naming every bad key and where its value came from.
func (c *Config) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		return errs
	}
	return nil
}

// where says where key's value came from: the file, a variable or a flag.
func (c *Config) where(key string) string {
	if w := c.origin[key]; w != "" {
		return w
	}
	if c.File != "" {
		return c.File
	}
	return "built-in default"
}

func (c *Config) validate() ConfigErrors {
	var errs ConfigErrors
	bad := func(key string, err error) {
		base, _, _ := strings.Cut(key, "[")
		errs = append(errs, &ConfigError{Where: c.where(base), Key: key, Err: err})
	}
	if len(c.Broker.URL) == 0 {
		bad("broker.url", errors.New("no broker URL"))
	}
	for i, raw := range c.Broker.URL {
		key := fmt.Sprintf("broker.url[%d]", i)
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			bad(key, err)
		case u.Scheme != "mqtt" && u.Scheme != "mqtts" && u.Scheme != "ws" && u.Scheme != "wss":
			bad(key, fmt.Errorf("scheme %q not supported (want mqtt, mqtts, ws or wss)", u.Scheme))
		case u.Host == "":
			bad(key, fmt.Errorf("%q has no host", raw))
		}
	}
	if err := contract.ValidatePrefix(c.Topics.Prefix); err != nil {
		bad("topics.prefix", err)
	}
	if c.Device.ID != "" {
		if err := contract.ValidateDeviceID(c.Device.ID); err != nil {
			bad("device.id", err)
		}
	}
	paths := map[string]string{"broker.ca_file": c.Broker.CAFile, "broker.cert_file": c.Broker.CertFile,
		"broker.key_file": c.Broker.KeyFile, "broker.password_file": c.Broker.PasswordFile, "host.root": c.Host.Root}
	for _, key := range slices.Sorted(maps.Keys(paths)) {
		if p := paths[key]; p != "" && !filepath.IsAbs(p) {
			bad(key, fmt.Errorf("%q is not an absolute path", p))
		}
	}
	if (c.Broker.CertFile == "") != (c.Broker.KeyFile == "") {
		bad("broker.cert_file", errors.New("cert_file and key_file go together"))
	}
	if c.Broker.Password != "" && c.Broker.PasswordFile != "" {
		bad("broker.password_file", errors.New("set password or password_file, not both"))
	}
	if k := c.Broker.Keepalive; k < time.Second || k > 65535*time.Second {
		bad("broker.keepalive", fmt.Errorf("%s out of range (1s to 18h12m15s)", k))
	}
	if c.Broker.SessionExpiry < time.Second {
		bad("broker.session_expiry", errors.New("must be at least 1s: a zero expiry loses in-flight QoS 1 messages on every reconnect"))
	}
	if c.Broker.ClientID != "" && len(c.Broker.ClientID) > 256 {
		bad("broker.client_id", errors.New("longer than 256 bytes"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", fmt.Errorf("%q is not one of debug, info, warn, error", c.Log.Level))
	}
	return errs
}

func appendNonEmpty(list []string, items ...string) []string {
	for _, s := range items {
		if s != "" {
			list = append(list, s)
		}
	}
	return list
}
