package pidoctor

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/picockpit/picockpit-client/agent/contract"
)

const (
	verdictOK    = contract.VerdictOK
	verdictWarn  = contract.VerdictWarn
	verdictFail  = contract.VerdictFail
	verdictError = contract.VerdictError
)

func contractVerdict(v string) bool { return contract.VerdictRank(v) >= 0 }

// Rule kinds.
const (
	ruleExitCodes = "exit_codes"
	ruleMatch     = "match"
	ruleNumber    = "number"
)

// Streams a rule reads.
const (
	streamStdout = "stdout"
	streamStderr = "stderr"
	streamBoth   = "both"
)

// rule turns what a check observed into a verdict and a value.
type rule struct {
	kind string
	// exit_codes
	exitCodes   map[int]string
	exitDefault string
	// match
	matches      []matchRule
	matchDefault string
	// number
	numberRE                                   *regexp.Regexp
	warnAbove, failAbove, warnBelow, failBelow *float64
	missing                                    string
	// match and number on external checks
	okExit []int
	stream string
}

type matchRule struct {
	re      *regexp.Regexp
	verdict string
}

// texts are templates by verdict.
type texts map[string]string

// check is one validated check.
type check struct {
	Module, ID, Name, Description, Category string
	// Builtin names the built-in check; "" for an external one.
	Builtin string
	probe   prober
	rule    rule
	message texts
	remedy  texts
}

// prober makes the observation a rule judges.
type prober interface {
	probe(ctx context.Context, env *runEnv) observation
}

// observation is what a check saw.
type observation struct {
	// err is set when the check could not run or measure: its verdict is
	// error, whatever the rule.
	err string
	// External checks: the exit code and output.
	exitCode int
	stdout   string
	stderr   string
	hasExit  bool
	// Built-in checks: the measured number (nil: nothing to measure, e.g. no
	// Wi-Fi associated) and a sentence saying what was found.
	value  *float64
	output string
}

// outcome is a judged observation.
type outcome struct {
	verdict string
	value   any
	message string
	remedy  string
}

// evaluate judges obs by the check's rule and renders message and remedy.
func (c *check) evaluate(obs observation) outcome {
	o, vars := c.judge(obs)
	o.message = render(c.message[o.verdict], vars)
	if o.message == "" {
		switch {
		case o.verdict == verdictError:
			o.message = "could not check: " + vars["error"]
		case vars["output"] != "":
			o.message = vars["output"]
		case c.rule.kind == ruleExitCodes && obs.hasExit:
			o.message = "exit code " + vars["exit_code"]
		case vars["value"] != "":
			o.message = vars["value"]
		default:
			o.message = o.verdict
		}
	}
	o.remedy = render(c.remedy[o.verdict], vars)
	return o
}

func (c *check) judge(obs observation) (outcome, map[string]string) {
	vars := map[string]string{"name": c.Name}
	text := obs.output
	if obs.hasExit {
		vars["exit_code"] = strconv.Itoa(obs.exitCode)
		switch c.rule.stream {
		case streamStderr:
			text = obs.stderr
		case streamBoth:
			text = obs.stdout + obs.stderr
		default:
			text = obs.stdout
		}
	}
	vars["output"] = firstLine(text)
	fail := func(why string) (outcome, map[string]string) {
		vars["error"] = why
		return outcome{verdict: verdictError}, vars
	}
	if obs.err != "" {
		return fail(obs.err)
	}
	r := &c.rule
	if obs.hasExit && r.kind != ruleExitCodes && !slices.Contains(r.okExit, obs.exitCode) {
		why := fmt.Sprintf("exit code %d", obs.exitCode)
		if l := firstLine(obs.stderr); l != "" {
			why += ": " + l
		}
		return fail(why)
	}
	switch r.kind {
	case ruleExitCodes:
		code := obs.exitCode
		vars["value"] = strconv.Itoa(code)
		v, ok := r.exitCodes[code]
		if !ok {
			if code == 126 || code == 127 {
				// The shell's "not executable" and "not found".
				why := fmt.Sprintf("exit code %d (command not found or not executable)", code)
				if l := firstLine(obs.stderr); l != "" {
					why += ": " + l
				}
				return fail(why)
			}
			v = r.exitDefault
		}
		if v == verdictError {
			vars["error"] = "exit code " + strconv.Itoa(code)
		}
		return outcome{verdict: v, value: code}, vars
	case ruleMatch:
		for _, m := range r.matches {
			sub := m.re.FindStringSubmatch(text)
			if sub == nil {
				continue
			}
			val := sub[0]
			if len(sub) > 1 {
				val = sub[1]
			}
			val = truncate(val, outputPlaceholderSize)
			vars["value"] = val
			return outcome{verdict: m.verdict, value: val}, vars
		}
		return outcome{verdict: r.matchDefault, value: nil}, vars
	case ruleNumber:
		num := obs.value
		if obs.hasExit {
			num = nil
			if sub := r.numberRE.FindStringSubmatch(text); sub != nil {
				s := sub[0]
				if len(sub) > 1 {
					s = sub[1]
				}
				if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
					num = &f
				}
			}
		}
		if num == nil {
			if r.missing == verdictError {
				if obs.hasExit {
					return fail("no number in the output")
				}
				return fail(vars["output"])
			}
			return outcome{verdict: r.missing, value: nil}, vars
		}
		n := *num
		vars["value"] = formatNumber(n)
		v := verdictOK
		switch {
		case r.failAbove != nil && n > *r.failAbove, r.failBelow != nil && n < *r.failBelow:
			v = verdictFail
		case r.warnAbove != nil && n > *r.warnAbove, r.warnBelow != nil && n < *r.warnBelow:
			v = verdictWarn
		}
		return outcome{verdict: v, value: n}, vars
	}
	return fail("check has no rule")
}

// render replaces {name} placeholders by vars; unknown names stay (the
// decoder refuses them in configured templates).
func render(tmpl string, vars map[string]string) string {
	if tmpl == "" {
		return ""
	}
	return placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := m[1 : len(m)-1]
		if v, ok := vars[name]; ok {
			return v
		}
		if placeholders[name] {
			return ""
		}
		return m
	})
}

func formatNumber(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}

// firstLine returns the first non-empty line of s, trimmed and truncated,
// with invalid UTF-8 and control characters replaced.
func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" {
			return truncate(clean(line), outputPlaceholderSize)
		}
	}
	return ""
}

func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
