package homeassistant_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/gpio"
	"github.com/picockpit/picockpit-client/modules/homeassistant"
	"github.com/picockpit/picockpit-client/modules/picontrol"
	"github.com/picockpit/picockpit-client/modules/pistats"
)

const wait = 15 * time.Second

type discovery struct {
	Device     map[string]any            `json:"device"`
	Components map[string]map[string]any `json:"components"`
}

func pi4Root(t *testing.T) string {
	p, err := filepath.Abs(filepath.Join("..", "pistats", "testdata", "fixtures", "pi4", "root"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pins(ps ...int) []any {
	var out []any
	for _, p := range ps {
		out = append(out, map[string]any{"bcm": p, "name": "pin" + string(rune('0'+p%10)), "mode": "output", "initial": 0})
	}
	return out
}

// TestDiscoveryThroughMosquitto: the discovery message reaches a real
// broker, retained; its switch's command_topic and state_topic really drive
// and report the pin; Home Assistant's birth message brings it again; a
// reload that drops a pin removes that entity (platform-only component);
// disabling the integration clears the device (empty retained config).
func TestDiscoveryThroughMosquitto(t *testing.T) {
	defer func(g time.Duration) { agent.StaleRetainedGrace = g }(agent.StaleRetainedGrace)
	agent.StaleRetainedGrace = 300 * time.Millisecond
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fake := gpio.NewFake()
	stats := pistats.Kind()
	stats.Section = pistats.SectionKey
	hello := `{"id":"demo","name":"Demo","commands":[{"id":"hello","name":"Say hello","argv":["/bin/echo","hello"],"user":"nobody"}]}`
	cfg := map[string]any{
		"host":          map[string]any{"root": pi4Root(t)},
		"stats":         map[string]any{"interval": "1s"},
		"gpio":          map[string]any{"backend": "fake", "pins": pins(17, 22)},
		"homeassistant": map[string]any{"enabled": true},
	}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL,
		Kinds:  []modules.Kind{gpio.KindWith(fake), stats, picontrol.Kind(), homeassistant.Kind()},
		Files:  map[string]string{"apps/com.picockpit/picontrol/modules/demo.json": hello},
		Config: cfg})
	cfgTopic := homeassistant.FullConfigTopic("homeassistant", a.Root.Device)

	// A client that arrives later gets the retained config, complete.
	var d discovery
	complete := func(m brokertest.Message) bool {
		if m.Topic != cfgTopic || !m.Retain && len(m.Payload) == 0 {
			return false
		}
		d = discovery{}
		if json.Unmarshal(m.Payload, &d) != nil {
			return false
		}
		return d.Components["gpio_17"] != nil && d.Components["soc_temperature"] != nil && d.Components["cmd_demo_hello"] != nil && d.Components["update"] != nil
	}
	// The stats entities need a snapshot: ask for one rather than wait for
	// the first periodic publish.
	early := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	early.Subscribe(cfgTopic)
	early.Publish(a.Topic("stats/refresh"), nil, brokertest.PublishOptions{QoS: 1})
	early.WaitFor(wait, "a complete discovery", complete)
	// It was published retained: a client that subscribes now gets it.
	watch := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	watch.Subscribe(cfgTopic, a.Topic("gpio/+/state"))
	watch.WaitFor(wait, "the complete retained discovery", func(m brokertest.Message) bool { return m.Retain && complete(m) })
	if d.Device["sw_version"] == nil || d.Device["identifiers"] == nil {
		t.Errorf("device block incomplete: %v", d.Device)
	}

	// The switch, through the topics the discovery names.
	sw := d.Components["gpio_17"]
	if sw["platform"] != "switch" {
		t.Fatalf("gpio_17 = %v", sw)
	}
	watch.Reset()
	watch.Publish(sw["command_topic"].(string), []byte(sw["payload_on"].(string)), brokertest.PublishOptions{QoS: 1})
	watch.WaitFor(wait, "pin 17 on, on the discovery's state_topic", func(m brokertest.Message) bool {
		var st contract.GPIOState
		return m.Topic == sw["state_topic"].(string) && json.Unmarshal(m.Payload, &st) == nil && st.Value == 1 && st.Source == "set"
	})
	if fake.Level("GPIO17") != 1 {
		t.Error("pin 17 not driven on")
	}

	// Home Assistant's birth message brings the discovery again.
	watch.Reset()
	ha := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	ha.Publish("homeassistant/status", []byte("online"), brokertest.PublishOptions{QoS: 1})
	watch.WaitFor(wait, "discovery again after homeassistant/status online", func(m brokertest.Message) bool {
		return m.Topic == cfgTopic && !m.Retain && complete(m)
	})

	// Reload without pin 22: its entity is removed.
	if d.Components["gpio_22"]["platform"] != "switch" || len(d.Components["gpio_22"]) < 3 {
		t.Fatalf("gpio_22 before the reload = %v", d.Components["gpio_22"])
	}
	cfg["gpio"] = map[string]any{"backend": "fake", "pins": pins(17)}
	writeConfig(t, a, cfg)
	watch.Reset()
	a.Reload()
	watch.WaitFor(wait, "discovery without pin 22", func(m brokertest.Message) bool {
		return m.Topic == cfgTopic && complete(m) && len(d.Components["gpio_22"]) == 1 && d.Components["gpio_22"]["platform"] == "switch"
	})

	// After a broker restart (no persistence: every retained message is
	// gone) the agent publishes the discovery again on reconnect.
	b.Stop()
	b.Start()
	without22 := func(m brokertest.Message) bool { return complete(m) && len(d.Components["gpio_22"]) == 1 }
	// Whether the agent republishes before or after this client subscribes,
	// the client gets it (retained or live).
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(cfgTopic)
	c.WaitFor(wait, "discovery after the broker restarted", without22)
	// And it is retained again.
	c = brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(cfgTopic)
	c.WaitFor(wait, "discovery retained after the broker restarted", func(m brokertest.Message) bool { return m.Retain && without22(m) })
	watch = brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	watch.Subscribe(cfgTopic)

	// Integration off: the device is removed (empty retained config), and
	// the broker no longer holds it.
	cfg["homeassistant"] = map[string]any{"enabled": false}
	writeConfig(t, a, cfg)
	watch.Reset()
	a.Reload()
	watch.WaitFor(wait, "empty discovery config", func(m brokertest.Message) bool {
		return m.Topic == cfgTopic && len(m.Payload) == 0
	})
	late := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	late.Subscribe(cfgTopic, a.Topic("status"))
	late.WaitFor(wait, "retained status", brokertest.Topic(a.Topic("status")))
	for _, m := range late.Messages() {
		if m.Topic == cfgTopic {
			t.Errorf("discovery still retained after disabling: %s", m.Payload)
		}
	}
}

// TestDiscoveryRemovesWhatAPreviousRunLeft: a component that a previous run
// published (retained on the broker) and this run does not have is sent as
// a removal.
func TestDiscoveryRemovesWhatAPreviousRunLeft(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	o := agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{homeassistant.Kind()},
		Config: map[string]any{"homeassistant": map[string]any{"enabled": true}}, NoWait: true}
	_, root := agenttest.WriteConfig(t, &o)
	cfgTopic := homeassistant.FullConfigTopic("homeassistant", root.Device)
	old := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	old.Publish(cfgTopic, []byte(`{"device":{"identifiers":["x"]},"origin":{"name":"picockpit-client"},"components":{"gpio_5":{"platform":"switch","unique_id":"u","command_topic":"t"}}}`),
		brokertest.PublishOptions{QoS: 1, Retain: true})
	watch := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	watch.Subscribe(cfgTopic)
	watch.Reset()
	o.DeviceID = root.Device
	agenttest.Start(t, o)
	watch.WaitFor(wait, "removal of gpio_5", func(m brokertest.Message) bool {
		var d discovery
		return m.Topic == cfgTopic && json.Unmarshal(m.Payload, &d) == nil && len(d.Components["gpio_5"]) == 1 &&
			d.Components["gpio_5"]["platform"] == "switch"
	})
}

func writeConfig(t *testing.T, a *agenttest.Agent, cfg map[string]any) {
	t.Helper()
	p := filepath.Join(a.ConfigDir, "picockpit-client.config.json")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var cur map[string]any
	if err := json.Unmarshal(raw, &cur); err != nil {
		t.Fatal(err)
	}
	for k, v := range cfg {
		cur[k] = v
	}
	raw, _ = json.Marshal(cur)
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}
