package gpio

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

// A jumper makes the input pin follow what the output pin drives, with the
// edges a real wire would give: make demo toggles its button this way.
func TestFakeJumperDrivesInput(t *testing.T) {
	section := `{"backend":"fake","fake_jumpers":[{"from":17,"to":27}],"pins":[
		{"bcm":17,"mode":"output","initial":0},
		{"bcm":27,"mode":"input"}]}`
	mod, probs := Kind().Load(modules.Env{HostRoot: t.TempDir()}, []byte(section), "config.json", nil)
	if len(probs) != 0 || mod == nil {
		t.Fatalf("load: %v", probs)
	}
	h := &harness{t: t, m: mod.(*module), bus: bustest.New(), clock: newFakeClock()}
	h.m.clock = h.clock
	t.Cleanup(h.bus.Close)
	if err := h.m.Start(context.Background(), h.bus); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.m.Close() })
	for i, v := range []string{"1", "0", "1"} {
		h.mustSet("17", v)
		// The input saw exactly one edge per set, to the level set.
		ok := h.bus.WaitFor(waitLong, func(msgs []bustest.Message) bool {
			var edges []contract.GPIOState
			for _, m := range msgs {
				var st contract.GPIOState
				if m.Topic == contract.TopicGPIOState("27") && json.Unmarshal(m.Payload, &st) == nil && st.Source == contract.GPIOSourceEdge {
					edges = append(edges, st)
				}
			}
			return len(edges) == i+1 && edges[i].Value == int(v[0]-'0')
		})
		if !ok {
			t.Fatalf("set 17 to %s: input 27 states %+v", v, h.states("27"))
		}
	}
}
