package modules

import (
	"strings"
	"testing"
)

func TestFileProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		add   func(p *FileProblems)
		field string // "" when no problem is wanted
		want  string
	}{
		{"valid id", func(p *FileProblems) { p.CheckID("id", "system-1_a") }, "", ""},
		{"id with a space", func(p *FileProblems) { p.CheckID("id", "a b") }, "id", "not a valid id"},
		{"id with a slash", func(p *FileProblems) { p.CheckID("commands[0].id", "a/b") }, "commands[0].id", "topic level"},
		{"id too long", func(p *FileProblems) { p.CheckID("id", strings.Repeat("a", 65)) }, "id", "not a valid id"},
		{"empty required text", func(p *FileProblems) { p.CheckText("name", " ", true) }, "name", "must not be empty"},
		{"empty optional text", func(p *FileProblems) { p.CheckText("icon", "", false) }, "", ""},
		{"long text", func(p *FileProblems) { p.CheckText("description", strings.Repeat("x", MaxTextLength+1), false) }, "description", "longer than 4096 bytes"},
		{"NUL in text", func(p *FileProblems) { p.CheckText("name", "a\x00b", true) }, "name", "without NUL"},
		{"bad UTF-8", func(p *FileProblems) { p.CheckText("name", "a\xffb", true) }, "name", "valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &FileProblems{File: "f.json"}
			tc.add(p)
			if tc.field == "" {
				if len(p.List) != 0 {
					t.Fatalf("problems %v, want none", p.List)
				}
				return
			}
			if len(p.List) != 1 || p.List[0].File != "f.json" || p.List[0].Field != tc.field || !strings.Contains(p.List[0].Err.Error(), tc.want) {
				t.Errorf("problems %v, want one at f.json %s saying %q", p.List, tc.field, tc.want)
			}
		})
	}
}

// AddErr keeps every problem of a strict decode, each with its field.
func TestFileProblemsAddErrKeepsAll(t *testing.T) {
	var v struct {
		Name string `json:"name"`
	}
	err := DecodeStrict([]byte(`{"nmae":"a","colour":1}`), &v)
	if err == nil {
		t.Fatal("decode accepted two unknown keys")
	}
	p := &FileProblems{File: "f.json"}
	p.AddErr("commands[2]", err)
	fields := map[string]bool{}
	for _, pr := range p.List {
		fields[pr.Field] = pr.File == "f.json"
	}
	if !fields["commands[2].nmae"] || !fields["commands[2].colour"] {
		t.Errorf("problems %v, want commands[2].nmae and commands[2].colour in f.json", p.List)
	}
}
