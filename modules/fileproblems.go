package modules

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// IDPattern is what module, command and check ids must match: an id
// becomes a topic level.
const IDPattern = `^[a-z0-9][a-z0-9_-]{0,63}$`

// MaxTextLength bounds names, descriptions and icons in module files.
const MaxTextLength = 4096

var idRE = regexp.MustCompile(IDPattern)

// ValidID reports whether id matches IDPattern.
func ValidID(id string) bool { return idRE.MatchString(id) }

// FileProblems collects the problems of one module file, each naming the
// file and its field, so that a loader reports them all, not the first.
type FileProblems struct {
	File string
	List []Problem
}

// Add records a problem of field.
func (p *FileProblems) Add(field, format string, a ...any) {
	p.List = append(p.List, Problem{File: p.File, Field: field, Err: fmt.Errorf(format, a...)})
}

// AddErr records every problem err carries (a FieldErrors from
// DecodeStrict is one per field), below field.
func (p *FileProblems) AddErr(field string, err error) {
	p.List = append(p.List, ProblemsFor(p.File, field, err)...)
}

// CheckID records a problem when id is not a valid id.
func (p *FileProblems) CheckID(field, id string) {
	if !ValidID(id) {
		p.Add(field, "%q is not a valid id (%s): it becomes a topic level", id, IDPattern)
	}
}

// CheckText records a problem when s is empty but required, longer than
// MaxTextLength, or not valid UTF-8 without NUL.
func (p *FileProblems) CheckText(field, s string, required bool) {
	switch {
	case required && strings.TrimSpace(s) == "":
		p.Add(field, "must not be empty")
	case len(s) > MaxTextLength:
		p.Add(field, "longer than %d bytes", MaxTextLength)
	case !utf8.ValidString(s) || strings.ContainsRune(s, 0):
		p.Add(field, "must be valid UTF-8 without NUL")
	}
}
