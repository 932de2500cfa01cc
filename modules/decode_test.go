package modules

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeStrict(t *testing.T) {
	type inner struct {
		User string `json:"user"`
	}
	type doc struct {
		ID       string  `json:"id"`
		Timeout  int     `json:"timeout"`
		Commands []inner `json:"commands"`
	}
	for _, tc := range []struct {
		in        string
		wantField string
		want      string
	}{
		{in: `{"id":"a"}`},
		{in: ``, want: "empty document"},
		{in: `{"id":"a","idd":1}`, wantField: "idd", want: "unknown field"},
		{in: `{"timeout":"10s"}`, wantField: "timeout", want: `timeout: want a whole number in range, got the string "10s"`},
		{in: `{"commands":[{"usr":"pi"}]}`, wantField: "usr", want: "unknown field"},
		{in: "{\n \"id\": \"a\",\n}", want: "line 3"},
		{in: `{"id":"a"`, want: "ends early"},
		{in: `{"id":"a"} {"id":"b"}`, want: "after the JSON value"},
	} {
		var d doc
		err := DecodeStrict([]byte(tc.in), &d)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
			continue
		}
		p := ProblemFor("f.json", "", err)
		if tc.wantField != "" && !strings.Contains(p.Field, tc.wantField) {
			t.Errorf("%q: problem field %q, want %q", tc.in, p.Field, tc.wantField)
		}
	}
}

// TestDecodeStrictReportsAll: every problem of a document is reported, each
// naming its field, in words (no Go type names).
func TestDecodeStrictReportsAll(t *testing.T) {
	type cmd struct {
		Argv    []string `json:"argv"`
		Confirm bool     `json:"confirm"`
	}
	type doc struct {
		Prefix   string            `json:"prefix"`
		Commands []cmd             `json:"commands"`
		Env      map[string]string `json:"env"`
		Wait     *int              `json:"wait"`
	}
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"string argv and confirm yes", `{"commands":[{"argv":"/bin/true","confirm":"yes"}]}`,
			[]string{`commands[0].argv: want an array, got the string "/bin/true"`, `commands[0].confirm: want true or false, got the string "yes"`}},
		{"two misspelled keys", `{"prefx":"a","comands":[]}`,
			[]string{`prefx: unknown field (did you mean "prefix"?)`, `comands: unknown field (did you mean "commands"?)`}},
		{"unknown key far from every field", `{"colour":1}`, []string{"colour: unknown field (misspelled or not supported here)"}},
		{"number for a string", `{"prefix":5}`, []string{"prefix: want a string, got the number 5"}},
		{"object for a string in a map", `{"env":{"A":"x","B":{}}}`, []string{"env.B: want a string, got an object"}},
		{"fraction for an integer", `{"wait":1.5}`, []string{"wait: want a whole number in range, got the number 1.5"}},
		{"key given twice", `{"prefix":"a","prefix":"b"}`, []string{"prefix: given twice"}},
		{"array element", `{"commands":[{"argv":["/bin/true",7]}]}`, []string{"commands[0].argv[1]: want a string, got the number 7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			err := DecodeStrict([]byte(tc.in), &d)
			probs := ProblemsFor("f.json", "", err)
			if err == nil || len(probs) != len(tc.want) {
				t.Fatalf("error %v (%d problems), want %d: %q", err, len(probs), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if got := probs[i].Field + ": " + probs[i].Err.Error(); !strings.HasPrefix(got, w) {
					t.Errorf("problem %d = %q, want %q", i, got, w)
				}
				if strings.Contains(probs[i].Err.Error(), "int") && !strings.Contains(w, "int") || strings.Contains(probs[i].Err.Error(), "float64") {
					t.Errorf("Go type name in %q", probs[i].Err)
				}
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: `"30s"`, want: 30 * time.Second},
		{in: `"1m30s"`, want: 90 * time.Second},
		{in: `30`, err: `got the number 30 (write "30s" for seconds)`},
		{in: `"30"`, err: `"30" is not a duration`},
		{in: `"-1s"`, err: "negative"},
		{in: `true`, err: "got the boolean true"},
	} {
		d, err := DurationJSON([]byte(tc.in))
		if tc.err == "" {
			if err != nil || d != tc.want {
				t.Errorf("%s: %v, %v; want %v", tc.in, d, err, tc.want)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a/b/c", true},
		{"a/#", "a", true},
		{"picontrol/run/+/+", "picontrol/run/system/reboot", true},
		{"picontrol/run/+/+", "picontrol/run/system", false},
		{"gpio/+/set", "gpio/17/set", true},
		{"gpio/+/set", "gpio/17/state", false},
		{"a/b", "a/bc", false},
		{"#", "anything/at/all", true},
	} {
		if got := MatchTopic(tc.filter, tc.topic); got != tc.want {
			t.Errorf("MatchTopic(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}
