package picontrol

import (
	"errors"
	"strings"
)

// splitCommand splits a command line into words the way a POSIX shell would
// for a simple command, without running anything: blanks separate words,
// single quotes keep everything literally, double quotes keep everything but
// \" \\ \$ \` and a backslash-newline, and a backslash outside quotes escapes
// the next character. Anything a shell would expand or interpret ($, `, |,
// ;, &, <, >, (, ), *, ?, [, ~ and # outside quotes) is an error, so a
// command never means something different here than in a shell.
func splitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '\\':
			if i+1 >= len(rs) {
				return nil, errors.New("command ends with a backslash")
			}
			i++
			if rs[i] != '\n' { // backslash-newline joins lines
				cur.WriteRune(rs[i])
				inWord = true
			}
		case r == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(string(rs[i+1 : j]))
			inWord = true
			i = j
		case r == '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				switch rs[j] {
				case '\\':
					if j+1 < len(rs) && strings.ContainsRune("\"\\$`\n", rs[j+1]) {
						j++
						if rs[j] != '\n' {
							cur.WriteRune(rs[j])
						}
						continue
					}
				case '$', '`':
					return nil, errors.New("$ and ` inside double quotes would be expanded by a shell; escape them or use single quotes (or argv)")
				}
				cur.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
			i = j
		case strings.ContainsRune("$`|;&<>()*?[", r) || (r == '~' && !inWord) || (r == '#' && !inWord):
			return nil, errors.New("unquoted " + string(r) + " is shell syntax; quote it, use argv, or set \"shell\": true")
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}
