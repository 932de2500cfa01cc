package agent

import (
	"strings"
	"testing"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// TestDiscoveryTreeClaim: the Bus's discovery capability reaches one tree
// only, never the device topics, and only relative topics without
// wildcards below it.
func TestDiscoveryTreeClaim(t *testing.T) {
	root := contract.Root{Prefix: "picockpit", Device: "pi1"}
	for _, tc := range []struct {
		prefix, wantErr string
	}{
		{"homeassistant", ""},
		{"ha/discovery", ""},
		{"picockpit", "overlaps the device topics"},
		{"picockpit/pi1", "overlaps the device topics"},
		{"home/#", "wildcard"},
		{"$SYS", "reserved"},
		{"", "empty"},
	} {
		var e externalTopics
		err := e.claim("homeassistant", tc.prefix, root)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("claim(%q) = %v, want %q", tc.prefix, err, tc.wantErr)
		}
	}

	var e externalTopics
	if err := e.claim("homeassistant", "homeassistant", root); err != nil {
		t.Fatal(err)
	}
	e.add("homeassistant", "homeassistant/status", func([]byte) {})
	if err := e.claim("other", "elsewhere", root); err == nil {
		t.Error("a second module claimed another tree")
	}
	if _, err := e.full("other", "status"); err == nil {
		t.Error("a module that did not claim the tree may publish in it")
	}
	for _, rel := range []string{"", "+/config", "device/#", "/status", "status/", "a//b"} {
		if _, err := e.full("homeassistant", rel); err == nil {
			t.Errorf("relative topic %q accepted", rel)
		}
	}
	if full, err := e.full("homeassistant", "device/picockpit_pi1/config"); err != nil || full != "homeassistant/device/picockpit_pi1/config" {
		t.Errorf("full = %q, %v", full, err)
	}
	// A closed module releases the tree.
	e.remove("homeassistant")
	if err := e.claim("other", "elsewhere", root); err != nil {
		t.Errorf("tree not released by a closed module: %v", err)
	}

	// Only the handlers of the exact topic see a message.
	var got []string
	e.add("other", "elsewhere/status", func(p []byte) { got = append(got, "status:"+string(p)) })
	e.deliver("elsewhere/status", []byte("online"))
	e.deliver("elsewhere/other", []byte("x"))
	if len(got) != 1 || got[0] != "status:online" {
		t.Errorf("delivered %v", got)
	}
}
