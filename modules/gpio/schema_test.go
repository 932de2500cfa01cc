package gpio

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/picockpit/picockpit-client/agent/agenttest"

	"github.com/picockpit/picockpit-client/agent/contract"
)

func schemaErr(sch *jsonschema.Schema, data []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

func TestConfigSchema(t *testing.T) {
	sch := agenttest.MustSchema(t, "gpio-config.schema.json")
	shipped, _ := filepath.Glob("../../etc/picockpit-client/apps/com.picockpit/gpio/modules/*.json")
	for _, p := range append([]string{"testdata/config/main.json", "testdata/config/led.json"}, shipped...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemaErr(sch, b); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, bad := range []string{"testdata/config/bad-mode.json"} {
		b, _ := os.ReadFile(bad)
		if schemaErr(sch, b) == nil {
			t.Errorf("%s validates", bad)
		}
	}
}

func TestPinsSchema(t *testing.T) {
	sch := agenttest.MustSchema(t, "gpio-pins.schema.json")
	b, err := os.ReadFile("testdata/pins.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := schemaErr(sch, b); err != nil {
		t.Error(err)
	}
}

func TestSetSchema(t *testing.T) {
	sch := agenttest.MustSchema(t, "gpio-set.schema.json")
	for _, c := range []string{`{"value":1}`, `{"value":"on"}`, `{"pwm":{"frequency":100,"duty":0.25}}`,
		`{"mode":"output","value":0}`, `1`, `true`, `" ON "`} {
		if _, err := ParseSet([]byte(strings.Trim(c, `"`))); err != nil {
			t.Errorf("ParseSet(%s): %v", c, err)
		}
		if err := schemaErr(sch, []byte(c)); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	for _, c := range []string{`{"value":2}`, `{}`, `{"pwm":{}}`, `{"pwm":{"duty":2}}`, `{"mode":"blink"}`, `{"value":1,"x":1}`, `2`} {
		if _, err := ParseSet([]byte(c)); err == nil {
			t.Errorf("ParseSet(%s) accepted", c)
		}
		if schemaErr(sch, []byte(c)) == nil {
			t.Errorf("%s validates", c)
		}
	}
}

// TestStateAndReplySchemas validates every state and reply of a session with
// sets, rejects, a busy pin, an edge and failsafe.
func TestStateAndReplySchemas(t *testing.T) {
	stateSch := agenttest.MustSchema(t, "gpio-state.schema.json")
	replySch := agenttest.MustSchema(t, "gpio-set-response.schema.json")
	fake := NewFake()
	fake.Hold("GPIO23", "pigpiod")
	h := start(t, `{"pins":[
		{"bcm":17,"mode":"output","initial":0,"failsafe":{"value":0,"after":"1s"}},
		{"bcm":18,"mode":"pwm","modes":["pwm","out"],"pwm":{"duty":0.5}},
		{"bcm":22,"mode":"input"},
		{"bcm":23,"mode":"output"}
	]}`, fake)
	h.mustSet("17", "on")
	h.mustSet("18", `{"pwm":{"frequency":50,"duty":0.1}}`)
	h.set("22", "on")
	h.set("23", "on")
	h.set("99", "on")
	fake.Drive("GPIO22", 1)
	h.waitState("22", "edge", func(s contract.GPIOState) bool { return s.Source == contract.GPIOSourceEdge })
	h.bus.SetConnected(false)
	h.clock.waitUntil(t, "failsafe timer", func(p, _ int) bool { return p == 1 })
	h.clock.Advance(time.Second)
	h.waitState("17", "failsafe", func(s contract.GPIOState) bool { return s.Failsafe })
	h.bus.SetConnected(true)
	h.waitState("17", "restore", func(s contract.GPIOState) bool { return s.Source == contract.GPIOSourceRestore })
	n := 0
	for _, m := range h.bus.Messages() {
		switch {
		case m.Reply:
			if err := schemaErr(replySch, m.Payload); err != nil {
				t.Errorf("reply %s: %v", m.Payload, err)
			}
		case strings.HasSuffix(m.Topic, "/state"):
			n++
			if err := schemaErr(stateSch, m.Payload); err != nil {
				t.Errorf("state %s: %v", m.Payload, err)
			}
		}
	}
	if n < 8 {
		t.Errorf("only %d states validated", n)
	}
}
