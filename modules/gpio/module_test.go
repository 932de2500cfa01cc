package gpio

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

const relayCfg = `{"backend":"fake","pins":[
	{"bcm":17,"name":"Relay","mode":"output","initial":0}
]}`

func TestInitialStateAndCatalogue(t *testing.T) {
	fake := NewFake()
	fake.Drive("GPIO22", 0) // button released, pulled up: active-low reads 1... set below
	h := start(t, `{"pins":[
		{"bcm":17,"name":"Relay","mode":"output","initial":1,"failsafe":{"value":0,"after":"30s"}},
		{"bcm":22,"name":"Door","mode":"input","pull":"up","active_low":true,"debounce":"20ms"},
		{"bcm":18,"name":"LED","mode":"pwm","initial":0,"pwm":{"frequency":200,"duty":0.5}}
	]}`, fake)
	for _, c := range []struct {
		pin       string
		mode      string
		value     int
		pwm       *contract.GPIOPWM
		level     int
		levelName string
	}{
		{pin: "17", mode: "out", value: 1, level: 1, levelName: "GPIO17"},
		{pin: "22", mode: "in", value: 1, level: 0, levelName: "GPIO22"},
		{pin: "18", mode: "pwm", value: 0, pwm: &contract.GPIOPWM{Frequency: 200, Duty: 0.5}, level: 0, levelName: "GPIO18"},
	} {
		st := h.waitState(c.pin, "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
		want := contract.GPIOState{Pin: c.pin, Mode: c.mode, Value: c.value, PWM: c.pwm, Seq: 1,
			Epoch: h.clock.Now().UnixMilli(), TS: h.clock.Now(), Source: contract.GPIOSourceInit}
		if d := cmp.Diff(want, st); d != "" {
			t.Errorf("pin %s initial state (-want +got):\n%s", c.pin, d)
		}
		if got := fake.Level(c.levelName); got != c.level {
			t.Errorf("%s level %d, want %d", c.levelName, got, c.level)
		}
		if holder, ok := fake.Holder(c.levelName); !ok || holder != Consumer {
			t.Errorf("%s holder %q %v, want %q", c.levelName, holder, ok, Consumer)
		}
	}
	msg, ok := h.bus.Retained(contract.TopicGPIOPins)
	if !ok {
		t.Fatal("no retained gpio/pins")
	}
	var cat contract.GPIOPins
	if err := json.Unmarshal(msg.Payload, &cat); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range cat.Pins {
		ids = append(ids, p.Pin)
	}
	if d := cmp.Diff([]string{"17", "18", "22"}, ids); d != "" {
		t.Errorf("catalogue pins sorted by BCM (-want +got):\n%s", d)
	}
}

// TestConcurrentSetsConverge: two clients set one pin 500 times each at
// once; every set gets its own seq, states are published in seq order, and
// the retained state (what every subscriber ends with) is the last one and
// matches the line.
func TestConcurrentSetsConverge(t *testing.T) {
	h := start(t, relayCfg, nil)
	h.waitState("17", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	const perClient = 500
	payloads := [][]string{{"1", "on", "true", `{"value":1}`}, {"0", "off", "false", `{"value":0}`}}
	var wg sync.WaitGroup
	for c := 0; c < 2; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				req := &modules.Request{Topic: "gpio/17/set", Payload: []byte(payloads[c][i%4]),
					ResponseTopic: fmt.Sprintf("picockpit/dev/reply/c%d", c), CorrelationData: []byte(fmt.Sprintf("%d-%d", c, i)),
					Requester: fmt.Sprintf("client%d", c)}
				for !h.bus.Inject(req) { // queue full: the broker would hold it back
					time.Sleep(100 * time.Microsecond)
				}
			}
		}()
	}
	wg.Wait()
	if !h.bus.WaitFor(waitLong, func(msgs []bustest.Message) bool {
		n := 0
		for _, m := range msgs {
			if m.Reply {
				n++
			}
		}
		return n == 2*perClient
	}) {
		t.Fatal("timed out waiting for 1000 replies")
	}
	// Replies: every set accepted, each with a distinct seq 2..1001 and the
	// value its client asked for.
	seqValue := map[uint64]int{}
	for _, m := range h.bus.Messages() {
		if !m.Reply {
			continue
		}
		var r contract.GPIOSetResponse
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != contract.StatusOK || r.State == nil {
			t.Fatalf("reply %s", m.Payload)
		}
		wantV := 1
		if strings.HasSuffix(m.Topic, "c1") {
			wantV = 0
		}
		if r.State.Value != wantV {
			t.Errorf("reply to %s has value %d, want %d", m.Topic, r.State.Value, wantV)
		}
		if _, dup := seqValue[r.State.Seq]; dup {
			t.Errorf("seq %d given twice", r.State.Seq)
		}
		seqValue[r.State.Seq] = r.State.Value
	}
	for s := uint64(2); s <= 2*perClient+1; s++ {
		if _, ok := seqValue[s]; !ok {
			t.Errorf("no reply with seq %d", s)
		}
	}
	// The published stream: seq 1..1001 in order, values as replied.
	states := h.states("17")
	if len(states) != 2*perClient+1 {
		t.Fatalf("%d states published, want %d", len(states), 2*perClient+1)
	}
	for i, st := range states {
		if st.Seq != uint64(i+1) {
			t.Fatalf("state %d has seq %d: published out of order", i, st.Seq)
		}
		if i > 0 && st.Value != seqValue[st.Seq] {
			t.Errorf("state seq %d value %d, reply said %d", st.Seq, st.Value, seqValue[st.Seq])
		}
	}
	final := h.retained("17")
	if d := cmp.Diff(states[len(states)-1], final); d != "" {
		t.Errorf("retained state is not the last published (-last +retained):\n%s", d)
	}
	if final.Seq != 2*perClient+1 {
		t.Errorf("final seq %d, want %d", final.Seq, 2*perClient+1)
	}
	if lv := h.fake.Level("GPIO17"); lv != final.Value {
		t.Errorf("line level %d, retained state says %d", lv, final.Value)
	}
}

func TestSetPayloadForms(t *testing.T) {
	h := start(t, relayCfg, nil)
	for i, c := range []struct {
		payload string
		want    int
	}{
		{"1", 1}, {"0", 0}, {"on", 1}, {"OFF", 0}, {" true\n", 1}, {"false", 0},
		{`{"value":1}`, 1}, {`{"value":false}`, 0}, {`{"value":"on"}`, 1}, {`"off"`, 0},
	} {
		st := h.mustSet("17", c.payload)
		if st.Value != c.want || st.Seq != uint64(i+2) || st.Source != contract.GPIOSourceSet || st.Requester != "test" {
			t.Errorf("set %q: state %+v, want value %d seq %d", c.payload, st, c.want, i+2)
		}
		if lv := h.fake.Level("GPIO17"); lv != c.want {
			t.Errorf("set %q: line level %d", c.payload, lv)
		}
	}
}

func TestRejectedSetsChangeNothing(t *testing.T) {
	fake := NewFake()
	h := start(t, `{"pins":[
		{"bcm":17,"mode":"output","initial":1},
		{"bcm":22,"mode":"input"},
		{"bcm":18,"mode":"pwm","modes":["pwm","output"],"initial":0,"pwm":{"max_frequency":500}}
	]}`, fake)
	for _, p := range []string{"17", "18", "22"} {
		h.waitState(p, "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	}
	for _, c := range []struct {
		topic, payload, want string
	}{
		{"gpio/99/set", "1", `unknown pin "99" (exposed: 17, 18, 22)`},
		{"gpio/22/set", "1", "pin 22 is an input: it cannot be set"},
		{"gpio/17/set", "2", `cannot read "2"`},
		{"gpio/17/set", "", "empty payload"},
		{"gpio/17/set", `{"value":1,"colour":"red"}`, "colour: unknown field"},
		{"gpio/17/set", `{"pwm":{"duty":0.5}}`, "pin 17 is in out mode: pwm needs mode pwm"},
		{"gpio/17/set", `{"mode":"pwm"}`, "pin 17 may not switch to pwm (allowed: out)"},
		{"gpio/18/set", `{"pwm":{"frequency":600}}`, "pwm frequency 600 Hz is outside 0.1..500 for pin 18"},
		{"gpio/18/set", `{"pwm":{"duty":1.5}}`, "pwm.duty 1.5 is outside 0..1"},
		{"gpio/18/set", `{"mode":"in"}`, "pin 18 may not switch to in (allowed: pwm, out)"},
	} {
		before, evBefore := len(h.bus.Messages()), len(h.events())
		resp := h.request(c.topic, c.payload, "picockpit/dev/reply/x"+c.topic+c.payload, "bob")
		if resp.Status != contract.StatusRejected || !strings.Contains(resp.Error, c.want) {
			t.Errorf("%s %q: reply %+v, want rejected with %q", c.topic, c.payload, resp, c.want)
		}
		for _, m := range h.bus.Messages()[before:] {
			if !m.Reply {
				t.Errorf("%s %q: published %s %s", c.topic, c.payload, m.Topic, m.Payload)
			}
		}
		// The reply and the event are two publishes: wait for the event
		// itself, not for its neighbour.
		last, ok := h.nextEvent(evBefore)
		if !ok {
			t.Fatalf("%s %q: no rejected event", c.topic, c.payload)
		}
		if last.Kind != contract.EventRejected || last.Module != Name || last.Topic != c.topic ||
			last.Requester != "bob" || !strings.Contains(last.Message, c.want) {
			t.Errorf("%s %q: event %+v", c.topic, c.payload, last)
		}
	}
	if lv := fake.Level("GPIO17"); lv != 1 {
		t.Errorf("GPIO17 level %d after rejected sets, want 1", lv)
	}
	for _, p := range []string{"17", "18", "22"} {
		if st := h.retained(p); st.Seq != 1 {
			t.Errorf("pin %s seq %d after rejected sets, want 1", p, st.Seq)
		}
	}
	// Without a response topic the error still goes to events.
	before := len(h.events())
	if !h.bus.Inject(&modules.Request{Topic: "gpio/22/set", Payload: []byte("on")}) {
		t.Fatal("inject gpio/22/set: no subscription or queue full")
	}
	if ev, ok := h.nextEvent(before); !ok || ev.Kind != contract.EventRejected || ev.Topic != "gpio/22/set" {
		t.Fatalf("rejected set without response topic: event %+v (found %v)", ev, ok)
	}
}

// TestInputEdgeDebounced: a bouncing contact gives one state message once
// the line was quiet for the debounce time.
func TestInputEdgeDebounced(t *testing.T) {
	h := start(t, `{"pins":[{"bcm":22,"mode":"input","pull":"up","debounce":"50ms"}]}`, nil)
	h.waitState("22", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 && s.Value == 0 })

	h.fake.Drive("GPIO22", 1, 0, 1, 0, 1) // five edges within microseconds
	h.clock.waitUntil(t, "a debounce timer per edge", func(_, created int) bool { return created == 5 })
	h.clock.waitUntil(t, "only the last timer armed", func(pending, _ int) bool { return pending == 1 })
	h.clock.Advance(49 * time.Millisecond)
	h.barrier("22")
	if n := len(h.states("22")); n != 1 {
		t.Fatalf("%d states before the debounce time passed, want 1 (init)", n)
	}
	h.clock.Advance(time.Millisecond)
	st := h.waitState("22", "the debounced edge", func(s contract.GPIOState) bool { return s.Seq == 2 })
	if st.Value != 1 || st.Source != contract.GPIOSourceEdge {
		t.Errorf("debounced state %+v, want value 1 from edge", st)
	}
	h.clock.waitUntil(t, "no timer armed", func(pending, _ int) bool { return pending == 0 })
	h.barrier("22")
	if n := len(h.states("22")); n != 2 {
		t.Errorf("%d states, want exactly 2 (init, one debounced edge): %+v", n, h.states("22"))
	}

	// A bounce that ends where it started publishes nothing.
	h.fake.Drive("GPIO22", 0, 1)
	h.clock.waitUntil(t, "timers of the glitch", func(_, created int) bool { return created == 7 })
	h.clock.waitUntil(t, "one timer armed", func(pending, _ int) bool { return pending == 1 })
	h.clock.Advance(time.Second)
	h.clock.waitUntil(t, "the glitch timer fired", func(pending, _ int) bool { return pending == 0 })
	h.barrier("22")
	h.barrier("22")
	if n := len(h.states("22")); n != 2 {
		t.Errorf("a glitch back to the same level published: %+v", h.states("22"))
	}
}

func TestInputEdgeWithoutDebounce(t *testing.T) {
	h := start(t, `{"pins":[{"bcm":5,"mode":"input","active_low":true}]}`, nil)
	h.waitState("5", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 && s.Value == 1 })
	h.fake.Drive("GPIO5", 1) // physical high = inactive
	st := h.waitState("5", "edge", func(s contract.GPIOState) bool { return s.Seq == 2 })
	if st.Value != 0 || st.Source != contract.GPIOSourceEdge {
		t.Errorf("state %+v, want value 0 from edge", st)
	}
	h.fake.Drive("GPIO5", 0)
	st = h.waitState("5", "edge", func(s contract.GPIOState) bool { return s.Seq == 3 })
	if st.Value != 1 {
		t.Errorf("state %+v, want value 1", st)
	}
}

// TestFailsafe: the link is down longer than after: the failsafe value is
// applied with a new seq; when the link is back the value before returns.
func TestFailsafe(t *testing.T) {
	h := start(t, `{"pins":[
		{"bcm":17,"mode":"output","initial":1,"failsafe":{"value":0,"after":"30s"}},
		{"bcm":27,"mode":"output","initial":0,"failsafe":{"value":1,"after":"1m"}},
		{"bcm":18,"mode":"pwm","pwm":{"frequency":50,"duty":0.5},"failsafe":{"value":0,"after":"30s"}},
		{"bcm":23,"mode":"output","initial":1}
	]}`, nil)
	for _, p := range []string{"17", "18", "23", "27"} {
		h.waitState(p, "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	}
	h.bus.SetConnected(false)
	h.clock.waitUntil(t, "three failsafe timers", func(pending, _ int) bool { return pending == 3 })
	h.clock.Advance(29 * time.Second)
	h.barrier("17")
	if st := h.retained("17"); st.Seq != 1 || st.Failsafe {
		t.Fatalf("failsafe applied before after: %+v", st)
	}
	h.clock.Advance(time.Second)
	for _, p := range []string{"17", "18"} {
		st := h.waitState(p, "failsafe", func(s contract.GPIOState) bool { return s.Source == contract.GPIOSourceFailsafe })
		if st.Seq != 2 || !st.Failsafe || st.Value != 0 || st.Mode != contract.GPIOModeOut {
			t.Errorf("pin %s failsafe state %+v", p, st)
		}
	}
	if lv := h.fake.Level("GPIO17"); lv != 0 {
		t.Errorf("GPIO17 level %d in failsafe, want 0", lv)
	}
	if lv := h.fake.Level("GPIO18"); lv != 0 {
		t.Errorf("GPIO18 level %d in failsafe, want 0", lv)
	}
	h.barrier("27")
	if st := h.retained("27"); st.Seq != 1 {
		t.Errorf("pin 27 (after 1m) changed at 30s: %+v", st)
	}
	if st := h.retained("23"); st.Seq != 1 {
		t.Errorf("pin 23 without failsafe changed: %+v", st)
	}

	h.bus.SetConnected(true)
	st := h.waitState("17", "restore", func(s contract.GPIOState) bool { return s.Source == contract.GPIOSourceRestore })
	if st.Seq != 3 || st.Failsafe || st.Value != 1 || st.Mode != contract.GPIOModeOut {
		t.Errorf("restored state %+v", st)
	}
	st = h.waitState("18", "restore", func(s contract.GPIOState) bool { return s.Source == contract.GPIOSourceRestore })
	if st.Seq != 3 || st.Failsafe || st.Value != 1 || st.Mode != contract.GPIOModePWM ||
		st.PWM == nil || *st.PWM != (contract.GPIOPWM{Frequency: 50, Duty: 0.5}) {
		t.Errorf("restored pwm state %+v", st)
	}
	if lv := h.fake.Level("GPIO17"); lv != 1 {
		t.Errorf("GPIO17 level %d after restore, want 1", lv)
	}
	h.clock.waitUntil(t, "timers stopped", func(pending, _ int) bool { return pending == 0 })
	h.clock.Advance(time.Hour)
	h.barrier("27")
	if st := h.retained("27"); st.Seq != 1 {
		t.Errorf("pin 27 failsafe fired after the link was back: %+v", st)
	}
}

// TestFailsafeShortOutage: a link back before after applies nothing.
func TestFailsafeShortOutage(t *testing.T) {
	h := start(t, `{"pins":[{"bcm":17,"mode":"output","initial":1,"failsafe":{"value":0,"after":"30s"}}]}`, nil)
	h.waitState("17", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	h.bus.SetConnected(false)
	h.clock.waitUntil(t, "failsafe timer", func(pending, _ int) bool { return pending == 1 })
	h.clock.Advance(10 * time.Second)
	h.bus.SetConnected(true)
	h.clock.waitUntil(t, "timer stopped", func(pending, _ int) bool { return pending == 0 })
	h.clock.Advance(time.Minute)
	h.barrier("17")
	if n := len(h.states("17")); n != 1 {
		t.Errorf("short outage published states: %+v", h.states("17"))
	}
}

// TestSetDuringFailsafe: a set while failsafe is applied ends it; the set
// value stays when the link comes back.
func TestSetDuringFailsafe(t *testing.T) {
	h := start(t, `{"pins":[{"bcm":17,"mode":"output","initial":1,"failsafe":{"value":0,"after":"5s"}}]}`, nil)
	h.waitState("17", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	h.bus.SetConnected(false)
	h.clock.waitUntil(t, "failsafe timer", func(pending, _ int) bool { return pending == 1 })
	h.clock.Advance(5 * time.Second)
	h.waitState("17", "failsafe", func(s contract.GPIOState) bool { return s.Failsafe })
	st := h.mustSet("17", "off")
	if st.Failsafe || st.Value != 0 || st.Seq != 3 {
		t.Errorf("set during failsafe: %+v", st)
	}
	h.bus.SetConnected(true)
	h.barrier("17")
	h.barrier("17")
	if got := h.retained("17"); got.Seq != 3 || got.Value != 0 {
		t.Errorf("after the link came back: %+v, want the set value kept", got)
	}
}

// TestBusyLine: a line held by another program is reported with its
// holder; the other pins work; Close releases only our lines.
func TestBusyLine(t *testing.T) {
	fake := NewFake()
	fake.Hold("GPIO23", "pigpiod")
	h := start(t, `{"pins":[{"bcm":17,"mode":"output","initial":0},{"bcm":23,"mode":"output"}]}`, fake)
	want := `line GPIO23 (fakechip0 offset 23) is busy: held by "pigpiod"`
	st := h.waitState("23", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	if !strings.Contains(st.Error, want) {
		t.Errorf("state error %q, want %q", st.Error, want)
	}
	found := h.bus.WaitEvents(waitLong, func(evs []contract.Event) bool {
		for _, ev := range evs {
			if ev.Kind == contract.EventError && strings.Contains(ev.Message, want) {
				return true
			}
		}
		return false
	})
	if !found {
		t.Errorf("no error event naming the holder: %+v", h.events())
	}
	msg, _ := h.bus.Retained(contract.TopicGPIOPins)
	var cat contract.GPIOPins
	if err := json.Unmarshal(msg.Payload, &cat); err != nil {
		t.Fatal(err)
	}
	if len(cat.Pins) != 2 || cat.Pins[1].Pin != "23" || !strings.Contains(cat.Pins[1].Error, want) || cat.Pins[0].Error != "" {
		t.Errorf("catalogue %+v", cat.Pins)
	}
	if r := h.set("23", "1"); r.Status != contract.StatusRejected || !strings.Contains(r.Error, "pigpiod") {
		t.Errorf("set on busy pin: %+v", r)
	}
	if st := h.mustSet("17", "1"); st.Value != 1 || fake.Level("GPIO17") != 1 {
		t.Errorf("other pin does not work: %+v", st)
	}
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, held := fake.Holder("GPIO17"); held {
		t.Error("GPIO17 still held after Close")
	}
	if c, held := fake.Holder("GPIO23"); !held || c != "pigpiod" {
		t.Errorf("GPIO23 holder %q %v after Close, want pigpiod's", c, held)
	}
}

func TestBusyErrorIsEBUSY(t *testing.T) {
	f := NewFake()
	f.Hold("GPIO4", "")
	_, err := f.Request(LineSpec{Name: "GPIO4", BCM: 4})
	if !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("err %v is not EBUSY", err)
	}
	if !strings.Contains(err.Error(), "held by an unnamed consumer") {
		t.Errorf("err %q", err)
	}
}

// TestReleaseAndReload: a second module instance (a reload) gets the lines
// after the first is closed and keeps the output levels.
func TestReleaseAndReload(t *testing.T) {
	fake := NewFake()
	cfg := `{"pins":[{"bcm":17,"mode":"output"},{"bcm":22,"mode":"input"},{"bcm":18,"mode":"pwm","pwm":{"duty":0.5}}]}`
	h1 := start(t, cfg, fake)
	h1.mustSet("17", "1")
	if err := h1.m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"GPIO17", "GPIO18", "GPIO22"} {
		if _, held := fake.Holder(l); held {
			t.Errorf("%s held after close", l)
		}
	}
	h2 := start(t, cfg, fake)
	st := h2.waitState("17", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	if st.Value != 1 {
		t.Errorf("reload flipped the output without initial: %+v", st)
	}
}

// TestModeChange: a pin allowed in, out and pwm switches between them.
func TestModeChange(t *testing.T) {
	h := start(t, `{"pins":[{"bcm":12,"mode":"output","modes":["output","pwm","input"],"initial":0,"pwm":{"frequency":100}}]}`, nil)
	st := h.mustSet("12", `{"mode":"pwm","pwm":{"duty":0.3}}`)
	if st.Mode != "pwm" || st.Value != 1 || st.PWM == nil || st.PWM.Duty != 0.3 || st.PWM.Frequency != 100 {
		t.Errorf("to pwm: %+v", st)
	}
	st = h.mustSet("12", `{"pwm":{"frequency":50}}`)
	if st.PWM == nil || *st.PWM != (contract.GPIOPWM{Frequency: 50, Duty: 0.3}) {
		t.Errorf("frequency change: %+v", st)
	}
	st = h.mustSet("12", "0")
	if st.Mode != "pwm" || st.Value != 0 || h.fake.Level("GPIO12") != 0 {
		t.Errorf("pwm stop: %+v level %d", st, h.fake.Level("GPIO12"))
	}
	st = h.mustSet("12", `{"mode":"output","value":1}`)
	if st.Mode != "out" || st.Value != 1 || st.PWM != nil || h.fake.Level("GPIO12") != 1 {
		t.Errorf("to out: %+v", st)
	}
	st = h.mustSet("12", `{"mode":"in"}`)
	if st.Mode != "in" {
		t.Errorf("to in: %+v", st)
	}
	h.fake.Drive("GPIO12", 0)
	h.waitState("12", "edge", func(s contract.GPIOState) bool { return s.Source == contract.GPIOSourceEdge && s.Value == 0 })
	if r := h.set("12", "1"); r.Status != contract.StatusRejected {
		t.Errorf("set on input: %+v", r)
	}
	st = h.mustSet("12", `{"mode":"pwm"}`)
	if st.PWM == nil || *st.PWM != (contract.GPIOPWM{Frequency: 50, Duty: 0.3}) || st.Value != 1 {
		t.Errorf("back to pwm keeps the last settings: %+v", st)
	}
}

func TestNoPinsNoModule(t *testing.T) {
	m, probs := Kind().Load(modules.Env{}, nil, "", nil)
	if m != nil || len(probs) != 0 {
		t.Errorf("no config: module %v problems %v", m, probs)
	}
}
