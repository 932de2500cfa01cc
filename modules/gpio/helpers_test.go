package gpio

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

// waitLong bounds every wait for the module; it is a deadlock guard, not a
// timing goal.
const waitLong = 20 * time.Second

// fakeClock is a manual clock for debounce and failsafe timers.
type fakeClock struct {
	mu      sync.Mutex
	cond    *sync.Cond
	now     time.Time
	timers  []*fakeTimer
	created int
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

func newFakeClock() *fakeClock {
	c := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	c.created++
	c.cond.Broadcast()
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	t.c.cond.Broadcast()
	return was
}

// Advance moves the clock and runs the timers that are due, each on its own
// goroutine as time.AfterFunc does.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.stopped && !t.fired && !t.at.After(c.now) {
			t.fired = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		go t.f()
	}
}

// pending returns how many timers are armed.
func (c *fakeClock) pendingLocked() int {
	n := 0
	for _, t := range c.timers {
		if !t.stopped && !t.fired {
			n++
		}
	}
	return n
}

// waitUntil waits until cond (called under the clock lock with the number
// of armed timers and of timers created so far) holds.
func (c *fakeClock) waitUntil(t *testing.T, what string, cond func(pending, created int) bool) {
	t.Helper()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(waitLong):
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
		}
	}()
	deadline := time.Now().Add(waitLong)
	c.mu.Lock()
	defer c.mu.Unlock()
	for !cond(c.pendingLocked(), c.created) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (pending %d, created %d)", what, c.pendingLocked(), c.created)
		}
		c.cond.Wait()
	}
}

// harness is a started module on an in-memory bus.
type harness struct {
	t     *testing.T
	m     *module
	bus   *bustest.Bus
	fake  *Fake
	clock *fakeClock
	n     int // requests sent
}

// start loads the main config section cfg with backend b and starts it.
func start(t *testing.T, cfg string, b Backend) *harness {
	t.Helper()
	if b == nil {
		b = NewFake()
	}
	mod, probs := KindWith(b).Load(modules.Env{HostRoot: t.TempDir()}, []byte(cfg), "/etc/picockpit-client/config.json", nil)
	if len(probs) > 0 {
		t.Fatalf("load: %v", probs)
	}
	if mod == nil {
		t.Fatal("load returned no module")
	}
	m := mod.(*module)
	h := &harness{t: t, m: m, bus: bustest.New(), clock: newFakeClock()}
	h.fake, _ = b.(*Fake)
	m.clock = h.clock
	t.Cleanup(h.bus.Close)
	if err := m.Start(context.Background(), h.bus); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h
}

// states returns the state messages published for pin, in order.
func (h *harness) states(pin string) []contract.GPIOState {
	h.t.Helper()
	var out []contract.GPIOState
	for _, msg := range h.bus.Messages() {
		if msg.Topic != contract.TopicGPIOState(pin) {
			continue
		}
		var st contract.GPIOState
		if err := json.Unmarshal(msg.Payload, &st); err != nil {
			h.t.Fatalf("state %s: %v", msg.Payload, err)
		}
		out = append(out, st)
	}
	return out
}

// retained returns the retained state of pin.
func (h *harness) retained(pin string) contract.GPIOState {
	h.t.Helper()
	msg, ok := h.bus.Retained(contract.TopicGPIOState(pin))
	if !ok {
		h.t.Fatalf("no retained state for pin %s", pin)
	}
	if !msg.Opts.Retain || msg.Opts.QoS != 1 {
		h.t.Fatalf("state of pin %s published with %+v, want retained QoS 1", pin, msg.Opts)
	}
	var st contract.GPIOState
	if err := json.Unmarshal(msg.Payload, &st); err != nil {
		h.t.Fatalf("state %s: %v", msg.Payload, err)
	}
	return st
}

// waitState waits until a state of pin satisfies cond and returns it.
func (h *harness) waitState(pin string, what string, cond func(contract.GPIOState) bool) contract.GPIOState {
	h.t.Helper()
	var got contract.GPIOState
	ok := h.bus.WaitFor(waitLong, func(msgs []bustest.Message) bool {
		for _, m := range msgs {
			if m.Topic != contract.TopicGPIOState(pin) {
				continue
			}
			var st contract.GPIOState
			if json.Unmarshal(m.Payload, &st) == nil && cond(st) {
				got = st
				return true
			}
		}
		return false
	})
	if !ok {
		h.t.Fatalf("pin %s: timed out waiting for a state with %s; states: %+v", pin, what, h.states(pin))
	}
	return got
}

// set sends payload to pin's set topic and waits for the reply.
func (h *harness) set(pin, payload string) contract.GPIOSetResponse {
	h.t.Helper()
	h.n++
	return h.request(contract.TopicGPIOSet(pin), payload, fmt.Sprintf("picockpit/dev/reply/t%d", h.n), "test")
}

func (h *harness) request(topic, payload, respTopic, requester string) contract.GPIOSetResponse {
	h.t.Helper()
	corr := []byte(respTopic)
	req := &modules.Request{Topic: topic, Payload: []byte(payload), ResponseTopic: respTopic,
		CorrelationData: corr, Requester: requester}
	deadline := time.Now().Add(waitLong)
	for !h.bus.Inject(req) {
		if time.Now().After(deadline) {
			h.t.Fatalf("inject %s: no subscription or queue full", topic)
		}
		time.Sleep(time.Millisecond)
	}
	var resp contract.GPIOSetResponse
	ok := h.bus.WaitFor(waitLong, func(msgs []bustest.Message) bool {
		for _, m := range msgs {
			if m.Reply && m.Topic == respTopic {
				if string(m.Correlation) != string(corr) {
					h.t.Errorf("reply correlation %q, want %q", m.Correlation, corr)
				}
				if err := json.Unmarshal(m.Payload, &resp); err != nil {
					h.t.Errorf("reply %s: %v", m.Payload, err)
				}
				return true
			}
		}
		return false
	})
	if !ok {
		h.t.Fatalf("no reply on %s", respTopic)
	}
	return resp
}

// mustSet sends a set that must be accepted.
func (h *harness) mustSet(pin, payload string) contract.GPIOState {
	h.t.Helper()
	r := h.set(pin, payload)
	if r.Status != contract.StatusOK || r.State == nil {
		h.t.Fatalf("set %s %s: %+v", pin, payload, r)
	}
	return *r.State
}

// barrier makes sure the pin's goroutine handled everything sent before:
// a rejected set is answered by the pin goroutine only after earlier work.
func (h *harness) barrier(pin string) {
	h.t.Helper()
	_ = h.set(pin, `{"mode":"in","value":1}`)
}

func (h *harness) events() []contract.Event { return h.bus.Events() }

// nextEvent waits for the event after the first n and returns it.
func (h *harness) nextEvent(n int) (contract.Event, bool) {
	h.t.Helper()
	var ev contract.Event
	ok := h.bus.WaitEvents(waitLong, func(evs []contract.Event) bool {
		if len(evs) > n {
			ev = evs[n]
			return true
		}
		return false
	})
	return ev, ok
}
