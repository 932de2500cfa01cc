package agent

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// externalTopics is the session's one discovery tree outside the device root
// (modules.Discovery): who claimed it, the handlers of its subscribed
// topics, and the change signal of the agent's retained topics. Its zero
// value is ready to use. Lock order: Session.mu before externalTopics.mu.
type externalTopics struct {
	mu       sync.Mutex
	owner    string
	prefix   string
	handlers map[string][]extHandler // full topic -> handlers
	changed  chan struct{}           // closed at the next retained change
}

type extHandler struct {
	owner string
	h     func([]byte)
}

func (e *externalTopics) claim(owner, prefix string, root contract.Root) error {
	if err := contract.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("discovery tree: %w", err)
	}
	if overlaps(prefix, root.Prefix) {
		return fmt.Errorf("discovery tree %q overlaps the device topics under %q", prefix, root.Prefix)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.owner != "" && (e.owner != owner || e.prefix != prefix) && e.hasOwnerLocked() {
		return fmt.Errorf("discovery tree %q is already claimed by %s", e.prefix, e.owner)
	}
	e.owner, e.prefix = owner, prefix
	return nil
}

// hasOwnerLocked reports whether the current owner still has handlers (an
// owner whose module was closed released the tree).
func (e *externalTopics) hasOwnerLocked() bool {
	for _, hs := range e.handlers {
		for _, h := range hs {
			if h.owner == e.owner {
				return true
			}
		}
	}
	return false
}

// overlaps reports whether one topic prefix is the other or lies below it.
func overlaps(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// full returns the full topic of rel in owner's tree.
func (e *externalTopics) full(owner, rel string) (string, error) {
	if rel == "" || strings.ContainsAny(rel, "+#\x00") || strings.HasPrefix(rel, "/") || strings.HasSuffix(rel, "/") || strings.Contains(rel, "//") {
		return "", fmt.Errorf("discovery topic %q: want a relative topic without wildcards or empty levels", rel)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.owner != owner || e.prefix == "" {
		return "", errors.New("discovery tree not claimed by this module (call ClaimDiscoveryTree first)")
	}
	return e.prefix + "/" + rel, nil
}

func (e *externalTopics) add(owner, full string, h func([]byte)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.handlers == nil {
		e.handlers = map[string][]extHandler{}
	}
	e.handlers[full] = append(e.handlers[full], extHandler{owner, h})
}

// remove drops owner's handlers (its module was closed).
func (e *externalTopics) remove(owner string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for full, hs := range e.handlers {
		var keep []extHandler
		for _, h := range hs {
			if h.owner != owner {
				keep = append(keep, h)
			}
		}
		if len(keep) == 0 {
			delete(e.handlers, full)
		} else {
			e.handlers[full] = keep
		}
	}
}

func (e *externalTopics) filters() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.handlers))
	for f := range e.handlers {
		out = append(out, f)
	}
	return out
}

// deliver hands a message outside the device root to the handlers of its
// topic. It runs on the receive path: handlers must not block.
func (e *externalTopics) deliver(topic string, payload []byte) {
	e.mu.Lock()
	hs := append([]extHandler(nil), e.handlers[topic]...)
	e.mu.Unlock()
	for _, h := range hs {
		h.h(payload)
	}
}

// retainedChanged signals the watchers of the agent's retained topics.
func (e *externalTopics) retainedChanged() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.changed != nil {
		close(e.changed)
		e.changed = nil
	}
}

func (e *externalTopics) watch() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.changed == nil {
		e.changed = make(chan struct{})
	}
	return e.changed
}

// subscribeExternal subscribes the discovery tree's topics on a new
// connection. Unlike request topics, retained messages are wanted here (the
// discovery config a previous run left on the broker).
func (s *Session) subscribeExternal(cm *autopaho.ConnectionManager, filters []string) {
	if len(filters) == 0 {
		return
	}
	var opts []paho.SubscribeOptions
	for _, f := range filters {
		opts = append(opts, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	s.sendSubscribe(cm, opts)
}

// ClaimDiscoveryTree implements modules.Discovery.
func (b *moduleBus) ClaimDiscoveryTree(prefix string) error {
	return b.s.ext.claim(b.owner, prefix, b.s.root)
}

// PublishDiscovery implements modules.Discovery.
func (b *moduleBus) PublishDiscovery(rel string, payload []byte) error {
	full, err := b.s.ext.full(b.owner, rel)
	if err != nil {
		return err
	}
	b.s.publishRetainedFull(b.owner, full, payload, modules.PublishOptions{QoS: 1, Raw: len(payload) == 0})
	return nil
}

// PublishedDiscovery implements modules.Discovery.
func (b *moduleBus) PublishedDiscovery(rel string) []byte {
	full, err := b.s.ext.full(b.owner, rel)
	if err != nil {
		return nil
	}
	return b.s.retainedPayload(full)
}

// SubscribeDiscovery implements modules.Discovery. While connected it
// returns once the broker acknowledged the subscription (bounded by the
// subscribe timeout).
func (b *moduleBus) SubscribeDiscovery(rel string, h func([]byte)) error {
	full, err := b.s.ext.full(b.owner, rel)
	if err != nil {
		return err
	}
	b.s.ext.add(b.owner, full, h)
	up, _, _ := b.s.conn.state()
	if cm := b.s.conn.manager(); up && cm != nil {
		// Synchronously: the module's first publish must not overtake the
		// retained message a previous run left there.
		b.s.subscribeExternal(cm, []string{full})
	}
	return nil
}

// Retained implements modules.Discovery.
func (b *moduleBus) Retained(topic string) ([]byte, <-chan struct{}) {
	ch := b.s.ext.watch()
	return b.s.retainedPayload(b.s.root.Topic(topic)), ch
}

// retainedPayload returns a copy of the cached retained payload of a full
// topic, or nil.
func (s *Session) retainedPayload(full string) []byte {
	b, ok := s.retained.value(full)
	if !ok || len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
