package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
)

// The outbox sends everything the agent publishes that is not retained
// state: replies to requests (from modules, and the agent's own cheap
// refusals: busy, rejected) and events. It is where a reply goes.
//
//   - Bounded: at most outboxMaxCount messages and outboxMaxBytes bytes wait.
//   - Ordered: the replies to one request (same response topic and
//     correlation data) go out in order, on one of several lanes, so that
//     replies to different requests do not wait for each other's PUBACK;
//     events have a lane of their own and keep their order.
//   - Retried across a reconnect: a message that could not be handed to the
//     connection waits for the next one and is sent while its request has
//     not expired.
//   - Within the broker's limits: a message larger than the broker's
//     Maximum Packet Size is shrunk where the contract allows (command
//     output cut, truncated: true) or dropped with a log line, never sent.
type outbox struct {
	log  *slog.Logger
	link link
	// dropped is told about messages that were dropped (for the aggregated
	// events and logs).
	dropped func(what, why string)

	seed  maphash.Seed
	lanes []*lane // lanes[0] carries events; the others replies

	mu        sync.Mutex
	count     int
	bytes     int
	maxCount  int
	maxBytes  int
	space     chan struct{} // closed and renewed when room is freed
	closed    bool
	wg        sync.WaitGroup
	quit      chan struct{}
	quitCtx   context.Context
	quitClose context.CancelFunc
}

// link is what the outbox (and the retained cache) need of the connection.
type link interface {
	// publish sends p on the current connection and waits for its PUBACK.
	publish(ctx context.Context, p *paho.Publish) (*paho.PublishResponse, error)
	// state reports whether the connection is up, its generation, and a
	// channel closed at the next change.
	state() (up bool, gen uint64, changed <-chan struct{})
	// maxPacket is the broker's Maximum Packet Size (0: none announced).
	maxPacket() int
	// sessionLostSince reports whether a connection after generation gen
	// came up without the session (what was in flight then is lost).
	sessionLostSince(gen uint64) bool
}

const (
	outboxMaxCount = 4096
	outboxMaxBytes = 4 << 20
	outboxLanes    = 8 // reply lanes; plus one for events
	// replyKeep is how long a reply to a request without Message Expiry is
	// kept for a broker that is away.
	replyKeep = time.Hour
	// itemOverhead is what one queued message costs besides its bytes.
	itemOverhead = 256
)

type lane struct {
	mu    sync.Mutex
	items []*outItem
	wake  chan struct{}
}

type outItem struct {
	pub     *paho.Publish
	expires time.Time
	size    int
	what    string     // "reply", "refusal", "event": for logs
	done    chan error // nil: nobody waits
}

func newOutbox(log *slog.Logger, l link) *outbox {
	o := &outbox{log: log, link: l, seed: maphash.MakeSeed(), maxCount: outboxMaxCount, maxBytes: outboxMaxBytes,
		space: make(chan struct{}), quit: make(chan struct{}), dropped: func(string, string) {}}
	o.quitCtx, o.quitClose = context.WithCancel(context.Background())
	for range outboxLanes + 1 {
		o.lanes = append(o.lanes, &lane{wake: make(chan struct{}, 1)})
	}
	return o
}

func (o *outbox) start() {
	for _, l := range o.lanes {
		o.wg.Add(1)
		go o.run(l)
	}
}

// ErrOutboxFull is returned when a message cannot wait: the outbox is full.
var ErrOutboxFull = errors.New("too many messages waiting for the broker")

// laneFor picks the reply lane of a response topic and correlation data.
func (o *outbox) laneFor(topic string, corr []byte) *lane {
	var h maphash.Hash
	h.SetSeed(o.seed)
	h.WriteString(topic)
	h.Write(corr)
	return o.lanes[1+int(h.Sum64()%outboxLanes)]
}

// reserve takes room for size bytes; with wait it waits for room until ctx
// ends.
func (o *outbox) reserve(ctx context.Context, size int, wait bool) error {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrOffline
		}
		if o.count < o.maxCount && o.bytes+size <= o.maxBytes {
			o.count++
			o.bytes += size
			o.mu.Unlock()
			return nil
		}
		space := o.space
		o.mu.Unlock()
		if !wait {
			return ErrOutboxFull
		}
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrOutboxFull, ctx.Err())
		case <-o.quit:
			return ErrOffline
		}
	}
}

func (o *outbox) release(size int) {
	o.mu.Lock()
	o.count--
	o.bytes -= size
	close(o.space)
	o.space = make(chan struct{})
	o.mu.Unlock()
}

// enqueue puts pub on lane l. With wait (a module's reply) it waits for
// room and then for the message to be handed to the broker or ctx to end;
// a message still waiting when ctx ends stays queued and is sent after the
// reconnect while unexpired. Without wait (refusals, events) it returns at
// once, and a full outbox drops the message.
func (o *outbox) enqueue(ctx context.Context, l *lane, pub *paho.Publish, expires time.Time, what string, wait bool) error {
	size := len(pub.Payload) + len(pub.Topic) + itemOverhead
	if pub.Properties != nil {
		size += len(pub.Properties.CorrelationData)
	}
	if err := o.reserve(ctx, size, wait); err != nil {
		return err
	}
	it := &outItem{pub: pub, expires: expires, size: size, what: what}
	if wait {
		it.done = make(chan error, 1)
	}
	l.mu.Lock()
	l.items = append(l.items, it)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	if !wait {
		return nil
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		if up, _, _ := o.link.state(); !up {
			return fmt.Errorf("%w; kept and sent after the reconnect", ErrOffline)
		}
		return ctx.Err()
	}
}

// run sends lane l's messages in order.
func (o *outbox) run(l *lane) {
	defer o.wg.Done()
	for {
		l.mu.Lock()
		var it *outItem
		if len(l.items) > 0 {
			it = l.items[0]
		}
		l.mu.Unlock()
		if it == nil {
			select {
			case <-l.wake:
				continue
			case <-o.quit:
				return
			}
		}
		err := o.send(it)
		if errors.Is(err, errStopping) {
			return
		}
		l.mu.Lock()
		l.items[0] = nil
		l.items = l.items[1:]
		if len(l.items) == 0 {
			l.items = nil // let a flood's backing array go
		}
		l.mu.Unlock()
		o.release(it.size)
		if it.done != nil {
			it.done <- err
		}
	}
}

var errStopping = errors.New("stopping")

// send hands it to the broker: it waits for a connection and retries after
// a reconnect until it went out, was refused, or expired.
func (o *outbox) send(it *outItem) error {
	waited := false
	for {
		// Kept across an outage only while the request is unexpired (a
		// reply sent at once goes out even when it says "expired").
		if waited && !it.expires.IsZero() && !time.Now().Before(it.expires) {
			o.dropped(it.what, "expired before the broker could take it")
			return fmt.Errorf("%s to %s expired before the broker was back: %w", it.what, clip(it.pub.Topic, logStringLimit), ErrOffline)
		}
		up, gen, changed := o.link.state()
		if !up {
			waited = true
			select {
			case <-changed:
				continue
			case <-o.quit:
				return errStopping
			}
		}
		if lim := o.link.maxPacket(); lim > 0 && !shrinkToFit(it.pub, lim) {
			why := fmt.Sprintf("%d bytes is more than the broker's maximum packet size (%d)", packetSize(it.pub), lim)
			o.log.Error("message not sent: "+why, "what", it.what, "topic", clip(it.pub.Topic, logStringLimit))
			o.dropped(it.what, why)
			return errors.New("not sent: " + why)
		}
		if waited && !it.expires.IsZero() {
			// Sent late: it expires with its request.
			left := uint32((time.Until(it.expires) + time.Second - 1) / time.Second)
			it.pub.Properties.MessageExpiry = &left
		}
		ctx, cancel := context.WithTimeout(o.quitCtx, 30*time.Second)
		resp, err := o.link.publish(ctx, it.pub)
		cancel()
		switch {
		case err == nil:
			return nil
		case resp != nil && resp.ReasonCode >= 0x80:
			why := fmt.Sprintf("broker refused it: reason code 0x%02x %s", resp.ReasonCode, describeReasonCode(resp.ReasonCode))
			o.log.Error(it.what+" not delivered: "+why, "topic", clip(it.pub.Topic, logStringLimit))
			o.dropped(it.what, why)
			return errors.New(why)
		case errors.Is(err, autopaho.ConnectionDownError), errors.Is(err, session.ErrNoConnection), errors.Is(err, ErrOffline):
			// Not handed over: wait for the next connection.
		case o.quitCtx.Err() != nil:
			return errStopping
		case o.link.sessionLostSince(gen):
			// In flight when the broker forgot the session: send again.
		default:
			// It is in the session state and goes out again with the
			// session; sending it twice would answer twice.
			o.log.Debug(it.what+" not acknowledged in time; left to the session", "topic", clip(it.pub.Topic, logStringLimit), "err", err)
			return nil
		}
		waited = true
		select {
		case <-changed:
		case <-o.quit:
			return errStopping
		}
	}
}

// idle reports whether nothing waits to be sent.
func (o *outbox) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count == 0
}

// stop ends the senders; what still waits is dropped.
func (o *outbox) stop() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	o.mu.Unlock()
	o.quitClose()
	close(o.quit)
	o.wg.Wait()
}
