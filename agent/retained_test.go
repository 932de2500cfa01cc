package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// fakeBroker records what the retained cache sends and answers with the
// reason code set for a topic.
type fakeBroker struct {
	mu      sync.Mutex
	sent    []string // topic=payload
	refuse  map[string]byte
	sentCh  chan struct{}
	blocked chan struct{} // when non-nil, send waits for it
	entered chan string   // when non-nil, told the payload of each send as it starts
}

func newFakeBroker() *fakeBroker {
	return &fakeBroker{refuse: map[string]byte{}, sentCh: make(chan struct{}, 1000)}
}

func (f *fakeBroker) send(ctx context.Context, p *paho.Publish) (*paho.PublishResponse, error) {
	f.mu.Lock()
	blocked, entered := f.blocked, f.entered
	f.mu.Unlock()
	if entered != nil {
		entered <- string(p.Payload)
	}
	if blocked != nil {
		select {
		case <-blocked:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer func() { f.sentCh <- struct{}{} }()
	defer f.mu.Unlock()
	f.sent = append(f.sent, p.Topic+"="+string(p.Payload))
	if rc, ok := f.refuse[p.Topic]; ok {
		return &paho.PublishResponse{ReasonCode: rc}, errors.New("refused")
	}
	return &paho.PublishResponse{}, nil
}

func (f *fakeBroker) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

// waitSent waits until n publishes were made in total.
func (f *fakeBroker) waitSent(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for len(f.log()) < n {
		select {
		case <-f.sentCh:
		case <-deadline:
			t.Fatalf("want %d publishes, got %v", n, f.log())
		}
	}
	return f.log()
}

func newTestCache(f *fakeBroker) (*retainedCache, *[]contract.Event, *sync.Mutex) {
	c := newRetainedCache(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.send = f.send
	var evs []contract.Event
	var mu sync.Mutex
	c.report = func(ev contract.Event) { mu.Lock(); evs = append(evs, ev); mu.Unlock() }
	return c, &evs, &mu
}

func retainedPub(topic, payload string) *paho.Publish {
	return &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload), Properties: &paho.PublishProperties{}}
}

func TestRetainedCacheRepublishesOnReconnect(t *testing.T) {
	f := newFakeBroker()
	c, _, _ := newTestCache(f)
	defer c.stop()
	// Set while offline: nothing is sent until connected.
	c.set("gpio", retainedPub("a", "1"), false)
	c.set("", retainedPub("b", "x"), false)
	c.connected(1)
	got := f.waitSent(t, 2)
	if len(got) != 2 {
		t.Fatalf("sent %v", got)
	}
	// A new connection sends every topic again, latest value only.
	c.disconnected()
	c.set("gpio", retainedPub("a", "2"), false)
	c.set("gpio", retainedPub("a", "3"), false)
	c.connected(2)
	got = f.waitSent(t, 4)
	seen := map[string]bool{}
	for _, s := range got[2:] {
		seen[s] = true
	}
	if !seen["a=3"] || !seen["b=x"] || seen["a=2"] {
		t.Errorf("after reconnect sent %v, want a=3 and b=x only", got[2:])
	}
}

func TestRetainedCacheSkipsOvertakenValues(t *testing.T) {
	f := newFakeBroker()
	f.blocked = make(chan struct{})
	f.entered = make(chan string, 10)
	c, _, _ := newTestCache(f)
	defer c.stop()
	c.connected(1)
	c.set("m", retainedPub("t", "1"), false)
	if v := <-f.entered; v != "1" { // in flight, blocked
		t.Fatalf("first send carries %q", v)
	}
	for _, v := range []string{"2", "3", "4"} {
		c.set("m", retainedPub("t", v), false)
	}
	f.mu.Lock()
	close(f.blocked)
	f.blocked = nil
	f.mu.Unlock()
	got := f.waitSent(t, 2)
	time.Sleep(50 * time.Millisecond) // nothing more may follow; checked below
	got = f.log()
	if len(got) != 2 || got[1] != "t=4" {
		t.Errorf("sent %v, want t=1 then t=4 only", got)
	}
}

func TestRetainedCacheRefusalLoggedOnceAndBacksOff(t *testing.T) {
	f := newFakeBroker()
	f.refuse["denied"] = 0x87
	c, evs, mu := newTestCache(f)
	c.retryMin = time.Hour // a retry would need a new value or a reconnect
	defer c.stop()
	c.connected(1)
	c.set("m", retainedPub("denied", "1"), false)
	c.set("m", retainedPub("ok", "1"), false)
	f.waitSent(t, 2)
	waitEvents(t, evs, mu, 1)
	// The refused value is not tried again on its own.
	time.Sleep(100 * time.Millisecond)
	if got := f.log(); len(got) != 2 {
		t.Errorf("refused value retried without a new value or reconnect: %v", got)
	}
	// A new value is tried again, but only after the backoff.
	c.set("m", retainedPub("denied", "2"), false)
	time.Sleep(100 * time.Millisecond)
	if got := f.log(); len(got) != 2 {
		t.Errorf("new value sent during the backoff: %v", got)
	}
	c.mu.Lock()
	c.topics["denied"].nextTry = time.Time{} // backoff over
	c.mu.Unlock()
	c.disconnected()
	c.connected(2)
	got := f.waitSent(t, 4)
	if !contains(got[2:], "denied=2") {
		t.Errorf("after the backoff and a reconnect sent %v, want denied=2", got[2:])
	}
	waitEvents(t, evs, mu, 1) // logged and reported once until a success
}

// waitEvents waits until exactly n events were reported (and fails on more).
func waitEvents(t *testing.T, evs *[]contract.Event, mu *sync.Mutex, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := len(*evs)
		mu.Unlock()
		if got > n {
			t.Fatalf("%d events, want %d: %v", got, n, *evs)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after 5s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRetainedCacheOversizedNotSent(t *testing.T) {
	f := newFakeBroker()
	c, evs, mu := newTestCache(f)
	c.limit = func() int { return 100 }
	defer c.stop()
	c.connected(1)
	c.set("m", retainedPub("big", string(make([]byte, 200))), false)
	c.set("m", retainedPub("small", "1"), false)
	got := f.waitSent(t, 1)
	time.Sleep(50 * time.Millisecond)
	if got = f.log(); len(got) != 1 || got[0] != "small=1" {
		t.Errorf("sent %v, want small=1 only", got)
	}
	waitEvents(t, evs, mu, 1)
}

func TestRetainedCacheClearStale(t *testing.T) {
	f := newFakeBroker()
	c, _, _ := newTestCache(f)
	defer c.stop()
	c.set("gpio", retainedPub("pin/17", "1"), false)
	c.set("picontrol", retainedPub("result/x", "r"), true) // sticky
	c.set("", retainedPub("info", "i"), false)             // the agent's own
	since := time.Now()
	time.Sleep(time.Millisecond)
	c.set("gpio", retainedPub("pin/18", "1"), false) // published again after the reload
	cleared := c.clearStale(since)
	if len(cleared) != 1 || cleared[0] != "pin/17" {
		t.Fatalf("cleared %v, want [pin/17]", cleared)
	}
	c.connected(1)
	f.waitSent(t, 4)
	// Once the deletion went out, the topic is forgotten: a reconnect does
	// not send it again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := c.value("pin/17"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cleared topic still cached after its deletion was sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !contains(f.log(), "pin/17=") {
		t.Errorf("no deletion sent: %v", f.log())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
