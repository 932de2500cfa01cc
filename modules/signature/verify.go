package signature

import (
	"crypto/ed25519"
	"sync"
	"time"
)

// DefaultReplayCapacity bounds the nonces a ReplayCache remembers.
const DefaultReplayCapacity = 10000

// ReplayCache remembers the nonces of accepted requests for twice the time
// window, bounded in count. When it is full of nonces that may still be
// replayed it refuses new requests (fails closed) rather than forget one.
// One cache serves the whole process, across reloads.
type ReplayCache struct {
	// Since, when set, refuses requests signed before it: the process's
	// start, so that a request captured before a restart (whose nonce the
	// new process cannot know) is not run again after it.
	Since time.Time

	mu    sync.Mutex
	cap   int
	seen  map[string]time.Time // key + "\x00" + nonce -> forget after
	order []nonceEntry         // insertion order, forget-after ascending
}

type nonceEntry struct {
	id    string
	until time.Time
}

// NewReplayCache returns a cache of at most capacity nonces (0: default).
func NewReplayCache(capacity int) *ReplayCache {
	if capacity <= 0 {
		capacity = DefaultReplayCapacity
	}
	return &ReplayCache{cap: capacity, seen: map[string]time.Time{}}
}

// add records id until the given time; it reports false for a nonce that
// was seen and not yet forgotten, and busy when the cache is full.
func (c *ReplayCache) add(id string, now, until time.Time) (fresh, busy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 && !now.Before(c.order[0].until) {
		delete(c.seen, c.order[0].id)
		c.order[0] = nonceEntry{}
		c.order = c.order[1:]
	}
	if _, ok := c.seen[id]; ok {
		return false, false
	}
	if len(c.seen) >= c.cap {
		return false, true
	}
	c.seen[id] = until
	c.order = append(c.order, nonceEntry{id, until})
	return true, false
}

// Len is how many nonces the cache holds.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Verifier checks signed requests against the trusted keys.
type Verifier struct {
	keys   map[string]Key
	window time.Duration
	replay *ReplayCache
	now    func() time.Time
}

// NewVerifier returns a verifier of keys that records nonces in replay
// (shared across reloads; nil: a cache of its own). window is how far a
// signing time may lie from now (0: DefaultWindow); now is the clock (nil:
// time.Now).
func NewVerifier(keys []Key, replay *ReplayCache, window time.Duration, now func() time.Time) *Verifier {
	if replay == nil {
		replay = NewReplayCache(0)
	}
	if window <= 0 {
		window = DefaultWindow
	}
	if now == nil {
		now = time.Now
	}
	v := &Verifier{keys: map[string]Key{}, window: window, replay: replay, now: now}
	for _, k := range keys {
		v.keys[k.Name] = k
	}
	return v
}

// Keys is how many trusted keys the verifier has.
func (v *Verifier) Keys() int {
	if v == nil {
		return 0
	}
	return len(v.keys)
}

// Verify checks that props carry a valid signature of m by a trusted key
// whose scope allows name of kind, made within the time window and with a
// nonce not used before. It returns the key's name, or an *Error. A nil
// Verifier refuses everything (no trusted keys).
func (v *Verifier) Verify(m Message, props []Property, kind, name string) (string, error) {
	s, err := Parse(props)
	if err != nil {
		return "", err
	}
	if v == nil {
		return "", refused(ReasonUnknownKey, s.Key, "no trusted keys are configured (trusted-keys.d)")
	}
	k, ok := v.keys[s.Key]
	if !ok {
		return "", refused(ReasonUnknownKey, s.Key, "%q is not a trusted key", s.Key)
	}
	if !ed25519.Verify(k.Public, SignedBytes(m, s.TimeMS, s.Nonce), s.Sig) {
		return "", refused(ReasonBadSignature, s.Key, "the signature does not verify with key %q (wrong key, or the request was altered)", s.Key)
	}
	if !k.Allows(kind, name) {
		return "", refused(ReasonOutOfScope, s.Key, "key %q may not be used for %s %s", s.Key, kind, name)
	}
	now := v.now()
	at := time.UnixMilli(s.TimeMS)
	if d := now.Sub(at); d > v.window || d < -v.window {
		return "", refused(ReasonExpired, s.Key, "signed at %s, more than %s from the agent's clock (%s)",
			at.UTC().Format(time.RFC3339), v.window, now.UTC().Format(time.RFC3339))
	}
	if at.Before(v.replay.Since) {
		return "", refused(ReasonExpired, s.Key, "signed at %s, before the agent started (%s): sign it again",
			at.UTC().Format(time.RFC3339Nano), v.replay.Since.UTC().Format(time.RFC3339Nano))
	}
	fresh, busy := v.replay.add(s.Key+"\x00"+s.Nonce, now, now.Add(2*v.window))
	switch {
	case busy:
		return "", refused(ReasonBusy, s.Key, "too many signed requests within %s; try again later", 2*v.window)
	case !fresh:
		return "", refused(ReasonReplayed, s.Key, "nonce %s of key %q was already used", s.Nonce, s.Key)
	}
	return s.Key, nil
}
