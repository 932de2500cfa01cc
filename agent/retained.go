package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// retainedCache keeps the latest value of every retained topic the agent
// publishes (status, info, catalogues, stats, GPIO states, results) and
// publishes it again on every reconnect: the agent's state is its own
// truth, not the broker's. Updates of one topic go out in order; a value
// overtaken by a newer one before it was sent is skipped (the broker keeps
// only the latest anyway).
//
// A value the broker refuses (a PUBACK reason code >= 0x80, e.g. an ACL that
// denies the topic) is logged once at error level and reported on events;
// it is tried again only for a new value or after a reconnect, and then no
// sooner than its backoff allows.
type retainedCache struct {
	log *slog.Logger
	// send publishes on the current connection and waits for the PUBACK.
	send func(ctx context.Context, p *paho.Publish) (*paho.PublishResponse, error)
	// limit is the broker's Maximum Packet Size (0: none).
	limit func() int
	// report publishes an event (events are not retained, so a refusal
	// reported there cannot loop back here).
	report func(contract.Event)

	retryMin, retryMax time.Duration

	mu       sync.Mutex
	up       bool
	gen      uint64
	stopping bool
	topics   map[string]*retainedTopic
	wg       sync.WaitGroup
}

type retainedTopic struct {
	owner   string    // module that publishes it ("" for the agent)
	sticky  bool      // survives reloads (modules.PublishOptions.Sticky)
	updated time.Time // when it was last set
	pub     *paho.Publish
	version uint64
	sentVer uint64
	sentGen uint64
	pumping bool

	// refusals
	failures int       // consecutive failed attempts
	nextTry  time.Time // not before (backoff)
	logged   bool      // a refusal was logged since the last success
}

func newRetainedCache(log *slog.Logger) *retainedCache {
	return &retainedCache{log: log, topics: map[string]*retainedTopic{},
		retryMin: time.Second, retryMax: 5 * time.Minute,
		limit: func() int { return 0 }, report: func(contract.Event) {}}
}

// set remembers pub (retained, full topic) as the latest value and sends it
// if connected.
func (c *retainedCache) set(owner string, pub *paho.Publish, sticky bool) {
	pub.Retain = true
	c.mu.Lock()
	defer c.mu.Unlock()
	rt := c.topics[pub.Topic]
	if rt == nil {
		rt = &retainedTopic{}
		c.topics[pub.Topic] = rt
	}
	rt.owner, rt.updated, rt.sticky = owner, time.Now(), sticky
	rt.pub = pub
	rt.version++
	c.kickLocked(rt)
}

// value returns the cached payload of a full topic (for tests and status).
func (c *retainedCache) value(full string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt := c.topics[full]
	if rt == nil {
		return nil, false
	}
	return rt.pub.Payload, true
}

// clearStale clears, on the broker and in the cache, the retained topics of
// modules that were not published again since since: after a reload they
// describe what no longer exists (a pin removed from the config, a module
// whose files were deleted), and the cache must not bring them back on the
// next reconnect.
func (c *retainedCache) clearStale(since time.Time) (cleared []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for full, rt := range c.topics {
		if rt.owner == "" || rt.sticky || !rt.updated.Before(since) || len(rt.pub.Payload) == 0 {
			continue
		}
		// An empty retained message deletes the broker's copy; keeping it in
		// the cache deletes it again after a broker restart.
		rt.pub = &paho.Publish{Topic: full, QoS: 1, Retain: true, Properties: &paho.PublishProperties{}}
		rt.version++
		c.kickLocked(rt)
		cleared = append(cleared, full)
	}
	return cleared
}

// connected is called once per new connection (generation gen), after the
// agent published online: every topic is sent again.
func (c *retainedCache) connected(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up, c.gen = true, gen
	for _, rt := range c.topics {
		c.kickLocked(rt)
	}
}

// disconnected stops sending until the next connected.
func (c *retainedCache) disconnected() {
	c.mu.Lock()
	c.up = false
	c.mu.Unlock()
}

// stop ends all sending and waits for the senders.
func (c *retainedCache) stop() {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *retainedCache) kickLocked(rt *retainedTopic) {
	if rt.pumping || !c.up || c.stopping {
		return
	}
	rt.pumping = true
	c.wg.Add(1)
	go c.pump(rt)
}

func (c *retainedCache) pump(rt *retainedTopic) {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if !c.up || c.stopping || (rt.sentVer == rt.version && rt.sentGen == c.gen) {
			rt.pumping = false
			c.mu.Unlock()
			return
		}
		if wait := time.Until(rt.nextTry); wait > 0 {
			c.mu.Unlock()
			time.Sleep(min(wait, 100*time.Millisecond)) // re-check stop/new connection often
			continue
		}
		pub, ver, gen := rt.pub, rt.version, c.gen
		c.mu.Unlock()

		if lim := c.limit(); lim > 0 && packetSize(pub) > lim {
			c.refused(rt, pub, ver, gen, fmt.Sprintf("%d bytes is more than the broker's maximum packet size (%d); not sent", packetSize(pub), lim), false)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		resp, err := c.send(ctx, pub)
		cancel()
		switch {
		case err == nil:
			c.mu.Lock()
			if gen == c.gen {
				rt.sentVer, rt.sentGen, rt.failures, rt.nextTry, rt.logged = ver, gen, 0, time.Time{}, false
				if len(pub.Payload) == 0 && rt.version == ver && c.topics[pub.Topic] == rt {
					// A cleared topic is gone from the broker: forget it, so a
					// reconnect does not send the deletion again.
					delete(c.topics, pub.Topic)
				}
			}
			c.mu.Unlock()
		case resp != nil && resp.ReasonCode >= 0x80:
			c.refused(rt, pub, ver, gen, fmt.Sprintf("reason code 0x%02x %s", resp.ReasonCode, describeReasonCode(resp.ReasonCode)), true)
		default:
			// Not connected any more: the next connection sends it. No answer
			// in time: back off and try again.
			c.mu.Lock()
			if !c.up || gen != c.gen {
				c.mu.Unlock()
				continue
			}
			rt.failures++
			rt.nextTry = time.Now().Add(expBackoff(rt.failures, c.retryMin, c.retryMax))
			c.mu.Unlock()
			c.log.Debug("retained publish failed; retrying", "topic", pub.Topic, "err", err)
		}
	}
}

// refused handles a value the broker will not take: logged once at error
// level and reported on events (again only after a success), and not tried
// again before a new value or a reconnect (and then with backoff).
func (c *retainedCache) refused(rt *retainedTopic, pub *paho.Publish, ver, gen uint64, why string, backoff bool) {
	c.mu.Lock()
	first := !rt.logged
	rt.logged = true
	rt.sentVer, rt.sentGen = ver, gen // do not loop on it
	if backoff {
		rt.failures++
		rt.nextTry = time.Now().Add(expBackoff(rt.failures, c.retryMin, c.retryMax))
	}
	c.mu.Unlock()
	if !first {
		return
	}
	c.log.Error("broker refused a retained publish; it is sent again with the next value or after a reconnect",
		"topic", pub.Topic, "why", why)
	c.report(contract.Event{Kind: contract.EventError, Message: "broker refused retained publish on " + pub.Topic + ": " + why,
		Fields: map[string]any{"topic": pub.Topic}})
}

// expBackoff is min, 2*min, 4*min ... capped at max.
func expBackoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
