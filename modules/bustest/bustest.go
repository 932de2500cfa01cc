// Package bustest is an in-memory modules.Bus for unit tests of modules. It
// records every publish, reply and event, and delivers injected requests to
// the matching subscription's handler on a worker goroutine per subscription,
// as the real agent does.
package bustest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// Message is one recorded publish or reply.
type Message struct {
	Topic   string // relative topic; for replies the full response topic
	Payload []byte
	Opts    modules.PublishOptions
	// Correlation is set on replies.
	Correlation []byte
	Reply       bool
}

// Bus is an in-memory modules.Bus. The zero value is not usable; use New.
type Bus struct {
	mu       sync.Mutex
	cond     *sync.Cond
	msgs     []Message
	retained map[string]Message
	events   []contract.Event
	subs     []*sub
	closed   bool
	wg       sync.WaitGroup
	connUp   bool
	connCh   chan struct{}
	// Offline makes non-retained publishes fail, as the real bus does while
	// the broker is unreachable.
	Offline bool
}

type sub struct {
	filter string
	h      modules.Handler
	q      chan *modules.Request
}

// New returns an empty bus; call Close at the end of the test.
func New() *Bus {
	b := &Bus{retained: map[string]Message{}, connUp: true, connCh: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Publish implements modules.Bus.
func (b *Bus) Publish(_ context.Context, topic string, payload []byte, opts modules.PublishOptions) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Offline && !opts.Retain {
		return fmt.Errorf("publish %s: not connected", topic)
	}
	m := Message{Topic: topic, Payload: append([]byte(nil), payload...), Opts: opts}
	b.msgs = append(b.msgs, m)
	if opts.Retain {
		b.retained[topic] = m
	}
	b.cond.Broadcast()
	return nil
}

// Subscribe implements modules.Bus.
func (b *Bus) Subscribe(filter string, queueLen int, h modules.Handler) error {
	if queueLen <= 0 {
		queueLen = 64
	}
	s := &sub{filter: filter, h: h, q: make(chan *modules.Request, queueLen)}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for r := range s.q {
			s.h(context.Background(), r)
		}
	}()
	return nil
}

// Reply implements modules.Bus.
func (b *Bus) Reply(_ context.Context, req *modules.Request, payload []byte) error {
	if req.ResponseTopic == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, Message{Topic: req.ResponseTopic, Payload: append([]byte(nil), payload...),
		Correlation: req.CorrelationData, Reply: true, Opts: modules.PublishOptions{QoS: 1}})
	b.cond.Broadcast()
	return nil
}

// Event implements modules.Bus.
func (b *Bus) Event(ev contract.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, ev)
	b.cond.Broadcast()
}

// Inject delivers a request to the first subscription whose filter matches
// its topic. It reports false when none matches or the queue is full (the
// real agent answers "busy" then).
func (b *Bus) Inject(req *modules.Request) bool {
	if req.Received.IsZero() {
		req.Received = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		if modules.MatchTopic(s.filter, req.Topic) {
			select {
			case s.q <- req:
				return true
			default:
				return false
			}
		}
	}
	return false
}

// Close stops the subscription workers after they drained their queues.
func (b *Bus) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	for _, s := range b.subs {
		close(s.q)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Messages returns a copy of everything published or replied so far.
func (b *Bus) Messages() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.msgs...)
}

// Retained returns the last retained message on topic.
func (b *Bus) Retained(topic string) (Message, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.retained[topic]
	return m, ok
}

// Events returns a copy of the events so far.
func (b *Bus) Events() []contract.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]contract.Event(nil), b.events...)
}

// WaitFor waits until cond, called with the messages so far under the bus
// lock, returns true, or the timeout passes (then it returns false).
func (b *Bus) WaitFor(timeout time.Duration, cond func(msgs []Message) bool) bool {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() { b.mu.Lock(); b.cond.Broadcast(); b.mu.Unlock() })
	defer t.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for !cond(b.msgs) {
		if !time.Now().Before(deadline) {
			return false
		}
		b.cond.Wait()
	}
	return true
}

// WaitEvents waits until cond, called with the events so far under the bus
// lock, returns true, or the timeout passes (then it returns false).
func (b *Bus) WaitEvents(timeout time.Duration, cond func(evs []contract.Event) bool) bool {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() { b.mu.Lock(); b.cond.Broadcast(); b.mu.Unlock() })
	defer t.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for !cond(b.events) {
		if !time.Now().Before(deadline) {
			return false
		}
		b.cond.Wait()
	}
	return true
}

// Connection implements modules.Bus. A new Bus is connected.
func (b *Bus) Connection() (bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connUp, b.connCh
}

// SetConnected changes the connection state reported by Connection and wakes
// everyone waiting on the change channel.
func (b *Bus) SetConnected(up bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.connUp == up {
		return
	}
	b.connUp = up
	close(b.connCh)
	b.connCh = make(chan struct{})
}
