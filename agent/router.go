package agent

import (
	"context"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// router is where a request goes: the one receive callback checks every
// message (sizes, response topic, retain flag, deadline, redelivery) before
// anything is queued, and hands it to the bounded queue of the module
// subscription that matches its topic. Whatever it refuses it answers
// itself through the outbox (cheap: no waiting in the receive path).
type router struct {
	root contract.Root
	// answer replies status/msg to req (never blocks).
	answer func(req *modules.Request, status, msg string)
	// event records an audit event (never blocks).
	event func(contract.Event)
	// external takes a message outside the device root (the claimed
	// discovery tree); it never blocks.
	external func(topic string, payload []byte)

	seen seenRing

	mu       sync.Mutex
	subs     []*subscription
	bytes    int // queued request bytes, all subscriptions
	maxBytes int
}

const (
	// defaultQueueLen is a subscription's request queue when the module asks 0.
	defaultQueueLen = 64
	// routerMaxBytes bounds the bytes of all queued requests together.
	routerMaxBytes = 4 << 20
	// UserPropertyNotAfter is the request user property with an absolute
	// deadline (RFC 3339): a request still waiting then is not run.
	UserPropertyNotAfter = "not_after"
)

type subscription struct {
	owner  string
	filter string // relative
	h      modules.Handler
	max    int

	mu     sync.Mutex
	q      []*modules.Request
	closed bool
	wake   chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newRouter(root contract.Root) *router {
	return &router{root: root, maxBytes: routerMaxBytes, seen: newSeenRing(1024),
		answer: func(*modules.Request, string, string) {}, event: func(contract.Event) {}}
}

// requestCost is what a queued request counts against the byte budget.
func requestCost(r *modules.Request) int {
	return len(r.Payload) + len(r.Topic) + len(r.CorrelationData) + len(r.ResponseTopic) + len(r.Requester) + itemOverhead
}

// onPublish is the one receive callback (paho's OnPublishReceived). It
// never blocks.
func (r *router) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	rel, ok := r.root.Rel(p.Topic)
	if !ok {
		// Outside the device root: the discovery tree, if one is claimed.
		if r.external != nil {
			r.external(p.Topic, p.Payload)
		}
		return true, nil
	}
	// A QoS 1 message the broker sends again (DUP) after a lost PUBACK was
	// handled already: acknowledge it, run nothing, answer nothing (the
	// first answer is on its way through the outbox).
	if p.QoS > 0 {
		h := publishHash(p)
		if p.Duplicate() && r.seen.contains(p.PacketID, h) {
			return true, nil
		}
		r.seen.add(p.PacketID, h)
	}
	now := time.Now()
	req := &modules.Request{Topic: rel, Payload: p.Payload, Received: now}
	var notAfter string
	if pp := p.Properties; pp != nil {
		req.Requester = clip(pp.User.Get(contract.UserPropertyRequester), logStringLimit)
		req.UserProperties = userProperties(pp.User)
		notAfter = pp.User.Get(UserPropertyNotAfter)
		if pp.MessageExpiry != nil {
			req.Expires = now.Add(time.Duration(*pp.MessageExpiry) * time.Second)
		}
		if rt := pp.ResponseTopic; rt != "" {
			switch {
			case len(rt) > MaxResponseTopic:
				r.reject(req, fmt.Sprintf("response topic of %d bytes refused: the limit is %d", len(rt), MaxResponseTopic))
				return true, nil
			case !r.root.IsReplyTopic(rt):
				r.reject(req, fmt.Sprintf("response topic %q refused: it must start with %s", clip(rt, logStringLimit), r.root.Topic(contract.ReplyPrefix)))
				return true, nil
			}
			req.ResponseTopic = rt
		}
		if cd := pp.CorrelationData; len(cd) > MaxCorrelationData {
			// Echoing it would let anyone make the agent publish its size
			// again with every reply: answer without it.
			r.reject(req, fmt.Sprintf("correlation data of %d bytes refused: the limit is %d", len(cd), MaxCorrelationData))
			return true, nil
		}
		req.CorrelationData = pp.CorrelationData
	}
	if p.Retain && len(p.Payload) == 0 {
		return true, nil // someone clearing a retained request: nothing to run
	}
	switch {
	case len(p.Topic) > MaxRequestTopic:
		req.Topic = clip(rel, logStringLimit)
		r.reject(req, fmt.Sprintf("request topic of %d bytes refused: the limit is %d", len(p.Topic), MaxRequestTopic))
		return true, nil
	case len(p.Payload) > MaxRequestPayload:
		r.reject(req, fmt.Sprintf("payload of %d bytes refused: the limit is %d", len(p.Payload), MaxRequestPayload))
		return true, nil
	case p.Retain:
		r.reject(req, "retained request refused: requests must not be retained (clear it by publishing an empty retained message)")
		return true, nil
	}
	if notAfter != "" {
		t, err := time.Parse(time.RFC3339Nano, notAfter)
		if err != nil {
			r.reject(req, fmt.Sprintf("user property %s %q is not an RFC 3339 time", UserPropertyNotAfter, clip(notAfter, 64)))
			return true, nil
		}
		if req.Expires.IsZero() || t.Before(req.Expires) {
			req.Expires = t
		}
	}
	if req.Expired(now) {
		r.reject(req, "the request expired before it reached the agent (Message Expiry or not_after)")
		return true, nil
	}

	r.mu.Lock()
	var sub *subscription
	for _, c := range r.subs {
		if modules.MatchTopic(c.filter, rel) {
			sub = c
			break
		}
	}
	if sub == nil {
		r.mu.Unlock()
		r.answer(req, contract.StatusRejected, "nothing handles "+clip(rel, logStringLimit)+" on this device")
		return true, nil
	}
	cost := requestCost(req)
	full := r.bytes+cost > r.maxBytes
	if !full {
		full = !sub.push(req, cost)
		if !full {
			r.bytes += cost
		}
	}
	r.mu.Unlock()
	if full {
		r.event(contract.Event{Kind: contract.EventBusy, Module: sub.owner, Topic: rel, Requester: req.Requester,
			Message: "request queue full; answered busy"})
		r.answer(req, contract.StatusBusy, "the agent is busy: "+sub.owner+" has too many queued requests; try again")
	}
	return true, nil
}

// reject answers req rejected and records why.
func (r *router) reject(req *modules.Request, why string) {
	r.event(contract.Event{Kind: contract.EventRejected, Topic: req.Topic, Requester: req.Requester, Message: why})
	r.answer(req, contract.StatusRejected, why)
}

// push queues req unless the subscription is closed or full (caller holds
// the router lock).
func (s *subscription) push(req *modules.Request, cost int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.q) >= s.max {
		return false
	}
	s.q = append(s.q, req)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *subscription) pop() *modules.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) == 0 {
		return nil
	}
	req := s.q[0]
	s.q[0] = nil
	s.q = s.q[1:]
	if len(s.q) == 0 {
		s.q = nil
	}
	return req
}

// add registers a module's relative filter and starts its worker.
func (r *router) add(owner, filter string, queueLen int, h modules.Handler) (*subscription, error) {
	if filter == "" || strings.HasPrefix(filter, "/") {
		return nil, fmt.Errorf("subscribe %q: want a filter relative to the device root", filter)
	}
	if queueLen <= 0 {
		queueLen = defaultQueueLen
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscription{owner: owner, filter: filter, h: h, max: queueLen, wake: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go r.work(sub)
	r.mu.Lock()
	r.subs = append(r.subs, sub)
	r.mu.Unlock()
	return sub, nil
}

// work runs sub's requests one after another. A request whose deadline
// passed while it waited is answered rejected and not run.
func (r *router) work(sub *subscription) {
	defer close(sub.done)
	for {
		req := sub.pop()
		if req == nil {
			select {
			case <-sub.wake:
				continue
			case <-sub.ctx.Done():
				return
			}
		}
		r.mu.Lock()
		r.bytes -= requestCost(req)
		r.mu.Unlock()
		if req.Expired(time.Now()) {
			r.reject(req, "the request expired while it waited in the queue (Message Expiry or not_after); not run")
			continue
		}
		sub.h(sub.ctx, req)
		if sub.ctx.Err() != nil {
			return
		}
	}
}

// remove ends owner's subscriptions, waits for their workers, and answers
// every request still queued: a reload never drops a request silently.
func (r *router) remove(owner string) {
	r.mu.Lock()
	var keep, gone []*subscription
	for _, c := range r.subs {
		if c.owner == owner {
			gone = append(gone, c)
			c.mu.Lock()
			c.closed = true // no push after this
			c.mu.Unlock()
		} else {
			keep = append(keep, c)
		}
	}
	r.subs = keep
	r.mu.Unlock()
	for _, c := range gone {
		c.cancel()
		<-c.done
		for req := c.pop(); req != nil; req = c.pop() {
			r.mu.Lock()
			r.bytes -= requestCost(req)
			r.mu.Unlock()
			r.answer(req, contract.StatusRejected, c.owner+" was reloaded or stopped before this request ran; send it again")
		}
	}
}

// filters returns the relative filters of all subscriptions.
func (r *router) filters() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.subs))
	for _, s := range r.subs {
		out = append(out, s.filter)
	}
	return out
}

var hashSeed = maphash.MakeSeed()

func publishHash(p *paho.Publish) uint64 {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	h.WriteString(p.Topic)
	h.WriteByte(0)
	h.Write(p.Payload)
	if p.Properties != nil {
		h.WriteByte(0)
		h.Write(p.Properties.CorrelationData)
		h.WriteByte(0)
		h.WriteString(p.Properties.ResponseTopic)
	}
	return h.Sum64()
}

// seenRing remembers the packet identifiers (and a hash of the content) of
// the last QoS 1/2 messages received in this session. A broker sends a
// message again, flagged DUP and with the same identifier, when it did not
// get our PUBACK before the connection dropped; only messages received
// shortly before the drop can be redelivered (at most Receive Maximum are
// unacknowledged at any time), so a small ring is enough.
type seenRing struct {
	mu   sync.Mutex
	ids  []uint16
	hash []uint64
	n    int
}

func newSeenRing(size int) seenRing {
	return seenRing{ids: make([]uint16, size), hash: make([]uint64, size)}
}

func (s *seenRing) add(id uint16, h uint64) {
	s.mu.Lock()
	i := s.n % len(s.ids)
	s.ids[i], s.hash[i] = id, h
	s.n++
	s.mu.Unlock()
}

func (s *seenRing) contains(id uint16, h uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < min(s.n, len(s.ids)); i++ {
		if s.ids[i] == id && s.hash[i] == h {
			return true
		}
	}
	return false
}
