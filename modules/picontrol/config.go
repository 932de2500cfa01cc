package picontrol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/agent/runas"
	"github.com/picockpit/picockpit-client/modules"
)

// Limits and defaults of the configuration.
const (
	DefaultUser        = "pi"
	DefaultMaxParallel = 8
	DefaultMaxQueue    = 256
	DefaultTimeout     = 60 * time.Second
	DefaultKillGrace   = 5 * time.Second
	// MaxKillGrace keeps SIGTERM-to-SIGKILL below the unit's watchdog
	// period (WatchdogSec=30): a stop or reload that waits for a command
	// ignoring SIGTERM must not outlast it.
	MaxKillGrace         = 20 * time.Second
	DefaultOutputLimit   = 64 << 10
	DefaultReplyGrace    = 200 * time.Millisecond
	maxReplyGrace        = time.Minute
	MaxTimeout           = 24 * time.Hour
	DefaultMaxLength     = 1024
	maxParamMaxLength    = 64 << 10
	maxParamsPerCommand  = 32
	shellPath            = "/bin/sh"
	placeholderPattern   = `\{([a-z][a-z0-9_]{0,63})\}`
	paramNamePattern     = `^[a-z][a-z0-9_]{0,63}$`
	envNamePattern       = `^[A-Za-z_][A-Za-z0-9_]{0,127}$`
	concurrencyReject    = "reject"
	concurrencyQueue     = "queue"
	maxCommandsPerModule = 256
)

// KillGraceReason says why kill_grace is capped, in config errors.
const KillGraceReason = "a command that ignores SIGTERM must be killed before the service watchdog (WatchdogSec=30) gives up on the agent"

var (
	paramNameRE   = regexp.MustCompile(paramNamePattern)
	envNameRE     = regexp.MustCompile(envNamePattern)
	placeholderRE = regexp.MustCompile(placeholderPattern)
	wholeHolderRE = regexp.MustCompile(`^` + placeholderPattern + `$`)
)

// Duration is a JSON duration in the config's one syntax, a Go duration
// string ("90s", "15m"; modules.ParseDuration).
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	v, err := modules.DurationJSON(b)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config is the "picontrol" section of the main configuration.
type Config struct {
	// DefaultUser runs commands that name no user. Default "pi".
	DefaultUser string `json:"default_user"`
	// MaxParallel bounds the commands running at once; the rest wait.
	MaxParallel int `json:"max_parallel"`
	// MaxQueue bounds the commands accepted and waiting to run; beyond it a
	// request is rejected.
	MaxQueue int `json:"max_queue"`
	// DefaultTimeout applies to commands without a timeout.
	DefaultTimeout Duration `json:"default_timeout"`
	// KillGrace is the time between SIGTERM and SIGKILL.
	KillGrace Duration `json:"kill_grace"`
	// OutputLimit is how many bytes of stdout and of stderr the final result
	// keeps (everything is streamed).
	OutputLimit int `json:"output_limit"`
	// ReplyGrace is how long a command may run before the requester hears
	// "accepted": one that ends sooner gets only its final reply.
	ReplyGrace Duration `json:"reply_grace"`
}

func defaultConfig() Config {
	return Config{
		DefaultUser:    DefaultUser,
		MaxParallel:    DefaultMaxParallel,
		MaxQueue:       DefaultMaxQueue,
		DefaultTimeout: Duration(DefaultTimeout),
		KillGrace:      Duration(DefaultKillGrace),
		OutputLimit:    DefaultOutputLimit,
		ReplyGrace:     Duration(DefaultReplyGrace),
	}
}

// decodeConfig decodes the section strictly on top of the defaults. On a
// problem it returns the defaults and the problems.
func decodeConfig(section []byte, file string) (Config, []modules.Problem) {
	cfg := defaultConfig()
	if len(bytes.TrimSpace(section)) == 0 || string(bytes.TrimSpace(section)) == "null" {
		return cfg, nil
	}
	const prefix = "picontrol"
	if trimmed := bytes.TrimSpace(section); trimmed[0] != '{' {
		return defaultConfig(), []modules.Problem{{File: file, Field: prefix, Err: fmt.Errorf("must be a JSON object, got %s", describeJSON(trimmed))}}
	}
	// Durations stay raw here so that their errors can name the field.
	var cj configJSON
	cj.Config = cfg
	if err := modules.DecodeStrict(section, &cj); err != nil {
		return defaultConfig(), modules.ProblemsFor(file, prefix, err)
	}
	cfg = cj.Config
	var probs []modules.Problem
	bad := func(field, format string, a ...any) {
		probs = append(probs, modules.Problem{File: file, Field: prefix + "." + field, Err: fmt.Errorf(format, a...)})
	}
	for _, d := range []struct {
		name string
		raw  json.RawMessage
		dst  *Duration
	}{{"default_timeout", cj.DefaultTimeout, &cfg.DefaultTimeout}, {"kill_grace", cj.KillGrace, &cfg.KillGrace},
		{"reply_grace", cj.ReplyGrace, &cfg.ReplyGrace}} {
		if d.raw != nil {
			if err := d.dst.UnmarshalJSON(d.raw); err != nil {
				bad(d.name, "%w", err)
			}
		}
	}
	if cfg.DefaultUser == "" {
		bad("default_user", "must not be empty")
	}
	if cfg.MaxParallel < 1 || cfg.MaxParallel > 1024 {
		bad("max_parallel", "%d is out of range 1..1024", cfg.MaxParallel)
	}
	if cfg.MaxQueue < 0 || cfg.MaxQueue > 100000 {
		bad("max_queue", "%d is out of range 0..100000", cfg.MaxQueue)
	}
	if d := time.Duration(cfg.DefaultTimeout); d <= 0 || d > MaxTimeout {
		bad("default_timeout", "%v is out of range (0, %v]", d, MaxTimeout)
	}
	if d := time.Duration(cfg.KillGrace); d <= 0 || d > MaxKillGrace {
		bad("kill_grace", "%v is out of range (0, %v]: %s", d, MaxKillGrace, KillGraceReason)
	}
	if d := time.Duration(cfg.ReplyGrace); d < 0 || d > maxReplyGrace {
		bad("reply_grace", "%v is out of range [0, %v]", d, maxReplyGrace)
	}
	if cfg.OutputLimit < 0 || cfg.OutputLimit > 16<<20 {
		bad("output_limit", "%d is out of range 0..16777216", cfg.OutputLimit)
	}
	if len(probs) > 0 {
		return defaultConfig(), probs
	}
	return cfg, nil
}

type configJSON struct {
	Config
	DefaultTimeout json.RawMessage `json:"default_timeout"`
	KillGrace      json.RawMessage `json:"kill_grace"`
	ReplyGrace     json.RawMessage `json:"reply_grace"`
}

// The JSON shapes of a module file. Nested lists stay raw so that each
// element is decoded on its own and errors can name "commands[1].user".
type fileJSON struct {
	Schema      string            `json:"$schema"`
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Icon        string            `json:"icon"`
	Commands    []json.RawMessage `json:"commands"`
}

type commandJSON struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Description     string            `json:"description"`
	Icon            string            `json:"icon"`
	Argv            []string          `json:"argv"`
	Command         *string           `json:"command"`
	Shell           bool              `json:"shell"`
	User            string            `json:"user"`
	Group           string            `json:"group"`
	Groups          *[]string         `json:"groups"`
	Timeout         json.RawMessage   `json:"timeout"`
	Env             map[string]string `json:"env"`
	Workdir         string            `json:"workdir"`
	Confirm         bool              `json:"confirm"`
	Concurrency     string            `json:"concurrency"`
	NoNewPrivileges *bool             `json:"no_new_privileges"`
	Capabilities    *[]string         `json:"capabilities"`
	Parameters      []json.RawMessage `json:"parameters"`
	// RequireSignature: only signed requests run it (signed.go).
	RequireSignature bool `json:"require_signature"`
}

type paramJSON struct {
	Name        string          `json:"name"`
	Type        string          `json:"type"`
	Description string          `json:"description"`
	Required    bool            `json:"required"`
	Default     json.RawMessage `json:"default"`
	Pattern     *string         `json:"pattern"`
	Enum        []string        `json:"enum"`
	MaxLength   *int            `json:"max_length"`
	Min         *int64          `json:"min"`
	Max         *int64          `json:"max"`
	Env         string          `json:"env"`
	// TrustEnv lifts the PICONTROL_ prefix rule for Env (paramsafety.go).
	TrustEnv bool `json:"trust_env"`
	// AllowLeadingDash lets a value start with "-" (paramsafety.go).
	AllowLeadingDash bool `json:"allow_leading_dash"`
}

// module is one validated module file.
type module struct {
	ID, Name, Description, Icon string
	File                        string
	Commands                    []*command
}

// argvElem is one element of a command's argv: a literal, or a whole-element
// placeholder for a parameter.
type argvElem struct {
	lit   string
	param string
}

// command is one validated command, ready to run.
type command struct {
	Module, ID, Name, Description, Icon string
	Confirm                             bool
	Path                                string
	Argv                                []argvElem
	User                                runas.Identity
	Timeout                             time.Duration
	Env                                 []string
	Workdir                             string
	Queue                               bool
	NoNewPrivs                          bool
	LimitCaps                           bool
	Caps                                []runas.Capability
	Params                              []*param
	RequireSignature                    bool

	mu     sync.Mutex
	active int           // accepted and not yet finished
	slot   chan struct{} // held while running in queue mode
	result resultOrder   // keeps the retained result the latest
}

// param is one validated parameter.
type param struct {
	Name, Type, Description string
	Required                bool
	Default                 *string // canonical form
	defaultValue            any
	Pattern                 string
	re                      *regexp.Regexp
	Enum                    []string
	MaxLength               int
	Min, Max                *int64
	Env                     string
	AllowLeadingDash        bool
}

// reservedParamEnv are environment names a parameter may not set: the base
// environment, and names that change how loaders, shells and interpreters
// behave.
var reservedParamEnv = map[string]bool{
	"HOME": true, "USER": true, "LOGNAME": true, "PATH": true, "LANG": true, "SHELL": true,
	"IFS": true, "ENV": true, "BASH_ENV": true, "SHELLOPTS": true, "BASHOPTS": true, "PS4": true,
	"CDPATH": true, "GCONV_PATH": true, "LOCPATH": true, "NLSPATH": true, "TMPDIR": true,
	"PERL5LIB": true, "PERL5OPT": true, "PERLLIB": true, "RUBYOPT": true, "RUBYLIB": true,
	"NODE_OPTIONS": true, "NODE_PATH": true, "TZ": true, "TERM": true,
}

var reservedParamEnvPrefixes = []string{"LD_", "LC_", "PYTHON", "GIT_", "SYSTEMD_", "DBUS_"}

// loader decodes module files with the settings of the config section.
type loader struct {
	cfg Config
}

// decodeModule decodes and validates one module file. It returns nil and the
// problems when anything is wrong (the file is skipped as a whole).
func (l *loader) decodeModule(file modules.File) (*module, []modules.Problem) {
	fe := &modules.FileProblems{File: file.Path}
	var fj fileJSON
	// A field that does not decode is reported and left out of the checks
	// below; the commands are still checked.
	undecoded := map[string]bool{}
	if err := modules.DecodeStrict(file.Data, &fj); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("invalid JSON: the document ends too early")
		}
		fe.AddErr("", err)
		var ok bool
		if undecoded, ok = modules.Fields(err); !ok {
			return nil, fe.List
		}
	}
	m := &module{ID: fj.ID, Name: fj.Name, Description: fj.Description, Icon: fj.Icon, File: file.Path}
	if !undecoded["id"] {
		fe.CheckID("id", fj.ID)
	}
	if !undecoded["name"] {
		fe.CheckText("name", fj.Name, true)
	}
	fe.CheckText("description", fj.Description, false)
	fe.CheckText("icon", fj.Icon, false)
	if len(fj.Commands) == 0 && !undecoded["commands"] {
		fe.Add("commands", "a module needs at least one command")
	}
	if len(fj.Commands) > maxCommandsPerModule {
		fe.Add("commands", "%d commands, at most %d", len(fj.Commands), maxCommandsPerModule)
	}
	seen := map[string]bool{}
	for i, raw := range fj.Commands {
		field := fmt.Sprintf("commands[%d]", i)
		c := l.decodeCommand(fe, field, raw)
		if c == nil {
			continue
		}
		if seen[c.ID] {
			fe.Add(field+".id", "duplicate command id %q", c.ID)
		}
		seen[c.ID] = true
		c.Module = m.ID
		m.Commands = append(m.Commands, c)
	}
	if len(fe.List) > 0 {
		return nil, fe.List
	}
	return m, nil
}

func absPath(p string) bool { return strings.HasPrefix(p, "/") }

func (l *loader) decodeCommand(fe *modules.FileProblems, field string, raw json.RawMessage) *command {
	before := len(fe.List)
	var cj commandJSON
	if err := modules.DecodeStrict(raw, &cj); err != nil {
		fe.AddErr(field, err)
		return nil
	}
	f := func(name string) string { return field + "." + name }
	c := &command{ID: cj.ID, Name: cj.Name, Description: cj.Description, Icon: cj.Icon, Confirm: cj.Confirm,
		Workdir: cj.Workdir, slot: make(chan struct{}, 1), RequireSignature: cj.RequireSignature}
	fe.CheckID(f("id"), cj.ID)
	fe.CheckText(f("name"), cj.Name, true)
	fe.CheckText(f("description"), cj.Description, false)
	fe.CheckText(f("icon"), cj.Icon, false)

	// Parameters first: argv placeholders refer to them.
	byName := map[string]*param{}
	if len(cj.Parameters) > maxParamsPerCommand {
		fe.Add(f("parameters"), "%d parameters, at most %d", len(cj.Parameters), maxParamsPerCommand)
	}
	for i, praw := range cj.Parameters {
		pf := fmt.Sprintf("%s[%d]", f("parameters"), i)
		p := decodeParam(fe, pf, praw)
		if p == nil {
			continue
		}
		if byName[p.Name] != nil {
			fe.Add(pf+".name", "duplicate parameter %q", p.Name)
			continue
		}
		byName[p.Name] = p
		c.Params = append(c.Params, p)
	}

	// The program.
	var words []string
	switch {
	case cj.Command != nil && cj.Argv != nil:
		fe.Add(f("command"), "give either argv or command, not both")
	case cj.Argv == nil && cj.Command == nil:
		fe.Add(f("argv"), "missing: give argv (program path and arguments) or command")
	case cj.Shell && cj.Command == nil:
		fe.Add(f("shell"), "shell: true needs command (a shell script line), not argv")
	case cj.Shell:
		if strings.TrimSpace(*cj.Command) == "" || strings.ContainsRune(*cj.Command, 0) {
			fe.Add(f("command"), "must be a non-empty script without NUL")
		} else {
			words = []string{shellPath, "-c", *cj.Command, "picontrol-" + cj.ID}
		}
	case cj.Command != nil:
		w, err := splitCommand(*cj.Command)
		if err != nil {
			fe.Add(f("command"), "%w", err)
		}
		words = w
	default:
		words = cj.Argv
		if len(words) == 0 {
			fe.Add(f("argv"), "empty: the first element is the program's absolute path")
		}
	}
	argvField := f("argv")
	if cj.Command != nil {
		argvField = f("command")
	}
	used := map[string]bool{}
	for i, w := range words {
		ef := fmt.Sprintf("%s[%d]", argvField, i)
		if cj.Command != nil {
			ef = argvField
		}
		if strings.ContainsRune(w, 0) {
			fe.Add(ef, "contains NUL")
			continue
		}
		if cj.Shell && i == 2 {
			if m := placeholderRE.FindStringSubmatch(w); m != nil && byName[m[1]] != nil {
				fe.Add(ef, "placeholder {%s} in a shell command: pass parameters to shell commands through env", m[1])
			}
			c.Argv = append(c.Argv, argvElem{lit: w})
			continue
		}
		if m := wholeHolderRE.FindStringSubmatch(w); m != nil {
			if i == 0 {
				fe.Add(ef, "the program cannot be a parameter")
				continue
			}
			if byName[m[1]] == nil {
				fe.Add(ef, "placeholder {%s} names no parameter of this command", m[1])
				continue
			}
			used[m[1]] = true
			c.Argv = append(c.Argv, argvElem{param: m[1]})
			continue
		}
		for _, m := range placeholderRE.FindAllStringSubmatch(w, -1) {
			if byName[m[1]] != nil {
				fe.Add(ef, "placeholder {%s} must be a whole argv element, not part of %q", m[1], w)
			}
		}
		c.Argv = append(c.Argv, argvElem{lit: w})
	}
	if len(words) > 0 {
		if !absPath(words[0]) {
			ef := argvField
			if cj.Command == nil {
				ef += "[0]"
			}
			fe.Add(ef, "program %q is not an absolute path", words[0])
		}
		c.Path = words[0]
	}
	for _, p := range c.Params {
		if !used[p.Name] && p.Env == "" {
			fe.Add(f("parameters"), "parameter %q is used nowhere: add a {%s} argv element or env", p.Name, p.Name)
		}
	}

	// Who runs it.
	userName, userField := cj.User, f("user")
	if userName == "" {
		userName = l.cfg.DefaultUser
	}
	id, err := runas.LookupUser(userName)
	if err != nil {
		if cj.User == "" {
			fe.Add(userField, "no user given and the default user (picontrol.default_user) fails: %w", err)
		} else {
			fe.Add(userField, "%w", err)
		}
	}
	if cj.Group != "" {
		gid, err := runas.LookupGroup(cj.Group)
		if err != nil {
			fe.Add(f("group"), "%w", err)
		}
		id.GID = gid
	}
	if cj.Groups != nil {
		id.Groups = []uint32{}
		for i, g := range *cj.Groups {
			gid, err := runas.LookupGroup(g)
			if err != nil {
				fe.Add(fmt.Sprintf("%s[%d]", f("groups"), i), "%w", err)
				continue
			}
			id.Groups = append(id.Groups, gid)
		}
	}
	c.User = id

	// Limits.
	c.Timeout = time.Duration(l.cfg.DefaultTimeout)
	if cj.Timeout != nil {
		var d Duration
		if err := d.UnmarshalJSON(cj.Timeout); err != nil {
			fe.Add(f("timeout"), "%w", err)
		} else if c.Timeout = time.Duration(d); c.Timeout <= 0 || c.Timeout > MaxTimeout {
			fe.Add(f("timeout"), "%v is out of range (0, %v]", c.Timeout, MaxTimeout)
		}
	}
	if cj.Workdir != "" && !absPath(cj.Workdir) {
		fe.Add(f("workdir"), "%q is not an absolute path", cj.Workdir)
	}
	switch cj.Concurrency {
	case "", concurrencyReject:
	case concurrencyQueue:
		c.Queue = true
	default:
		fe.Add(f("concurrency"), "%q: want %q or %q", cj.Concurrency, concurrencyReject, concurrencyQueue)
	}
	c.NoNewPrivs = cj.NoNewPrivileges == nil || *cj.NoNewPrivileges
	switch {
	case cj.Capabilities != nil:
		c.LimitCaps = true
		for i, name := range *cj.Capabilities {
			cp, err := runas.ParseCapability(name)
			if err != nil {
				fe.Add(fmt.Sprintf("%s[%d]", f("capabilities"), i), "%w", err)
				continue
			}
			c.Caps = append(c.Caps, cp)
		}
	case id.UID != 0 && c.NoNewPrivs:
		// A non-root command keeps nothing in its bounding set unless it says
		// so. One that opted out of no_new_privileges (to use sudo or another
		// setuid program) keeps the bounding set as it is.
		c.LimitCaps = true
	}

	// Environment.
	envNames := map[string]bool{}
	for _, k := range sortedKeys(cj.Env) {
		v := cj.Env[k]
		ef := f("env") + "." + k
		if !envNameRE.MatchString(k) {
			fe.Add(ef, "%q is not a valid environment variable name", k)
			continue
		}
		if strings.ContainsRune(v, 0) {
			fe.Add(ef, "value contains NUL")
			continue
		}
		envNames[k] = true
		c.Env = append(c.Env, k+"="+v)
	}
	for i, p := range c.Params {
		if p.Env != "" && envNames[p.Env] {
			fe.Add(fmt.Sprintf("%s[%d].env", f("parameters"), i), "%s is also set in env", p.Env)
		}
	}
	if len(fe.List) > before {
		return nil
	}
	return c
}

func decodeParam(fe *modules.FileProblems, field string, raw json.RawMessage) *param {
	before := len(fe.List)
	var pj paramJSON
	if err := modules.DecodeStrict(raw, &pj); err != nil {
		fe.AddErr(field, err)
		return nil
	}
	f := func(name string) string { return field + "." + name }
	p := &param{Name: pj.Name, Type: pj.Type, Description: pj.Description, Required: pj.Required,
		Enum: pj.Enum, Min: pj.Min, Max: pj.Max, Env: pj.Env, AllowLeadingDash: pj.AllowLeadingDash}
	if !paramNameRE.MatchString(pj.Name) {
		fe.Add(f("name"), "%q is not a valid parameter name (%s)", pj.Name, paramNamePattern)
	}
	fe.CheckText(f("description"), pj.Description, false)
	if pj.Env != "" {
		switch {
		case !envNameRE.MatchString(pj.Env):
			fe.Add(f("env"), "%q is not a valid environment variable name", pj.Env)
		default:
			if err := checkParamEnv(pj.Env, pj.TrustEnv); err != nil {
				fe.Add(f("env"), "%w", err)
			}
		}
	} else if pj.TrustEnv {
		fe.Add(f("trust_env"), "only with env")
	}
	stringOnly := func(name string, set bool) {
		if set && pj.Type != contract.PiControlParamString {
			fe.Add(f(name), "only for string parameters")
		}
	}
	intOnly := func(name string, set bool) {
		if set && pj.Type != contract.PiControlParamInteger {
			fe.Add(f(name), "only for integer parameters")
		}
	}
	stringOnly("pattern", pj.Pattern != nil)
	stringOnly("enum", pj.Enum != nil)
	stringOnly("max_length", pj.MaxLength != nil)
	intOnly("min", pj.Min != nil)
	intOnly("max", pj.Max != nil)
	switch pj.Type {
	case contract.PiControlParamString:
		p.MaxLength = DefaultMaxLength
		if pj.MaxLength != nil {
			p.MaxLength = *pj.MaxLength
			if p.MaxLength < 1 || p.MaxLength > maxParamMaxLength {
				fe.Add(f("max_length"), "%d is out of range 1..%d", p.MaxLength, maxParamMaxLength)
			}
		}
		if pj.Pattern == nil && pj.Enum == nil {
			fe.Add(f("pattern"), "a string parameter needs a pattern or an enum")
		}
		if pj.Pattern != nil {
			p.Pattern = *pj.Pattern
			re, err := regexp.Compile(`^(?:` + p.Pattern + `)$`)
			if err != nil {
				fe.Add(f("pattern"), "%w", err)
			}
			p.re = re
		}
		if pj.Enum != nil && len(pj.Enum) == 0 {
			fe.Add(f("enum"), "empty enum")
		}
		for i, e := range pj.Enum {
			if err := checkStringValue(e); err != nil {
				fe.Add(fmt.Sprintf("%s[%d]", f("enum"), i), "%w", err)
			}
		}
	case contract.PiControlParamInteger:
		if p.Min != nil && p.Max != nil && *p.Min > *p.Max {
			fe.Add(f("min"), "min %d is greater than max %d", *p.Min, *p.Max)
		}
		if p.Min != nil && *p.Min < 0 && !p.AllowLeadingDash {
			fe.Add(f("min"), "a negative minimum needs \"allow_leading_dash\": true (a negative value starts with \"-\")")
		}
	case contract.PiControlParamBoolean:
	default:
		fe.Add(f("type"), "%q: want string, integer or boolean", pj.Type)
	}
	if len(pj.Default) > 0 {
		if pj.Required {
			fe.Add(f("default"), "a required parameter has no use for a default")
		}
		if len(fe.List) == before {
			v, err := p.fromJSON(pj.Default)
			if err != nil {
				fe.Add(f("default"), "%w", err)
			} else {
				p.Default = &v
				p.defaultValue = p.typed(v)
			}
		}
	}
	if len(fe.List) > before {
		return nil
	}
	return p
}

func reservedEnv(name string) bool {
	if reservedParamEnv[name] {
		return true
	}
	for _, pre := range reservedParamEnvPrefixes {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

// checkStringValue refuses what no string parameter may contain, whatever its
// pattern says: invalid UTF-8 and control characters (NUL, newlines, escape).
func checkStringValue(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("contains the control character %U", r)
		}
	}
	return nil
}

// fromJSON checks a JSON value against the parameter and returns its
// canonical string form (what goes into argv or env).
func (p *param) fromJSON(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch p.Type {
	case contract.PiControlParamString:
		if len(raw) == 0 || raw[0] != '"' {
			return "", fmt.Errorf("want a JSON string, got %s", describeJSON(raw))
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("invalid JSON string: %w", err)
		}
		if !utf8.Valid(raw) {
			return "", errors.New("not valid UTF-8")
		}
		return s, p.checkString(s)
	case contract.PiControlParamInteger:
		if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
			return "", fmt.Errorf("want a JSON integer, got %s", describeJSON(raw))
		}
		return p.fromString(string(raw))
	case contract.PiControlParamBoolean:
		switch string(raw) {
		case "true", "false":
			return string(raw), nil
		}
		return "", fmt.Errorf("want true or false, got %s", describeJSON(raw))
	}
	return "", fmt.Errorf("unknown parameter type %q", p.Type)
}

// fromString checks a value given as text (command line) and returns its
// canonical form.
func (p *param) fromString(s string) (string, error) {
	switch p.Type {
	case contract.PiControlParamString:
		return s, p.checkString(s)
	case contract.PiControlParamInteger:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return "", fmt.Errorf("%q is not an integer", truncate(s, 40))
		}
		if n < 0 && !p.AllowLeadingDash {
			return "", fmt.Errorf("%d is negative: %w", n, errLeadingDash)
		}
		if p.Min != nil && n < *p.Min {
			return "", fmt.Errorf("%d is less than the minimum %d", n, *p.Min)
		}
		if p.Max != nil && n > *p.Max {
			return "", fmt.Errorf("%d is greater than the maximum %d", n, *p.Max)
		}
		return strconv.FormatInt(n, 10), nil
	case contract.PiControlParamBoolean:
		switch s {
		case "true", "false":
			return s, nil
		}
		return "", fmt.Errorf("%q: want true or false", truncate(s, 40))
	}
	return "", fmt.Errorf("unknown parameter type %q", p.Type)
}

func (p *param) checkString(s string) error {
	if len(s) > p.MaxLength {
		return fmt.Errorf("longer than %d bytes", p.MaxLength)
	}
	if err := checkStringValue(s); err != nil {
		return err
	}
	if p.Enum != nil {
		for _, e := range p.Enum {
			if s == e {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", truncate(s, 40), strings.Join(quoteAll(p.Enum), ", "))
	}
	if p.re != nil && !p.re.MatchString(s) {
		return fmt.Errorf("%q does not match the pattern %s", truncate(s, 40), p.Pattern)
	}
	return p.checkSafety(s)
}

// typed returns the canonical value as the JSON type of the parameter.
func (p *param) typed(v string) any {
	switch p.Type {
	case contract.PiControlParamInteger:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	case contract.PiControlParamBoolean:
		return v == "true"
	}
	return v
}

func describeJSON(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
