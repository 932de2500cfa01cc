package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// ErrOffline is returned by non-retained publishes while the broker is not
// connected.
var ErrOffline = errors.New("not connected to the broker")

// SessionConfig is what a Session needs beyond the broker config.
type SessionConfig struct {
	Broker BrokerConfig
	Root   contract.Root
	// StateDir is kept for the modules; the session itself writes nothing
	// there (its in-flight state is in memory).
	StateDir string
	Log      *slog.Logger
	// OnStatus receives human readable connection status lines (sd_notify).
	OnStatus func(string)
	// Info returns the retained info payload, published on every connect.
	Info func() []byte
	// OnConn observes connection state changes (the status file); optional.
	OnConn func(ConnEvent)
	// EventWindow is how long refusals are summed up before one summary
	// event (default 10 s).
	EventWindow time.Duration
}

// Session is the agent's MQTT 5 session, in four parts with one job each:
//
//   - connection.go: the link to the broker (paho, dialing, CONNACK limits,
//     backoff, connect errors);
//   - router.go: where a request goes (checks before queueing, redelivery,
//     bounded per-module queues);
//   - outbox.go: where a reply or an event goes (ordered, bounded, retried
//     across reconnects, within the broker's limits), with events.go for the
//     rate-limited audit trail;
//   - retained.go: where retained state is kept (latest value per topic,
//     republished on every reconnect).
//
// Session ties them together and is the modules.Bus the modules see. All
// methods are safe for concurrent use.
type Session struct {
	cfg      SessionConfig
	log      *slog.Logger
	root     contract.Root
	clientID string

	conn     *connection
	router   *router
	outbox   *outbox
	retained *retainedCache
	audit    *auditLog
	ext      externalTopics // the discovery tree outside the device root (discovery_bus.go)

	mu        sync.Mutex
	online    chan struct{} // closed once online was first published
	onlineSet bool
	filters   map[string]bool // full filters subscribed at the broker this connection
	started   bool

	// ConnectAttempts counts connection attempts (for tests and status).
	ConnectAttempts *atomic.Int64
	// Connects counts successful connections.
	Connects *atomic.Int64
}

// NewSession prepares a session; Start connects.
func NewSession(cfg SessionConfig) (*Session, error) {
	s := &Session{cfg: cfg, log: cfg.Log, root: cfg.Root, clientID: cfg.Broker.ClientID,
		online: make(chan struct{}), filters: map[string]bool{}}
	if s.clientID == "" {
		s.clientID = "picockpit-" + cfg.Root.Device
	}
	if s.cfg.OnStatus == nil {
		s.cfg.OnStatus = func(string) {}
	}
	s.conn = newConnection(cfg.Broker, s.clientID, s.root.Topic(contract.TopicStatus), s.log, s.cfg.OnStatus)
	if cfg.OnConn != nil {
		s.conn.onConn = cfg.OnConn
	}
	s.ConnectAttempts, s.Connects = &s.conn.ConnectAttempts, &s.conn.Connects
	s.outbox = newOutbox(s.log, s.conn)
	s.audit = newAuditLog(s.log, s.queueEvent, cfg.EventWindow)
	s.outbox.dropped = s.audit.messageDropped
	s.router = newRouter(s.root)
	s.router.answer = s.answer
	s.router.event = s.audit.event
	s.router.external = s.ext.deliver
	s.retained = newRetainedCache(s.log)
	s.retained.send = s.conn.publish
	s.retained.limit = s.conn.maxPacket
	s.retained.report = s.audit.event
	s.conn.onPublish = s.router.onPublish
	s.conn.onUp = s.onUp
	s.conn.onDown = s.onDown
	return s, nil
}

// ClientID is the MQTT client id the session uses.
func (s *Session) ClientID() string { return s.clientID }

// Online is closed once the agent published "online" for the first time.
func (s *Session) Online() <-chan struct{} { return s.online }

// Start begins connecting (and reconnecting) in the background, until Close.
func (s *Session) Start() error {
	s.outbox.start()
	if err := s.conn.start(); err != nil {
		s.outbox.stop()
		return err
	}
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	return nil
}

func (s *Session) onUp(cm *autopaho.ConnectionManager, gen uint64, _ *paho.Connack) {
	s.mu.Lock()
	s.filters = map[string]bool{}
	s.mu.Unlock()
	var filters []string
	for _, f := range s.router.filters() {
		filters = append(filters, s.root.Topic(f))
	}
	go s.afterConnect(cm, gen, filters) // OnConnectionUp must not block
}

// afterConnect subscribes, publishes online, and republishes retained state.
func (s *Session) afterConnect(cm *autopaho.ConnectionManager, gen uint64, filters []string) {
	if len(filters) > 0 {
		s.subscribe(cm, filters)
	}
	s.subscribeExternal(cm, s.ext.filters())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.conn.publish(ctx, &paho.Publish{Topic: s.root.Topic(contract.TopicStatus), QoS: 1, Retain: true,
		Payload: []byte(contract.StatusOnline)}); err != nil {
		s.log.Warn("publish online failed", "err", err)
		return
	}
	if _, g, _ := s.conn.state(); g != gen {
		return
	}
	s.mu.Lock()
	if !s.onlineSet {
		s.onlineSet = true
		close(s.online)
	}
	s.mu.Unlock()
	s.retained.connected(gen)
	s.cfg.OnStatus("connected to " + s.cfg.Broker.URL[0] + " as " + s.clientID)
	if s.cfg.Info != nil {
		s.PublishRetained(contract.TopicInfo, s.cfg.Info(), modules.PublishOptions{QoS: 1})
	}
}

func (s *Session) subscribe(cm *autopaho.ConnectionManager, filters []string) {
	var opts []paho.SubscribeOptions
	for _, f := range filters {
		// RetainHandling 2: never send us retained messages on subscribe;
		// RetainAsPublished: a retained publish keeps its flag, so the agent
		// can refuse it (a retained request is never run).
		opts = append(opts, paho.SubscribeOptions{Topic: f, QoS: 1, RetainHandling: 2, RetainAsPublished: true})
	}
	if !s.sendSubscribe(cm, opts) {
		return
	}
	s.mu.Lock()
	for _, f := range filters {
		s.filters[f] = true
	}
	s.mu.Unlock()
}

func (s *Session) onDown() { s.retained.disconnected() }

// Connection implements modules.Bus.
func (s *Session) Connection() (bool, <-chan struct{}) {
	up, _, ch := s.conn.state()
	return up, ch
}

// PublishRetained remembers the latest retained value of a relative topic and
// publishes it now if connected, and again on every reconnect.
func (s *Session) PublishRetained(topic string, payload []byte, opts modules.PublishOptions) {
	s.publishRetained("", topic, payload, opts)
}

func (s *Session) publishRetained(owner, topic string, payload []byte, opts modules.PublishOptions) {
	s.publishRetainedFull(owner, s.root.Topic(topic), payload, opts)
}

func (s *Session) publishRetainedFull(owner, full string, payload []byte, opts modules.PublishOptions) {
	defer s.ext.retainedChanged()
	s.retained.set(owner, s.newPublish(full, payload, opts), opts.Sticky)
}

// clearStale clears retained topics of modules not published since since.
func (s *Session) clearStale(since time.Time) []string { return s.retained.clearStale(since) }

func (s *Session) newPublish(full string, payload []byte, opts modules.PublishOptions) *paho.Publish {
	p := &paho.Publish{Topic: full, QoS: opts.QoS, Retain: opts.Retain, Payload: payload, Properties: &paho.PublishProperties{}}
	if !opts.Raw {
		ct := opts.ContentType
		if ct == "" {
			ct = contract.ContentTypeJSON
		}
		p.Properties.ContentType = ct
	}
	if opts.Expiry > 0 {
		e := uint32((opts.Expiry + time.Second - 1) / time.Second)
		p.Properties.MessageExpiry = &e
	}
	return p
}

// Publish publishes on a relative topic; see modules.Bus. A message larger
// than the broker's Maximum Packet Size is not sent (logged and reported).
func (s *Session) Publish(ctx context.Context, topic string, payload []byte, opts modules.PublishOptions) error {
	if opts.Retain {
		s.PublishRetained(topic, payload, opts)
		return nil
	}
	p := s.newPublish(s.root.Topic(topic), payload, opts)
	if lim := s.conn.maxPacket(); lim > 0 && packetSize(p) > lim {
		err := fmt.Errorf("publish %s: %d bytes is more than the broker's maximum packet size (%d); not sent", p.Topic, packetSize(p), lim)
		s.log.Error(err.Error())
		s.audit.messageDropped("publish", "larger than the broker's maximum packet size")
		return err
	}
	if _, err := s.conn.publish(ctx, p); err != nil {
		return fmt.Errorf("publish %s: %w", p.Topic, err)
	}
	return nil
}

// Reply publishes a response to req; see modules.Bus. It goes through the
// outbox: in order with the other replies to req, shrunk to the broker's
// limit if needed, and kept across a broker outage while req is unexpired
// (then Reply returns ErrOffline when ctx ends, and the reply is still sent
// after the reconnect).
func (s *Session) Reply(ctx context.Context, req *modules.Request, payload []byte) error {
	if req.ResponseTopic == "" {
		return nil
	}
	p := s.newPublish(req.ResponseTopic, payload, modules.PublishOptions{QoS: 1})
	p.Properties.CorrelationData = req.CorrelationData
	return s.outbox.enqueue(ctx, s.outbox.laneFor(req.ResponseTopic, req.CorrelationData), p, replyExpiry(req), "reply", true)
}

func replyExpiry(req *modules.Request) time.Time {
	if !req.Expires.IsZero() {
		return req.Expires
	}
	return time.Now().Add(replyKeep)
}

// answer is the router's cheap refusal: queued on the request's lane
// without waiting. Only a full outbox drops it (counted and reported).
func (s *Session) answer(req *modules.Request, status, msg string) {
	if req.ResponseTopic == "" {
		return
	}
	b, _ := marshal(contract.Response{Status: status, Topic: clip(req.Topic, logStringLimit), Error: msg, TS: time.Now().UTC()})
	p := s.newPublish(req.ResponseTopic, b, modules.PublishOptions{QoS: 1})
	p.Properties.CorrelationData = req.CorrelationData
	if err := s.outbox.enqueue(context.Background(), s.outbox.laneFor(req.ResponseTopic, req.CorrelationData), p, replyExpiry(req), "refusal", false); err != nil {
		s.audit.messageDropped("refusal", err.Error())
	}
}

// Event logs ev and queues it for the events topic; it never blocks.
// Floods of refusals are summed up (see auditLog).
func (s *Session) Event(ev contract.Event) { s.audit.event(ev) }

// queueEvent puts an event on the outbox's event lane.
func (s *Session) queueEvent(ev contract.Event) {
	b, err := marshal(ev)
	if err != nil {
		return
	}
	p := s.newPublish(s.root.Topic(contract.TopicEvents), b, modules.PublishOptions{QoS: 1})
	if err := s.outbox.enqueue(context.Background(), s.outbox.lanes[0], p, time.Time{}, "event", false); err != nil && ev.Kind != contract.EventError {
		s.audit.messageDropped("event", err.Error())
	}
}

// addSubscription registers a module's relative filter.
func (s *Session) addSubscription(owner, filter string, queueLen int, h modules.Handler) error {
	if _, err := s.router.add(owner, filter, queueLen, h); err != nil {
		return err
	}
	full := s.root.Topic(filter)
	up, _, _ := s.conn.state()
	s.mu.Lock()
	need := up && !s.filters[full]
	s.mu.Unlock()
	if cm := s.conn.manager(); need && cm != nil {
		go s.subscribe(cm, []string{full})
	}
	return nil
}

// removeSubscriptions ends owner's subscriptions, waits for their workers
// and answers what was still queued. Broker-side subscriptions stay until
// the next reconnect: a message nobody handles is answered "rejected".
func (s *Session) removeSubscriptions(owner string) {
	s.router.remove(owner)
	s.ext.remove(owner)
}

// Close publishes offline (retained), disconnects cleanly and stops.
func (s *Session) Close(ctx context.Context) error {
	s.conn.markStopping()
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	s.audit.stop()
	if !started {
		s.outbox.stop()
		return nil
	}
	// Let queued events and answers (a last command audit) go out.
	drain := time.Now().Add(time.Second)
	for up, _, _ := s.conn.state(); up && !s.outbox.idle() && time.Now().Before(drain); up, _, _ = s.conn.state() {
		time.Sleep(5 * time.Millisecond)
	}
	if up, _, _ := s.conn.state(); up {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := s.conn.publish(pctx, &paho.Publish{Topic: s.root.Topic(contract.TopicStatus), QoS: 1, Retain: true,
			Payload: []byte(contract.StatusOffline)})
		cancel()
		if err != nil {
			s.log.Warn("publish offline failed", "err", err)
		}
	}
	s.outbox.stop()
	err := s.conn.stop(ctx)
	s.retained.stop()
	return err
}

// sendSubscribe sends one SUBSCRIBE (bounded by a timeout) and logs each
// filter the broker refused; it reports whether the broker answered.
func (s *Session) sendSubscribe(cm *autopaho.ConnectionManager, opts []paho.SubscribeOptions) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil {
		s.log.Warn("subscribe failed", "subscriptions", len(opts), "err", err)
		return false
	}
	for i, rc := range sa.Reasons {
		if rc >= 0x80 && i < len(opts) {
			s.log.Error("broker refused subscription (check the broker ACL)", "filter", opts[i].Topic, "reason_code", fmt.Sprintf("0x%02x", rc))
		}
	}
	return true
}
