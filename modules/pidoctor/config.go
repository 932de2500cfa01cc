package pidoctor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/picontrol"
)

// Limits and defaults of the configuration.
const (
	DefaultUser           = "root"
	DefaultMaxParallel    = 4
	DefaultTimeout        = 30 * time.Second
	DefaultKillGrace      = 5 * time.Second
	DefaultOutputLimit    = 64 << 10
	MinInterval           = 10 * time.Second
	maxChecksPerModule    = 256
	categoryPattern       = `^[a-z][a-z0-9_-]{0,31}$`
	defaultCategory       = "general"
	defaultNumberPattern  = `-?[0-9]+(?:\.[0-9]+)?`
	placeholderPattern    = `\{([a-z_]+)\}`
	maxPatternLength      = 1024
	maxMatchRules         = 32
	maxExitCodes          = 64
	outputPlaceholderSize = 200
)

var (
	categoryRE    = regexp.MustCompile(categoryPattern)
	placeholderRE = regexp.MustCompile(placeholderPattern)
)

// placeholders are the names a message or remedy template may use.
var placeholders = map[string]bool{"value": true, "output": true, "exit_code": true, "error": true, "name": true}

// Config is the "pidoctor" section of the main configuration.
type Config struct {
	// Interval runs every check periodically and publishes the report; 0
	// (the default) runs checks only when asked.
	Interval time.Duration
	// MaxParallel bounds the checks running at once.
	MaxParallel int
	// DefaultTimeout applies to external checks without a timeout.
	DefaultTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL of a timed-out check.
	KillGrace time.Duration
	// OutputLimit is how many bytes of an external check's stdout and stderr
	// are kept for its rule.
	OutputLimit int
}

func defaultConfig() Config {
	return Config{MaxParallel: DefaultMaxParallel, DefaultTimeout: DefaultTimeout, KillGrace: DefaultKillGrace,
		OutputLimit: DefaultOutputLimit}
}

type configJSON struct {
	Interval       json.RawMessage `json:"interval"`
	MaxParallel    *int            `json:"max_parallel"`
	DefaultTimeout json.RawMessage `json:"default_timeout"`
	KillGrace      json.RawMessage `json:"kill_grace"`
	OutputLimit    *int            `json:"output_limit"`
}

// decodeConfig decodes the section strictly on top of the defaults. On a
// problem it returns the defaults and the problems.
func decodeConfig(section []byte, file string) (Config, []modules.Problem) {
	cfg := defaultConfig()
	trimmed := bytes.TrimSpace(section)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return cfg, nil
	}
	const prefix = Name
	if trimmed[0] != '{' {
		return defaultConfig(), []modules.Problem{{File: file, Field: prefix, Err: fmt.Errorf("must be a JSON object")}}
	}
	var cj configJSON
	if err := modules.DecodeStrict(section, &cj); err != nil {
		return defaultConfig(), []modules.Problem{modules.ProblemFor(file, prefix, err)}
	}
	var probs []modules.Problem
	bad := func(field, format string, a ...any) {
		probs = append(probs, modules.Problem{File: file, Field: prefix + "." + field, Err: fmt.Errorf(format, a...)})
	}
	duration := func(name string, raw json.RawMessage, dst *time.Duration) {
		if raw == nil {
			return
		}
		var d picontrol.Duration
		if err := d.UnmarshalJSON(raw); err != nil {
			bad(name, "%w", err)
			return
		}
		*dst = time.Duration(d)
	}
	duration("interval", cj.Interval, &cfg.Interval)
	duration("default_timeout", cj.DefaultTimeout, &cfg.DefaultTimeout)
	duration("kill_grace", cj.KillGrace, &cfg.KillGrace)
	if cj.MaxParallel != nil {
		cfg.MaxParallel = *cj.MaxParallel
	}
	if cj.OutputLimit != nil {
		cfg.OutputLimit = *cj.OutputLimit
	}
	if cfg.Interval != 0 && (cfg.Interval < MinInterval || cfg.Interval > picontrol.MaxTimeout) {
		bad("interval", "%v: want 0 (off) or %v..%v", cfg.Interval, MinInterval, picontrol.MaxTimeout)
	}
	if cfg.MaxParallel < 1 || cfg.MaxParallel > 64 {
		bad("max_parallel", "%d is out of range 1..64", cfg.MaxParallel)
	}
	if cfg.DefaultTimeout <= 0 || cfg.DefaultTimeout > time.Hour {
		bad("default_timeout", "%v is out of range (0, 1h]", cfg.DefaultTimeout)
	}
	if cfg.KillGrace <= 0 || cfg.KillGrace > picontrol.MaxKillGrace {
		bad("kill_grace", "%v is out of range (0, %v]: %s", cfg.KillGrace, picontrol.MaxKillGrace, picontrol.KillGraceReason)
	}
	if cfg.OutputLimit < 1 || cfg.OutputLimit > 16<<20 {
		bad("output_limit", "%d is out of range 1..16777216", cfg.OutputLimit)
	}
	if len(probs) > 0 {
		return defaultConfig(), probs
	}
	return cfg, nil
}

// The JSON shapes of a module file.
type fileJSON struct {
	Schema      string            `json:"$schema"`
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Checks      []json.RawMessage `json:"checks"`
}

// checkKeys are the keys of a check that PiDoctor decodes itself; every other
// key of an external check goes to PiControl's command decoder.
var checkKeys = map[string]bool{"category": true, "builtin": true, "options": true, "rule": true, "message": true, "remedy": true}

// commonKeys are the keys a built-in check shares with a command.
var commonKeys = map[string]bool{"id": true, "name": true, "description": true, "icon": true}

// refusedCommandKeys are PiControl command keys that make no sense for a
// check (nobody fills in parameters, confirms or signs a diagnostic).
var refusedCommandKeys = []string{"parameters", "confirm", "concurrency", "require_signature"}

type checkJSON struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Icon        string          `json:"icon"`
	Category    string          `json:"category"`
	Builtin     string          `json:"builtin"`
	Options     json.RawMessage `json:"options"`
	Rule        json.RawMessage `json:"rule"`
	Message     json.RawMessage `json:"message"`
	Remedy      json.RawMessage `json:"remedy"`
}

type ruleJSON struct {
	ExitCodes   map[string]string `json:"exit_codes"`
	Match       []json.RawMessage `json:"match"`
	Default     string            `json:"default"`
	Number      json.RawMessage   `json:"number"`
	Missing     string            `json:"missing"`
	OKExitCodes []int             `json:"ok_exit_codes"`
	Stream      string            `json:"stream"`
}

type matchJSON struct {
	Pattern string `json:"pattern"`
	Verdict string `json:"verdict"`
}

type numberJSON struct {
	Pattern   *string  `json:"pattern"`
	WarnAbove *float64 `json:"warn_above"`
	FailAbove *float64 `json:"fail_above"`
	WarnBelow *float64 `json:"warn_below"`
	FailBelow *float64 `json:"fail_below"`
}

type textsJSON struct {
	OK    *string `json:"ok"`
	Warn  *string `json:"warn"`
	Fail  *string `json:"fail"`
	Error *string `json:"error"`
}

// module is one validated module file.
type module struct {
	ID, Name, Description string
	File                  string
	Checks                []*check
}

// loader decodes module files with the settings of the config section.
type loader struct {
	cfg Config
}

func (l *loader) commandOptions() picontrol.CommandOptions {
	return picontrol.CommandOptions{DefaultUser: DefaultUser, DefaultTimeout: l.cfg.DefaultTimeout,
		KillGrace: l.cfg.KillGrace, OutputLimit: l.cfg.OutputLimit}
}

// decodeModule decodes and validates one module file. A check with a problem
// is reported and left out; the file's other checks still load. A problem of
// the file itself (bad JSON, bad id) skips the whole file.
func (l *loader) decodeModule(file modules.File) (*module, []modules.Problem) {
	fe := &modules.FileProblems{File: file.Path}
	var fj fileJSON
	if err := modules.DecodeStrict(file.Data, &fj); err != nil {
		fe.AddErr("", err)
		return nil, fe.List
	}
	m := &module{ID: fj.ID, Name: fj.Name, Description: fj.Description, File: file.Path}
	fe.CheckID("id", fj.ID)
	fe.CheckText("name", fj.Name, true)
	fe.CheckText("description", fj.Description, false)
	if len(fj.Checks) == 0 {
		fe.Add("checks", "a module needs at least one check")
	}
	if len(fj.Checks) > maxChecksPerModule {
		fe.Add("checks", "%d checks, at most %d", len(fj.Checks), maxChecksPerModule)
	}
	if len(fe.List) > 0 {
		return nil, fe.List
	}
	seen := map[string]bool{}
	for i, raw := range fj.Checks {
		field := fmt.Sprintf("checks[%d]", i)
		c := l.decodeCheck(fe, field, raw)
		if c == nil {
			continue
		}
		if seen[c.ID] {
			fe.Add(field+".id", "duplicate check id %q", c.ID)
			continue
		}
		seen[c.ID] = true
		c.Module = m.ID
		m.Checks = append(m.Checks, c)
	}
	return m, fe.List
}

// decodeCheck decodes one check; nil when it has a problem.
func (l *loader) decodeCheck(fe *modules.FileProblems, field string, raw json.RawMessage) *check {
	before := len(fe.List)
	f := func(name string) string { return field + "." + name }
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		fe.Add(field, "a check must be a JSON object")
		return nil
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &keys); err != nil {
		fe.AddErr(field, err)
		return nil
	}
	// PiDoctor's own keys; an external check's other keys are PiControl's.
	own := map[string]json.RawMessage{}
	rest := map[string]json.RawMessage{}
	for k, v := range keys {
		switch {
		case checkKeys[k]:
			own[k] = v
		case commonKeys[k]:
			own[k] = v
			rest[k] = v
		default:
			rest[k] = v
		}
	}
	ownRaw, _ := json.Marshal(own)
	var cj checkJSON
	if err := modules.DecodeStrict(ownRaw, &cj); err != nil {
		fe.AddErr(field, err)
		return nil
	}
	c := &check{ID: cj.ID, Name: cj.Name, Description: cj.Description, Category: cj.Category}
	fe.CheckID(f("id"), cj.ID)
	fe.CheckText(f("name"), cj.Name, true)
	fe.CheckText(f("description"), cj.Description, false)
	if c.Category == "" {
		c.Category = defaultCategory
	} else if !categoryRE.MatchString(c.Category) {
		fe.Add(f("category"), "%q is not a valid category (%s)", c.Category, categoryPattern)
	}

	var defaults builtinDefaults
	if cj.Builtin != "" {
		for _, k := range slices.Sorted(maps.Keys(rest)) {
			if !commonKeys[k] {
				fe.Add(f(k), "not for a built-in check (builtin %q runs in the agent, no command)", cj.Builtin)
			}
		}
		b, d, err := newBuiltin(cj.Builtin, cj.Options)
		if err != nil {
			var fe2 *optionError
			if asOptionError(err, &fe2) {
				fe.Add(f("options."+fe2.field), "%w", fe2.err)
			} else {
				fe.Add(f("builtin"), "%w", err)
			}
		}
		c.probe, c.Builtin, defaults = b, cj.Builtin, d
	} else {
		if cj.Options != nil {
			fe.Add(f("options"), "only for built-in checks")
		}
		for _, k := range refusedCommandKeys {
			if _, ok := rest[k]; ok {
				fe.Add(f(k), "not supported in a check (a check runs unattended, without parameters)")
			}
		}
		if len(fe.List) == before {
			restRaw, _ := json.Marshal(rest)
			cmd, probs := picontrol.DecodeCommand(fe.File, field, restRaw, l.commandOptions())
			fe.List = append(fe.List, probs...)
			if cmd != nil {
				c.probe = &externalProbe{cmd: cmd}
			}
		}
	}

	c.rule = decodeRule(fe, f("rule"), cj.Rule, cj.Builtin != "", defaults.rule)
	c.message = decodeTexts(fe, f("message"), cj.Message, defaults.message, true)
	c.remedy = decodeTexts(fe, f("remedy"), cj.Remedy, defaults.remedy, false)
	if len(fe.List) > before {
		return nil
	}
	return c
}

func decodeRule(fe *modules.FileProblems, field string, raw json.RawMessage, builtin bool, def *rule) rule {
	f := func(name string) string { return field + "." + name }
	if raw == nil {
		switch {
		case def != nil:
			return *def
		case builtin:
			fe.Add(field, "missing")
			return rule{}
		}
		// An external check without a rule: exit code 0 is ok, anything else fails.
		return rule{kind: ruleExitCodes, exitCodes: map[int]string{0: verdictOK}, exitDefault: verdictFail}
	}
	var rj ruleJSON
	if err := modules.DecodeStrict(raw, &rj); err != nil {
		fe.AddErr(field, err)
		return rule{}
	}
	r := rule{stream: streamStdout, okExit: []int{0}}
	kinds := 0
	if rj.ExitCodes != nil {
		kinds++
		r.kind = ruleExitCodes
	}
	if rj.Match != nil {
		kinds++
		r.kind = ruleMatch
	}
	if rj.Number != nil {
		kinds++
		r.kind = ruleNumber
	}
	if kinds != 1 {
		fe.Add(field, "give exactly one of exit_codes, match or number")
		return rule{}
	}
	verdict := func(name, v string, allowEmpty bool) string {
		if v == "" && allowEmpty {
			return ""
		}
		if contractVerdict(v) {
			return v
		}
		fe.Add(name, "%q: want ok, warn, fail or error", v)
		return ""
	}
	if r.kind != ruleMatch && rj.Default != "" {
		fe.Add(f("default"), "only with match")
	}
	if r.kind != ruleNumber && rj.Missing != "" {
		fe.Add(f("missing"), "only with number")
	}
	if rj.OKExitCodes != nil {
		if r.kind == ruleExitCodes || builtin {
			fe.Add(f("ok_exit_codes"), "only with match or number on an external check")
		}
		if len(rj.OKExitCodes) == 0 || len(rj.OKExitCodes) > maxExitCodes {
			fe.Add(f("ok_exit_codes"), "give 1..%d exit codes", maxExitCodes)
		}
		for i, c := range rj.OKExitCodes {
			if c < 0 || c > 255 {
				fe.Add(fmt.Sprintf("%s[%d]", f("ok_exit_codes"), i), "%d is not an exit code (0..255)", c)
			}
		}
		r.okExit = rj.OKExitCodes
	}
	switch rj.Stream {
	case "", streamStdout:
	case streamStderr, streamBoth:
		if builtin {
			fe.Add(f("stream"), "only for external checks")
		}
		r.stream = rj.Stream
	default:
		fe.Add(f("stream"), "%q: want stdout, stderr or both", rj.Stream)
	}
	switch r.kind {
	case ruleExitCodes:
		if builtin {
			fe.Add(f("exit_codes"), "a built-in check has no exit code: use number or match")
		}
		if len(rj.ExitCodes) == 0 || len(rj.ExitCodes) > maxExitCodes {
			fe.Add(f("exit_codes"), "give 1..%d entries", maxExitCodes)
		}
		r.exitCodes = map[int]string{}
		r.exitDefault = verdictFail
		for _, k := range slices.Sorted(maps.Keys(rj.ExitCodes)) {
			v := verdict(f("exit_codes")+"."+k, rj.ExitCodes[k], false)
			if k == "default" {
				r.exitDefault = v
				continue
			}
			code, ok := parseExitCode(k)
			if !ok {
				fe.Add(f("exit_codes")+"."+k, "%q: want an exit code 0..255 or \"default\"", k)
				continue
			}
			r.exitCodes[code] = v
		}
	case ruleMatch:
		if len(rj.Match) == 0 || len(rj.Match) > maxMatchRules {
			fe.Add(f("match"), "give 1..%d patterns", maxMatchRules)
		}
		for i, mraw := range rj.Match {
			mf := fmt.Sprintf("%s[%d]", f("match"), i)
			var mj matchJSON
			if err := modules.DecodeStrict(mraw, &mj); err != nil {
				fe.AddErr(mf, err)
				continue
			}
			re := compilePattern(fe, mf+".pattern", mj.Pattern)
			v := verdict(mf+".verdict", mj.Verdict, false)
			r.matches = append(r.matches, matchRule{re: re, verdict: v})
		}
		r.matchDefault = verdictOK
		if rj.Default != "" {
			r.matchDefault = verdict(f("default"), rj.Default, false)
		}
	case ruleNumber:
		var nj numberJSON
		if err := modules.DecodeStrict(rj.Number, &nj); err != nil {
			fe.AddErr(f("number"), err)
			return r
		}
		pattern := defaultNumberPattern
		if nj.Pattern != nil {
			if builtin {
				fe.Add(f("number.pattern"), "a built-in check measures its number itself")
			}
			pattern = *nj.Pattern
		}
		r.numberRE = compilePattern(fe, f("number.pattern"), pattern)
		if r.numberRE != nil && r.numberRE.NumSubexp() > 1 {
			fe.Add(f("number.pattern"), "at most one capture group (the number)")
		}
		r.warnAbove, r.failAbove, r.warnBelow, r.failBelow = nj.WarnAbove, nj.FailAbove, nj.WarnBelow, nj.FailBelow
		if def != nil && def.kind == ruleNumber && nj.WarnAbove == nil && nj.FailAbove == nil && nj.WarnBelow == nil && nj.FailBelow == nil {
			r.warnAbove, r.failAbove, r.warnBelow, r.failBelow = def.warnAbove, def.failAbove, def.warnBelow, def.failBelow
		}
		if r.warnAbove == nil && r.failAbove == nil && r.warnBelow == nil && r.failBelow == nil {
			fe.Add(f("number"), "give at least one of warn_above, fail_above, warn_below, fail_below")
		}
		if r.warnAbove != nil && r.failAbove != nil && *r.warnAbove > *r.failAbove {
			fe.Add(f("number.warn_above"), "%v is above fail_above %v", *r.warnAbove, *r.failAbove)
		}
		if r.warnBelow != nil && r.failBelow != nil && *r.warnBelow < *r.failBelow {
			fe.Add(f("number.warn_below"), "%v is below fail_below %v", *r.warnBelow, *r.failBelow)
		}
		r.missing = verdictError
		if def != nil && def.kind == ruleNumber && def.missing != "" {
			r.missing = def.missing
		}
		if rj.Missing != "" {
			r.missing = verdict(f("missing"), rj.Missing, false)
		}
	}
	return r
}

func compilePattern(fe *modules.FileProblems, field, p string) *regexp.Regexp {
	if p == "" {
		fe.Add(field, "must not be empty")
		return nil
	}
	if len(p) > maxPatternLength {
		fe.Add(field, "longer than %d bytes", maxPatternLength)
		return nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		fe.Add(field, "%w", err)
		return nil
	}
	return re
}

func parseExitCode(s string) (int, bool) {
	if s == "" || len(s) > 3 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 255 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	return n, true
}

// decodeTexts decodes a message or remedy: one template for ok, warn and fail
// (a remedy: for warn and fail only, withOK false), or an object with a
// template per verdict.
func decodeTexts(fe *modules.FileProblems, field string, raw json.RawMessage, def texts, withOK bool) texts {
	if raw == nil {
		return def
	}
	trimmed := bytes.TrimSpace(raw)
	out := texts{}
	check := func(name, s string) string {
		fe.CheckText(name, s, false)
		for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
			if !placeholders[m[1]] {
				fe.Add(name, "unknown placeholder {%s} (known: {value}, {output}, {exit_code}, {error}, {name})", m[1])
			}
		}
		return s
	}
	if len(trimmed) > 0 && trimmed[0] == '"' {
		var s string
		if err := json.Unmarshal(trimmed, &s); err != nil {
			fe.AddErr(field, err)
			return def
		}
		s = check(field, s)
		out[verdictWarn], out[verdictFail] = s, s
		if withOK {
			out[verdictOK] = s
		}
		// Keep the default's error text (if any) for the error verdict.
		if e, ok := def[verdictError]; ok {
			out[verdictError] = e
		}
		return out
	}
	var tj textsJSON
	if err := modules.DecodeStrict(trimmed, &tj); err != nil {
		fe.AddErr(field, fmt.Errorf("want a string or an object with ok, warn, fail, error: %w", err))
		return def
	}
	given := map[string]*string{verdictOK: tj.OK, verdictWarn: tj.Warn, verdictFail: tj.Fail, verdictError: tj.Error}
	for v, s := range given {
		if s != nil {
			out[v] = check(field+"."+v, *s)
		} else if d, ok := def[v]; ok {
			out[v] = d
		}
	}
	return out
}

// optionError is a problem of one builtin option.
type optionError struct {
	field string
	err   error
}

func (e *optionError) Error() string { return e.field + ": " + e.err.Error() }

func asOptionError(err error, target **optionError) bool {
	oe, ok := err.(*optionError)
	if ok {
		*target = oe
	}
	return ok
}
