//go:build linux

package gpio

import (
	"strings"
	"testing"

	"github.com/warthog618/go-gpiocdev"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// TestCdevWithoutChips: on a machine without GPIO chips every pin is
// reported unavailable with the reason, and the module still runs.
func TestCdevWithoutChips(t *testing.T) {
	if chips := gpiocdev.Chips(); len(chips) > 0 {
		t.Skipf("this machine has GPIO chips %v", chips)
	}
	h := start(t, `{"pins":[{"bcm":17,"mode":"output"},{"bcm":27,"mode":"input"}]}`, NewCdev())
	for _, p := range []string{"17", "27"} {
		st := h.waitState(p, "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
		if !strings.Contains(st.Error, "no GPIO chip found") {
			t.Errorf("pin %s: error %q", p, st.Error)
		}
	}
	if r := h.set("17", "1"); r.Status != contract.StatusRejected || !strings.Contains(r.Error, "unavailable") {
		t.Errorf("set: %+v", r)
	}
}
