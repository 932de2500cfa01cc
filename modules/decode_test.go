package modules

import (
	"strings"
	"testing"
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
		{in: `{"timeout":"10s"}`, wantField: "timeout", want: "expected int"},
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
