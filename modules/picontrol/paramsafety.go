package picontrol

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// ParamEnvPrefix begins every environment name a parameter may set, unless
// the parameter says "trust_env": true. An allow list, not a deny list: a
// variable such as TAR_OPTIONS, JAVA_TOOL_OPTIONS or GLIBC_TUNABLES changes
// what a program does, and no list of such names is ever complete.
const ParamEnvPrefix = "PICONTROL_"

// checkParamEnv says whether a parameter may set the environment variable
// name. trusted is the parameter's "trust_env": the module's author vouches
// that the program reads the variable as plain data. Even then the names of
// the base environment and of loaders, shells and interpreters stay refused.
func checkParamEnv(name string, trusted bool) error {
	if reservedEnv(name) {
		return fmt.Errorf("%s may not be set from a parameter", name)
	}
	if !trusted && !strings.HasPrefix(name, ParamEnvPrefix) || name == ParamEnvPrefix {
		return fmt.Errorf("%s may not be set from a parameter: parameter variables are named %s<NAME>, or the parameter must say \"trust_env\": true (only for a variable the program reads as plain data)", name, ParamEnvPrefix)
	}
	return nil
}

// errLeadingDash refuses a value that a program would read as an option.
var errLeadingDash = errors.New(`starts with "-" and would be read as an option; the parameter must say "allow_leading_dash": true (and the command should put "--" before the placeholder)`)

// invisible reports whether r is a character that displays as nothing or
// reorders what is displayed: format characters (Unicode Cf: bidi controls
// such as U+202E, zero-width U+200B..U+200D, U+2060, the BOM U+FEFF, the soft
// hyphen) and the line and paragraph separators U+2028 and U+2029.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// patternAllows reports whether the pattern names r explicitly, so that an
// invisible character is accepted: the character itself, an escape \x{HHHH}
// of it, or its Unicode class (\p{Cf}, \p{Zl}, \p{Zp}). A class that only
// happens to include it ([^/], ., \S) does not count.
func patternAllows(pattern string, r rune) bool {
	if strings.ContainsRune(pattern, r) {
		return true
	}
	lower := strings.ToLower(pattern)
	hex := strconv.FormatInt(int64(r), 16)
	for i := 0; ; {
		j := strings.Index(lower[i:], `\x{`)
		if j < 0 {
			break
		}
		i += j + 3
		end := strings.IndexByte(lower[i:], '}')
		if end < 0 {
			break
		}
		if strings.TrimLeft(lower[i:i+end], "0") == hex {
			return true
		}
	}
	for name, table := range map[string]*unicode.RangeTable{"Cf": unicode.Cf, "Zl": unicode.Zl, "Zp": unicode.Zp} {
		if unicode.Is(table, r) && strings.Contains(pattern, `\p{`+name+`}`) {
			return true
		}
	}
	return false
}

// checkSafety applies the rules of a free (pattern) string value that no
// pattern lifts by accident: no leading "-" unless allowed, and no invisible
// character unless the pattern names it.
func (p *param) checkSafety(s string) error {
	if strings.HasPrefix(s, "-") && !p.AllowLeadingDash {
		return fmt.Errorf("%q %w", truncate(s, 40), errLeadingDash)
	}
	for _, r := range s {
		if invisible(r) && !patternAllows(p.Pattern, r) {
			return fmt.Errorf("contains the invisible character %U (bidi control, zero-width or line separator); a pattern that wants it must name it, e.g. \\x{%04X}", r, r)
		}
	}
	return nil
}
