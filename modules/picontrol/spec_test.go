package picontrol

import (
	"encoding/json"
	"os/user"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// TestDecodeCommandForOtherKinds: the exported decoder names fields under
// the caller's prefix, applies the caller's default user and timeout, and
// Run goes through the same runner (output, exit code, timeout).
func TestDecodeCommandForOtherKinds(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	opts := CommandOptions{DefaultUser: me.Username, DefaultTimeout: 7 * time.Second, KillGrace: time.Second, OutputLimit: 4}
	_, probs := DecodeCommand("d.json", "checks[3]", json.RawMessage(`{"id":"x","name":"X","argv":["true"]}`), opts)
	if len(probs) != 1 || probs[0].File != "d.json" || probs[0].Field != "checks[3].argv[0]" {
		t.Fatalf("problems %v", probs)
	}
	c, probs := DecodeCommand("d.json", "checks[0]", json.RawMessage(`{"id":"x","name":"X","argv":["/bin/echo","hello"]}`), opts)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	if c.User() != me.Username || c.Timeout() != 7*time.Second || c.HasParameters() {
		t.Errorf("user %q timeout %v params %v", c.User(), c.Timeout(), c.HasParameters())
	}
	r := c.Run(t.Context())
	if r.Status != contract.StatusDone || r.ExitCode == nil || *r.ExitCode != 0 || r.Stdout != "hell" || !r.Truncated {
		t.Errorf("run: %+v", r)
	}
	slow, probs := DecodeCommand("d.json", "c", json.RawMessage(`{"id":"s","name":"S","argv":["/bin/sleep","30"],"timeout":"200ms"}`), opts)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	if r := slow.Run(t.Context()); r.Status != contract.StatusFailed || r.Error == "" {
		t.Errorf("timeout: %+v", r)
	}
}
