package kinds_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/gpio"
	"github.com/picockpit/picockpit-client/modules/kinds"
	"github.com/picockpit/picockpit-client/modules/picontrol"
)

const wait = 10 * time.Second

func pi4Root(t testing.TB) string {
	p, err := filepath.Abs(filepath.Join("..", "pistats", "testdata", "fixtures", "pi4", "root"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStatsThroughMosquitto validates real stats messages, retained and on
// request, against docs/schemas.
func TestStatsThroughMosquitto(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: kinds.All(),
		Config: map[string]any{"host": map[string]any{"root": pi4Root(t)}, "stats": map[string]any{"interval": "1s"}}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("stats"), a.Topic("reply/#"))
	m := c.WaitFor(wait, "stats", brokertest.Topic(a.Topic("stats")))
	agenttest.ValidateSchema(t, "stats", m.Payload)
	if m.Expiry == nil || *m.Expiry < 2 || *m.Expiry > 5 {
		t.Errorf("stats message expiry = %v, want about 3 x 1s", m.Expiry)
	}
	var snap map[string]any
	if err := json.Unmarshal(m.Payload, &snap); err != nil {
		t.Fatal(err)
	}
	if snap["throttle"] == nil || snap["memory"] == nil {
		t.Errorf("pi4 fixture snapshot lacks throttle or memory: %s", m.Payload)
	}
	// A fresh subscriber gets the retained snapshot.
	fresh := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	fresh.Subscribe(a.Topic("stats"))
	if r := fresh.WaitFor(wait, "retained stats", brokertest.Topic(a.Topic("stats"))); !r.Retain {
		t.Error("stats not retained")
	}
	c.Publish(a.Topic("stats/refresh"), nil, brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/s"), Correlation: []byte("s1")})
	r := c.WaitFor(wait, "refresh answer", brokertest.Topic(a.Topic("reply/s")))
	if string(r.Correlation) != "s1" {
		t.Errorf("correlation = %q", r.Correlation)
	}
	agenttest.ValidateSchema(t, "stats-response", r.Payload)
}

func gpioConfig(pins ...map[string]any) map[string]any {
	var ps []any
	for _, p := range pins {
		ps = append(ps, p)
	}
	return map[string]any{"gpio": map[string]any{"backend": "fake", "pins": ps}}
}

func startGPIO(t *testing.T, b *brokertest.Broker, fake *gpio.Fake, pins ...map[string]any) *agenttest.Agent {
	return agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{gpio.KindWith(fake)}, Config: gpioConfig(pins...)})
}

func lastState(msgs []brokertest.Message, topic string) (contract.GPIOState, bool) {
	var st contract.GPIOState
	found := false
	for _, m := range msgs {
		if m.Topic == topic {
			if err := json.Unmarshal(m.Payload, &st); err == nil {
				found = true
			}
		}
	}
	return st, found
}

// TestGPIOConcurrentSetsConverge: two clients set the same pin 500 times
// each, concurrently; every subscriber ends with the same final state, which
// is also the retained one and the line's level.
func TestGPIOConcurrentSetsConverge(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fake := gpio.NewFake()
	a := startGPIO(t, b, fake, map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0})
	topic := a.Topic("gpio/17/state")
	subs := []*brokertest.Client{brokertest.Connect(t, b.URL, brokertest.ClientOptions{}), brokertest.Connect(t, b.URL, brokertest.ClientOptions{})}
	for _, s := range subs {
		s.Subscribe(topic)
		s.WaitFor(wait, "initial state", brokertest.Topic(topic))
	}
	pubs := []*brokertest.Client{brokertest.Connect(t, b.URL, brokertest.ClientOptions{}), brokertest.Connect(t, b.URL, brokertest.ClientOptions{})}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, p := range pubs {
		wg.Add(1)
		go func(i int, p *brokertest.Client) {
			defer wg.Done()
			for n := 0; n < 500; n++ {
				payload := []string{"0", "1", "on", "off", `{"value":1}`, "false"}[(n+i)%6]
				if err := p.TryPublish(a.Topic("gpio/17/set"), []byte(payload), brokertest.PublishOptions{QoS: 1}); err != nil {
					errs <- err
					return
				}
			}
		}(i, p)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Barrier: the pin handles sets in order, so the answer to a set sent
	// after all of them carries the final state; wait until every
	// subscriber has it.
	bc := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	bc.Subscribe(a.Topic("reply/#"))
	var final *contract.GPIOState
	for i := 0; final == nil; i++ {
		if i == 100 {
			t.Fatal("the barrier set was never accepted")
		}
		rt := a.Topic(fmt.Sprintf("reply/barrier%d", i))
		bc.Publish(a.Topic("gpio/17/set"), []byte(`{"value":1}`), brokertest.PublishOptions{QoS: 1, ResponseTopic: rt, Correlation: []byte("b")})
		m := bc.WaitFor(wait, "barrier answer", brokertest.Topic(rt))
		var resp contract.GPIOSetResponse
		if err := json.Unmarshal(m.Payload, &resp); err != nil {
			t.Fatal(err)
		}
		final = resp.State // nil while the queue is full ("busy")
	}
	for i, s := range subs {
		s.WaitFor(wait, fmt.Sprintf("final state seq %d at subscriber %d", final.Seq, i), func(m brokertest.Message) bool {
			var st contract.GPIOState
			return m.Topic == topic && json.Unmarshal(m.Payload, &st) == nil && st.Seq == final.Seq
		})
	}
	s0, _ := lastState(subs[0].Messages(), topic)
	s1, _ := lastState(subs[1].Messages(), topic)
	fresh := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	fresh.Subscribe(topic)
	rm := fresh.WaitFor(wait, "retained state", brokertest.Topic(topic))
	var rs contract.GPIOState
	if err := json.Unmarshal(rm.Payload, &rs); err != nil {
		t.Fatal(err)
	}
	if s0.Seq != s1.Seq || s0.Value != s1.Value || s0.Seq != rs.Seq || s0.Value != rs.Value {
		t.Fatalf("subscribers disagree: sub0 seq %d value %d, sub1 seq %d value %d, retained seq %d value %d",
			s0.Seq, s0.Value, s1.Seq, s1.Value, rs.Seq, rs.Value)
	}
	if lv := fake.Level("GPIO17"); lv != rs.Value {
		t.Errorf("line level %d, retained state says %d", lv, rs.Value)
	}
	if rs.Seq < 2 {
		t.Errorf("final seq %d: the sets changed nothing", rs.Seq)
	}
	// Every subscriber saw seq strictly increasing.
	for i, s := range subs {
		var last uint64
		for _, m := range s.Messages() {
			var st contract.GPIOState
			_ = json.Unmarshal(m.Payload, &st)
			if st.Seq <= last {
				t.Fatalf("subscriber %d saw seq %d after %d", i, st.Seq, last)
			}
			last = st.Seq
		}
	}
}

// TestGPIOInputEdgeDebounced: a bouncing contact produces one state message.
func TestGPIOInputEdgeDebounced(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fake := gpio.NewFake()
	a := startGPIO(t, b, fake, map[string]any{"bcm": 27, "name": "door", "mode": "input", "pull": "up", "debounce": "30ms"})
	topic := a.Topic("gpio/27/state")
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(topic)
	c.WaitFor(wait, "initial state", brokertest.Topic(topic))
	c.Reset()
	fake.Drive("GPIO27", 1, 0, 1, 0, 1) // contact bounce, settles high
	m := c.WaitFor(wait, "edge state", brokertest.Topic(topic))
	var st contract.GPIOState
	if err := json.Unmarshal(m.Payload, &st); err != nil {
		t.Fatal(err)
	}
	if st.Value != 1 || st.Source != "edge" {
		t.Errorf("state after edge = %+v", st)
	}
	agenttest.ValidateSchema(t, "gpio-state", m.Payload)
	time.Sleep(300 * time.Millisecond)
	if n := len(c.Messages()); n != 1 {
		t.Errorf("%d state messages for one debounced edge, want 1", n)
	}
}

// TestGPIOFailsafeOnBrokerOutage: the relay drops to its failsafe value while
// the broker is away and gets its value back when the link returns.
func TestGPIOFailsafeOnBrokerOutage(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fake := gpio.NewFake()
	a := startGPIO(t, b, fake, map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 1,
		"failsafe": map[string]any{"value": 0, "after": "500ms"}})
	if lv := fake.Level("GPIO17"); lv != 1 {
		t.Fatalf("initial level %d", lv)
	}
	b.Stop()
	deadline := time.Now().Add(wait)
	for fake.Level("GPIO17") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("failsafe value not applied during the outage")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Start()
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("gpio/17/state"))
	m := c.WaitFor(20*time.Second, "restored state", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("gpio/17/state") && strings.Contains(string(m.Payload), `"restore"`)
	})
	var st contract.GPIOState
	_ = json.Unmarshal(m.Payload, &st)
	if st.Value != 1 || st.Failsafe {
		t.Errorf("restored state = %+v", st)
	}
	if lv := fake.Level("GPIO17"); lv != 1 {
		t.Errorf("line level after restore = %d", lv)
	}
}

// TestGPIOBusyLine: a line held by another program is reported with its
// holder and the other pins work.
func TestGPIOBusyLine(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fake := gpio.NewFake()
	fake.Hold("GPIO22", "pigpiod")
	a := startGPIO(t, b, fake,
		map[string]any{"bcm": 22, "name": "taken", "mode": "output"},
		map[string]any{"bcm": 17, "name": "relay", "mode": "output"})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("gpio/#"), a.Topic("reply/#"))
	pins := c.WaitFor(wait, "pins", brokertest.Topic(a.Topic("gpio/pins")))
	if !strings.Contains(string(pins.Payload), "pigpiod") {
		t.Errorf("pins do not name the holder: %s", pins.Payload)
	}
	c.Publish(a.Topic("gpio/17/set"), []byte("1"), brokertest.PublishOptions{QoS: 1})
	c.WaitFor(wait, "pin 17 set", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("gpio/17/state") && strings.Contains(string(m.Payload), `"value":1`)
	})
	c.Publish(a.Topic("gpio/22/set"), []byte("1"), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/22"), Correlation: []byte("x")})
	r := c.WaitFor(wait, "busy pin refused", brokertest.Topic(a.Topic("reply/22")))
	if !strings.Contains(string(r.Payload), "rejected") {
		t.Errorf("set on a busy pin answered %s", r.Payload)
	}
}

func TestGPIOBadSetsRefused(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fake := gpio.NewFake()
	a := startGPIO(t, b, fake,
		map[string]any{"bcm": 27, "name": "button", "mode": "input"},
		map[string]any{"bcm": 17, "name": "relay", "mode": "output"})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("reply/#"), a.Topic("events"))
	for i, tc := range []struct{ topic, payload, want string }{
		{"gpio/27/set", "1", "input"},
		{"gpio/5/set", "1", "5"},
		{"gpio/17/set", "maybe", "maybe"},
		{"gpio/17/set", `{"value":7}`, "value"},
	} {
		rt := a.Topic(fmt.Sprintf("reply/bad%d", i))
		c.Publish(a.Topic(tc.topic), []byte(tc.payload), brokertest.PublishOptions{QoS: 1, ResponseTopic: rt})
		r := c.WaitFor(wait, "refusal of "+tc.payload, brokertest.Topic(rt))
		if !strings.Contains(string(r.Payload), "rejected") || !strings.Contains(string(r.Payload), tc.want) {
			t.Errorf("%s %q answered %s", tc.topic, tc.payload, r.Payload)
		}
	}
	if fake.Level("GPIO17") != 0 {
		t.Error("a refused set changed the relay")
	}
}

// TestReloadClearsRemovedPins: a pin removed from the config and reloaded
// loses its retained state on the broker, and a broker restart does not
// bring it back from the agent's cache; the remaining pin keeps its state.
func TestReloadClearsRemovedPins(t *testing.T) {
	defer func(g time.Duration) { agent.StaleRetainedGrace = g }(agent.StaleRetainedGrace)
	agent.StaleRetainedGrace = 300 * time.Millisecond
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fake := gpio.NewFake()
	a := startGPIO(t, b, fake,
		map[string]any{"bcm": 17, "name": "relay", "mode": "output"},
		map[string]any{"bcm": 22, "name": "lamp", "mode": "output"})
	// Both states are retained before the reload.
	sc := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	sc.Subscribe(a.Topic("gpio/+/state"))
	for _, p := range []string{"17", "22"} {
		sc.WaitFor(wait, "state of pin "+p, brokertest.Topic(a.Topic("gpio/"+p+"/state")))
	}
	cfgPath := filepath.Join(a.ConfigDir, "picockpit-client.config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["gpio"] = gpioConfig(map[string]any{"bcm": 17, "name": "relay", "mode": "output"})["gpio"]
	raw, _ = json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Reload()
	retained := func() map[string]string {
		got := map[string]string{}
		for _, m := range retainedNow(t, b, a.Topic("gpio/")) {
			got[strings.TrimPrefix(m.Topic, a.Topic(""))] = string(m.Payload)
		}
		return got
	}
	// The clear is an empty retained message: wait for it, then look.
	sc.WaitFor(wait, "pin 22 cleared", brokertest.Topic(a.Topic("gpio/22/state"), ""))
	got := retained()
	if _, still := got["gpio/22/state"]; still {
		t.Fatalf("pin 22 still retained after the reload: %v", got)
	}
	if _, ok := got["gpio/17/state"]; !ok {
		t.Fatalf("pin 17 lost its retained state too: %v", got)
	}
	b.Stop()
	b.Start()
	// Whether the agent republishes before or after this client
	// subscribes, the client gets pin 17's state (retained or live).
	rc := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	rc.Subscribe(a.Topic("gpio/17/state"))
	rc.WaitFor(20*time.Second, "pin 17 republished after the broker restart", brokertest.Topic(a.Topic("gpio/17/state")))
	got = retained()
	if _, ok := got["gpio/17/state"]; !ok {
		t.Fatalf("pin 17 not retained after the broker restart: %v", got)
	}
	if _, back := got["gpio/22/state"]; back {
		t.Fatalf("the cache brought pin 22 back after a broker restart: %v", got)
	}
}

// retainedNow returns the messages retained under prefix (ending in "/")
// on the broker now. The broker sends a new subscriber the retained
// messages before anything published after the SUBACK, so a marker
// published under the same filter arrives after all of them.
func retainedNow(t *testing.T, b *brokertest.Broker, prefix string) []brokertest.Message {
	t.Helper()
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(prefix + "#")
	marker := prefix + "zz-retained-marker"
	c.Publish(marker, []byte("m"), brokertest.PublishOptions{QoS: 1})
	c.WaitFor(wait, "marker after the retained messages", brokertest.Topic(marker))
	var out []brokertest.Message
	for _, m := range c.Messages() {
		if m.Retain && m.Topic != marker {
			out = append(out, m)
		}
	}
	return out
}

// TestReloadKeepsLastResults: the retained last result of a command that
// still exists survives a reload (it is sticky), while stale topics go.
func TestReloadKeepsLastResults(t *testing.T) {
	defer func(g time.Duration) { agent.StaleRetainedGrace = g }(agent.StaleRetainedGrace)
	agent.StaleRetainedGrace = 300 * time.Millisecond
	b := brokertest.Mosquitto(t, brokertest.Options{})
	mod := `{"id":"tools","name":"Tools","commands":[{"id":"hello","name":"Hello","argv":["/bin/echo","hi"],"user":"nobody"}]}`
	// A GPIO pin that the reload removes shows when the stale check ran:
	// its retained state is cleared in the same pass.
	pin := map[string]any{"bcm": 22, "name": "lamp", "mode": "output"}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{picontrol.Kind(), gpio.KindWith(gpio.NewFake())},
		Config: gpioConfig(pin), Files: map[string]string{"apps/com.picockpit/picontrol/modules/tools.json": mod}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("picontrol/result/#"), a.Topic("gpio/22/state"))
	c.WaitFor(wait, "pin 22 state", brokertest.Topic(a.Topic("gpio/22/state")))
	c.Publish(a.Topic("picontrol/run/tools/hello"), nil, brokertest.PublishOptions{QoS: 1})
	c.WaitFor(wait, "result", brokertest.Topic(a.Topic("picontrol/result/tools/hello")))
	cfgPath := filepath.Join(a.ConfigDir, agent.ConfigFileName)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["gpio"] = gpioConfig()["gpio"]
	raw, _ = json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Reload()
	c.WaitFor(wait, "the stale check (pin 22 cleared)", brokertest.Topic(a.Topic("gpio/22/state"), ""))
	var found bool
	for _, m := range retainedNow(t, b, a.Topic("picontrol/result/")) {
		if m.Topic == a.Topic("picontrol/result/tools/hello") {
			found = true
			if !strings.Contains(string(m.Payload), `"done"`) {
				t.Errorf("result after reload: %s", m.Payload)
			}
		}
	}
	if !found {
		t.Error("the result of a command that still exists did not survive the reload")
	}
}
