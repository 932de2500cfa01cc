package contract

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestRoot(t *testing.T) {
	r := Root{Prefix: "home/pis", Device: "abc"}
	if got := r.Topic("status"); got != "home/pis/abc/status" {
		t.Errorf("Topic = %q", got)
	}
	for _, tc := range []struct {
		full string
		rel  string
		ok   bool
	}{
		{"home/pis/abc/gpio/17/set", "gpio/17/set", true},
		{"home/pis/abcd/gpio/17/set", "", false},
		{"home/pis/ab", "", false},
		{"other/abc/status", "", false},
	} {
		rel, ok := r.Rel(tc.full)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("Rel(%q) = %q, %v; want %q, %v", tc.full, rel, ok, tc.rel, tc.ok)
		}
	}
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"home/pis/abc/reply/me", true},
		{"home/pis/abc/reply/me/x/y", true},
		{"home/pis/abc/reply/", false},
		{"home/pis/abc/reply", false},
		{"home/pis/abc/replyx/me", false},
		{"home/pis/abc/status", false},
		{"home/pis/other/reply/me", false},
		{"home/pis/abc/reply/+", false},
		{"home/pis/abc/reply/#", false},
		{"elsewhere/inbox", false},
	} {
		if got := r.IsReplyTopic(tc.topic); got != tc.ok {
			t.Errorf("IsReplyTopic(%q) = %v", tc.topic, got)
		}
	}
}

func TestValidate(t *testing.T) {
	for id, ok := range map[string]bool{"10000000a1b2c3d4": true, "kitchen-pi": true, "": false, "a/b": false, "a+": false, "#": false, " a": false, "a\x00": false} {
		if err := ValidateDeviceID(id); (err == nil) != ok {
			t.Errorf("ValidateDeviceID(%q) = %v", id, err)
		}
	}
	for p, ok := range map[string]bool{"picockpit": true, "home/pis": true, "": false, "/a": false, "a/": false, "a//b": false, "$SYS": false, "a/+/b": false, "a/#": false} {
		if err := ValidatePrefix(p); (err == nil) != ok {
			t.Errorf("ValidatePrefix(%q) = %v", p, err)
		}
	}
}

// TestAsyncAPISchemasExist: every schema the AsyncAPI document names is a
// file in docs/schemas.
func TestAsyncAPISchemasExist(t *testing.T) {
	doc, err := os.ReadFile("../../docs/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`"(schemas/[a-z0-9-]+\.schema\.json)"`).FindAllStringSubmatch(string(doc), -1)
	if len(refs) < 10 {
		t.Fatalf("only %d schema references found", len(refs))
	}
	for _, m := range refs {
		if _, err := os.Stat(filepath.Join("../../docs", m[1])); err != nil {
			t.Errorf("asyncapi.yaml names %s: %v", m[1], err)
		}
	}
}
