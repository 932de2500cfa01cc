package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"
	"github.com/eclipse/paho.golang/paho/store/file"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// ErrOffline is returned by non-retained publishes while the broker is not
// connected.
var ErrOffline = errors.New("not connected to the broker")

// receiveMaximum caps how many QoS 1/2 messages the broker may have in
// flight to the agent (paho's default is 65535 slots per connection).
const receiveMaximum = 64

// maxPacketSize is the largest MQTT packet the agent accepts (CONNECT
// Maximum Packet Size): the broker drops bigger messages for us instead of
// making a Pi Zero buffer them. Requests are small JSON documents.
const maxPacketSize = 256 << 10

// defaultQueueLen is a subscription's request queue when the module asks 0.
const defaultQueueLen = 64

// stableConnection is how long a connection must last before a drop counts
// as ordinary; shorter ones count as flaps and back off (a duplicate client
// id otherwise makes a tight reconnect storm).
const stableConnection = 10 * time.Second

// SessionConfig is what a Session needs beyond the broker config.
type SessionConfig struct {
	Broker   BrokerConfig
	Root     contract.Root
	StateDir string
	Log      *slog.Logger
	// OnStatus receives human readable connection status lines (sd_notify).
	OnStatus func(string)
	// Info returns the retained info payload, published on every connect.
	Info func() []byte
	// OnConn observes connection state changes (the status file); optional.
	OnConn func(ConnEvent)
}

// Session is the agent's MQTT 5 connection: it owns the paho connection
// manager, the retained-state cache that is republished on every connect,
// the routing of received messages to module queues, and the events topic.
// All methods are safe for concurrent use.
type Session struct {
	cfg      SessionConfig
	log      *slog.Logger
	root     contract.Root
	clientID string
	cm       *autopaho.ConnectionManager
	st       *state.State

	mu        sync.Mutex
	connected bool
	stopping  bool
	gen       uint64 // connection generation, incremented on every connect
	connCh    chan struct{}
	online    chan struct{} // closed once online was first published
	onlineSet bool
	lastUp    time.Time
	flaps     int
	url       string // redacted URL of the latest connection attempt
	retained  map[string]*retainedTopic
	filters   map[string]bool // full filters subscribed at the broker this connection
	subs      []*subscription
	ext       externalTopics // the discovery tree outside the device root (discovery_bus.go)

	events       chan contract.Event
	eventsBusy   atomic.Bool // an event is being published
	quit         chan struct{}
	quitCtx      context.Context
	quitCancel   context.CancelFunc
	eventsWG     sync.WaitGroup
	errReplies   chan errReply
	errRepliesWG sync.WaitGroup

	// ConnectAttempts counts connection attempts (for tests and status).
	ConnectAttempts atomic.Int64
	// Connects counts successful connections.
	Connects atomic.Int64
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
}

type subscription struct {
	owner  string
	filter string // relative
	h      modules.Handler
	q      chan *modules.Request
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// NewSession prepares a session; Start connects.
func NewSession(cfg SessionConfig) (*Session, error) {
	s := &Session{
		cfg:        cfg,
		log:        cfg.Log,
		root:       cfg.Root,
		clientID:   cfg.Broker.ClientID,
		connCh:     make(chan struct{}),
		online:     make(chan struct{}),
		retained:   map[string]*retainedTopic{},
		filters:    map[string]bool{},
		events:     make(chan contract.Event, 256),
		quit:       make(chan struct{}),
		errReplies: make(chan errReply, 1024),
	}
	s.quitCtx, s.quitCancel = context.WithCancel(context.Background())
	if s.clientID == "" {
		s.clientID = "picockpit-" + cfg.Root.Device
	}
	if s.cfg.OnStatus == nil {
		s.cfg.OnStatus = func(string) {}
	}
	if s.cfg.OnConn == nil {
		s.cfg.OnConn = func(ConnEvent) {}
	}
	return s, nil
}

// ClientID is the MQTT client id the session uses.
func (s *Session) ClientID() string { return s.clientID }

// Online is closed once the agent published "online" for the first time.
func (s *Session) Online() <-chan struct{} { return s.online }

// Start begins connecting (and reconnecting) in the background, until Close.
func (s *Session) Start() error {
	ctx := context.Background()
	b := s.cfg.Broker
	var urls []*url.URL
	for _, raw := range b.URL {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("broker url %q: %w", raw, err)
		}
		urls = append(urls, u)
	}
	tlsCfg, err := tlsConfig(b)
	if err != nil {
		return err
	}
	password := []byte(b.Password)
	if b.PasswordFile != "" {
		p, err := os.ReadFile(b.PasswordFile)
		if err != nil {
			return fmt.Errorf("broker.password_file: %w", err)
		}
		password = []byte(strings.TrimRight(string(p), "\r\n"))
	}

	// File-backed session state, one directory per client id so that a
	// changed id never resumes another's packet ids.
	dir := filepath.Join(s.cfg.StateDir, "session", sanitizeFileName(s.clientID))
	cs, err := file.New(filepath.Join(dir, "client"), "c_", ".pkt")
	if err != nil {
		return fmt.Errorf("session state in %s: %w", dir, err)
	}
	ss, err := file.New(filepath.Join(dir, "server"), "s_", ".pkt")
	if err != nil {
		return fmt.Errorf("session state in %s: %w", dir, err)
	}
	s.st = state.New(cs, ss)

	will := s.root.Topic(contract.TopicStatus)
	willDelay := uint32(0)
	recvMax := uint16(receiveMaximum)
	keep := uint16(b.Keepalive / time.Second)
	cc := autopaho.ClientConfig{
		ServerUrls:                    urls,
		TlsCfg:                        tlsCfg,
		KeepAlive:                     keep,
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(b.SessionExpiry / time.Second),
		ConnectTimeout:                b.ConnectTimeout,
		ReconnectBackoff:              s.backoff,
		ConnectUsername:               b.Username,
		ConnectPassword:               password,
		WillMessage:                   &paho.WillMessage{Topic: will, Payload: []byte(contract.StatusOffline), QoS: 1, Retain: true},
		WillProperties:                &paho.WillProperties{WillDelayInterval: &willDelay},
		ConnectPacketBuilder: func(cp *paho.Connect, u *url.URL) (*paho.Connect, error) {
			s.ConnectAttempts.Add(1)
			s.mu.Lock()
			s.url = u.Redacted()
			s.mu.Unlock()
			s.log.Debug("connecting", "url", u.Redacted())
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &recvMax
			maxPkt := uint32(maxPacketSize)
			cp.Properties.MaximumPacketSize = &maxPkt
			return cp, nil
		},
		OnConnectionUp: s.onUp,
		OnConnectionDown: func() bool {
			s.onDown()
			return true
		},
		OnConnectError: s.onConnectError,
		Errors:         pahoLogger{s.log, slog.LevelDebug},
		PahoErrors:     pahoLogger{s.log, slog.LevelDebug},
		ClientConfig: paho.ClientConfig{
			ClientID:          s.clientID,
			Session:           s.st,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){s.onPublish},
			OnServerDisconnect: func(d *paho.Disconnect) {
				if d.ReasonCode == 0x8E {
					s.log.Error("broker ended the session: another client connected with the same client id; check that broker.client_id / device.id are unique", "client_id", s.clientID)
					return
				}
				reason := ""
				if d.Properties != nil {
					reason = d.Properties.ReasonString
				}
				s.log.Warn("broker disconnected us", "reason_code", fmt.Sprintf("0x%02x", d.ReasonCode), "reason", reason)
			},
			OnClientError: func(err error) { s.log.Warn("connection error", "err", err) },
		},
	}
	s.eventsWG.Add(1)
	go s.eventLoop()
	s.errRepliesWG.Add(1)
	go s.errReplyLoop()
	cm, err := autopaho.NewConnection(ctx, cc)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	s.cm = cm
	s.cfg.OnStatus("connecting to " + strings.Join(b.URL, ", "))
	return nil
}

func sanitizeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

func tlsConfig(b BrokerConfig) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker.ca_file %s: no PEM certificate found", b.CAFile)
		}
		cfg.RootCAs = pool
	}
	if b.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker.cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// backoff is autopaho's ReconnectBackoff. Attempt 0 is the delay before the
// first attempt after a (re)start of the connect loop: zero at start-up, but
// after a connection that dropped quickly it grows with every such flap, so
// that a duplicate client id or a broker that kicks us cannot cause a storm.
func (s *Session) backoff(attempt int) time.Duration {
	max := s.cfg.Broker.ReconnectMax
	s.mu.Lock()
	defer s.mu.Unlock()
	if attempt == 0 {
		if s.lastUp.IsZero() {
			return 0
		}
		if time.Since(s.lastUp) >= stableConnection {
			s.flaps = 0
			return jitter(500 * time.Millisecond)
		}
		s.flaps++
		if s.flaps >= 2 {
			// Mosquitto drops a taken-over connection without a DISCONNECT
			// reason, so say what the usual cause is.
			s.log.Warn("connection keeps dropping soon after connecting; if another client uses the same client id they take the session from each other: check that device.id / broker.client_id are unique",
				"client_id", s.clientID, "drops", s.flaps)
		}
		return jitter(expDelay(s.flaps, max))
	}
	return jitter(expDelay(attempt+s.flaps, max))
}

// expDelay is 1s, 2s, 4s ... capped at max.
func expDelay(n int, max time.Duration) time.Duration {
	d := time.Second
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// jitter returns a duration in [d/2, d] (full jitter would allow zero).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (s *Session) onConnectError(err error) {
	msg := describeConnectError(err)
	s.log.Warn("connect failed", "err", msg, "attempts", s.ConnectAttempts.Load())
	s.cfg.OnStatus("retrying: " + msg)
	s.mu.Lock()
	u := s.url
	s.mu.Unlock()
	s.cfg.OnConn(ConnEvent{Kind: ConnFailed, URL: u, Err: msg})
}

// describeConnectError turns a connection error into a sentence a user can act on.
func describeConnectError(err error) string {
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) {
		switch ce.ReasonCode {
		case 0x86:
			return "broker refused the connection: bad user name or password (broker.username, broker.password)"
		case 0x87:
			return "broker refused the connection: not authorized (check broker.username and broker.password, and the broker's access rules)"
		case 0x85:
			return "broker refused the connection: client id not valid (broker.client_id)"
		case 0x84:
			return "broker refused the connection: unsupported protocol version (picockpit-client needs an MQTT 5 broker)"
		}
		return fmt.Sprintf("broker refused the connection: reason 0x%02x %s", ce.ReasonCode, ce.Reason)
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var cie x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return "server certificate not trusted (signed by an unknown authority; set broker.ca_file): " + err.Error()
	case errors.As(err, &hn):
		return "server certificate does not match the host name in broker.url: " + err.Error()
	case errors.As(err, &cie):
		return "server certificate invalid: " + err.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out: " + err.Error()
	}
	return err.Error()
}

func (s *Session) onUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	s.Connects.Add(1)
	s.mu.Lock()
	s.gen++
	gen := s.gen
	s.lastUp = time.Now()
	s.connected = true
	u := s.url
	s.filters = map[string]bool{}
	close(s.connCh)
	s.connCh = make(chan struct{})
	var filters []string
	for _, sub := range s.subs {
		filters = append(filters, s.root.Topic(sub.filter))
	}
	s.mu.Unlock()
	s.log.Info("connected", "client_id", s.clientID, "url", u, "session_present", ca.SessionPresent)
	s.cfg.OnConn(ConnEvent{Kind: ConnUp, URL: u})
	go s.afterConnect(cm, gen, filters)
}

// afterConnect subscribes, publishes online, and republishes retained state.
// It runs on its own goroutine: OnConnectionUp must not block.
func (s *Session) afterConnect(cm *autopaho.ConnectionManager, gen uint64, filters []string) {
	if len(filters) > 0 {
		s.subscribe(cm, filters)
	}
	s.subscribeExternal(cm, s.ext.filters())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: s.root.Topic(contract.TopicStatus), QoS: 1, Retain: true,
		Payload: []byte(contract.StatusOnline)}); err != nil {
		s.log.Warn("publish online failed", "err", err)
		return
	}
	s.mu.Lock()
	if s.gen != gen {
		s.mu.Unlock()
		return
	}
	if !s.onlineSet {
		s.onlineSet = true
		close(s.online)
	}
	for topic, rt := range s.retained {
		s.kickLocked(topic, rt)
	}
	s.mu.Unlock()
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil {
		s.log.Warn("subscribe failed", "filters", filters, "err", err)
		return
	}
	for i, rc := range sa.Reasons {
		if rc >= 0x80 && i < len(filters) {
			s.log.Error("broker refused subscription (check the broker ACL)", "filter", filters[i], "reason_code", fmt.Sprintf("0x%02x", rc))
		}
	}
	s.mu.Lock()
	for _, f := range filters {
		s.filters[f] = true
	}
	s.mu.Unlock()
}

func (s *Session) onDown() {
	s.mu.Lock()
	s.connected = false
	close(s.connCh)
	s.connCh = make(chan struct{})
	stopping := s.stopping
	s.mu.Unlock()
	if !stopping {
		s.log.Warn("connection lost; reconnecting")
		s.cfg.OnStatus("connection lost; reconnecting")
		s.cfg.OnConn(ConnEvent{Kind: ConnDown})
	}
}

// Connection implements modules.Bus.
func (s *Session) Connection() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected, s.connCh
}

// PublishRetained remembers the latest retained value of a relative topic and
// publishes it now if connected, and again on every reconnect. Updates of
// one topic are published in order; a value overtaken by a newer one before
// it was sent is skipped (the broker keeps only the latest anyway).
func (s *Session) PublishRetained(topic string, payload []byte, opts modules.PublishOptions) {
	s.publishRetained("", topic, payload, opts)
}

func (s *Session) publishRetained(owner, topic string, payload []byte, opts modules.PublishOptions) {
	s.publishRetainedFull(owner, s.root.Topic(topic), payload, opts)
}

func (s *Session) publishRetainedFull(owner, full string, payload []byte, opts modules.PublishOptions) {
	defer s.ext.retainedChanged()
	pub := s.newPublish(full, payload, opts)
	pub.Retain = true
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.retained[full]
	if rt == nil {
		rt = &retainedTopic{}
		s.retained[full] = rt
	}
	rt.owner, rt.updated, rt.sticky = owner, time.Now(), opts.Sticky
	rt.pub = pub
	rt.version++
	s.kickLocked(full, rt)
}

// clearStale clears, on the broker and in the cache, the retained topics of
// modules that were not published again since since: after a reload they
// describe what no longer exists (a pin removed from the config, a module
// whose files were deleted), and the cache must not bring them back on the
// next reconnect.
func (s *Session) clearStale(since time.Time) (cleared []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for full, rt := range s.retained {
		if rt.owner == "" || rt.sticky || !rt.updated.Before(since) || len(rt.pub.Payload) == 0 {
			continue
		}
		// An empty retained message deletes the broker's copy; keeping it in
		// the cache deletes it again after a broker restart.
		rt.pub = &paho.Publish{Topic: full, QoS: 1, Retain: true, Properties: &paho.PublishProperties{}}
		rt.version++
		s.kickLocked(full, rt)
		cleared = append(cleared, full)
	}
	return cleared
}

func (s *Session) kickLocked(full string, rt *retainedTopic) {
	if rt.pumping || !s.connected || s.stopping {
		return
	}
	rt.pumping = true
	go s.pump(full, rt)
}

func (s *Session) pump(full string, rt *retainedTopic) {
	for {
		s.mu.Lock()
		if !s.connected || (rt.sentVer == rt.version && rt.sentGen == s.gen) {
			rt.pumping = false
			s.mu.Unlock()
			return
		}
		pub, ver, gen, cm := rt.pub, rt.version, s.gen, s.cm
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := cm.Publish(ctx, pub)
		cancel()
		s.mu.Lock()
		if err == nil && gen == s.gen {
			rt.sentVer, rt.sentGen = ver, gen
			if len(pub.Payload) == 0 && rt.version == ver && s.retained[full] == rt {
				// A cleared topic is gone from the broker: forget it, so a
				// reconnect does not send the deletion again.
				delete(s.retained, full)
			}
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Debug("retained publish failed; will retry on reconnect", "topic", full, "err", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

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

// Publish publishes on a relative topic; see modules.Bus.
func (s *Session) Publish(ctx context.Context, topic string, payload []byte, opts modules.PublishOptions) error {
	if opts.Retain {
		s.PublishRetained(topic, payload, opts)
		return nil
	}
	return s.publishFull(ctx, s.newPublish(s.root.Topic(topic), payload, opts))
}

func (s *Session) publishFull(ctx context.Context, p *paho.Publish) error {
	s.mu.Lock()
	up, cm := s.connected, s.cm
	s.mu.Unlock()
	if !up || cm == nil {
		return fmt.Errorf("publish %s: %w", p.Topic, ErrOffline)
	}
	if _, err := cm.Publish(ctx, p); err != nil {
		return fmt.Errorf("publish %s: %w", p.Topic, err)
	}
	return nil
}

// Reply publishes a response to req; see modules.Bus.
func (s *Session) Reply(ctx context.Context, req *modules.Request, payload []byte) error {
	if req.ResponseTopic == "" {
		return nil
	}
	p := s.newPublish(req.ResponseTopic, payload, modules.PublishOptions{QoS: 1})
	p.Properties.CorrelationData = req.CorrelationData
	return s.publishFull(ctx, p)
}

// Event logs ev and queues it for the events topic; it never blocks.
func (s *Session) Event(ev contract.Event) {
	if ev.TS.IsZero() {
		ev.TS = time.Now().UTC()
	}
	lvl := slog.LevelInfo
	if ev.Kind == contract.EventError || ev.Kind == contract.EventRejected || ev.Kind == contract.EventBusy {
		lvl = slog.LevelWarn
	}
	attrs := []any{"event", ev.Kind}
	for _, kv := range [][2]string{{"module", ev.Module}, {"topic", ev.Topic}, {"requester", ev.Requester}} {
		if kv[1] != "" {
			attrs = append(attrs, kv[0], kv[1])
		}
	}
	if len(ev.Fields) > 0 {
		attrs = append(attrs, "fields", ev.Fields)
	}
	s.log.Log(context.Background(), lvl, ev.Message, attrs...)
	select {
	case s.events <- ev:
	default:
		s.log.Warn("events queue full; event not published", "event", ev.Kind)
	}
}

// eventLoop publishes queued events in order. While the broker is away it
// waits (the queue keeps up to 256 events, so what happened during start-up
// or an outage, such as a broken module file, still reaches the events topic).
func (s *Session) eventLoop() {
	defer s.eventsWG.Done()
	for {
		select {
		case <-s.quit:
			return
		case ev := <-s.events:
			b, err := marshal(ev)
			if err != nil {
				continue
			}
			s.eventsBusy.Store(true)
			for attempt := 0; attempt < 3; attempt++ {
				if !s.awaitConnection() {
					s.eventsBusy.Store(false)
					return
				}
				pctx, cancel := context.WithTimeout(s.quitCtx, 5*time.Second)
				err = s.Publish(pctx, contract.TopicEvents, b, modules.PublishOptions{QoS: 1})
				cancel()
				if err == nil {
					break
				}
			}
			s.eventsBusy.Store(false)
		}
	}
}

// awaitConnection waits until the session is connected (true) or closing (false).
func (s *Session) awaitConnection() bool {
	for {
		up, changed := s.Connection()
		if up {
			return true
		}
		select {
		case <-changed:
		case <-s.quit:
			return false
		}
	}
}

// onPublish is the one receive callback. It never blocks: it checks the
// message and hands it to the owning subscription's bounded queue.
func (s *Session) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	rel, ok := s.root.Rel(p.Topic)
	if !ok {
		s.ext.deliver(p.Topic, p.Payload)
		return true, nil
	}
	req := &modules.Request{Topic: rel, Payload: p.Payload, Received: time.Now()}
	if p.Properties != nil {
		req.CorrelationData = p.Properties.CorrelationData
		req.Requester = p.Properties.User.Get(contract.UserPropertyRequester)
		req.UserProperties = userProperties(p.Properties.User)
		if p.Properties.MessageExpiry != nil {
			req.Expires = req.Received.Add(time.Duration(*p.Properties.MessageExpiry) * time.Second)
		}
		if rt := p.Properties.ResponseTopic; rt != "" {
			if !s.root.IsReplyTopic(rt) {
				s.Event(contract.Event{Kind: contract.EventRejected, Topic: rel, Requester: req.Requester,
					Message: fmt.Sprintf("response topic %q refused: it must start with %s", rt, s.root.Topic(contract.ReplyPrefix))})
				return true, nil
			}
			req.ResponseTopic = rt
		}
	}
	if p.Retain && len(p.Payload) == 0 {
		return true, nil // someone clearing a retained request: nothing to run
	}
	if p.Retain {
		s.Event(contract.Event{Kind: contract.EventRejected, Topic: rel, Requester: req.Requester,
			Message: "retained request refused: requests must not be retained (clear it by publishing an empty retained message)"})
		s.replyAsync(req, contract.StatusRejected, "retained requests are never run")
		return true, nil
	}
	s.mu.Lock()
	var sub *subscription
	for _, c := range s.subs {
		if modules.MatchTopic(c.filter, rel) {
			sub = c
			break
		}
	}
	s.mu.Unlock()
	if sub == nil {
		s.replyAsync(req, contract.StatusRejected, "nothing handles "+rel+" on this device")
		return true, nil
	}
	select {
	case sub.q <- req:
	default:
		s.Event(contract.Event{Kind: contract.EventBusy, Module: sub.owner, Topic: rel, Requester: req.Requester,
			Message: "request queue full; answered busy"})
		s.replyAsync(req, contract.StatusBusy, "the agent is busy: "+sub.owner+" has too many queued requests; try again")
	}
	return true, nil
}

type errReply struct {
	req    *modules.Request
	status string
	msg    string
}

// replyAsync answers a request from the receive path without blocking it:
// the answer is queued for one publishing goroutine. Only a flood beyond
// the queue (1024 pending answers) is dropped, and logged.
func (s *Session) replyAsync(req *modules.Request, status, msg string) {
	if req.ResponseTopic == "" {
		return
	}
	select {
	case s.errReplies <- errReply{req, status, msg}:
	default:
		s.log.Warn("too many pending error replies; reply dropped", "topic", req.Topic, "status", status)
	}
}

func (s *Session) errReplyLoop() {
	defer s.errRepliesWG.Done()
	for {
		select {
		case <-s.quit:
			return
		case r := <-s.errReplies:
			b, _ := marshal(contract.Response{Status: r.status, Topic: r.req.Topic, Error: r.msg, TS: time.Now().UTC()})
			ctx, cancel := context.WithTimeout(s.quitCtx, 5*time.Second)
			if err := s.Reply(ctx, r.req, b); err != nil {
				s.log.Debug("reply failed", "err", err)
			}
			cancel()
		}
	}
}

// subscribe registers a module's relative filter.
func (s *Session) addSubscription(owner, filter string, queueLen int, h modules.Handler) error {
	if filter == "" || strings.HasPrefix(filter, "/") {
		return fmt.Errorf("subscribe %q: want a filter relative to the device root", filter)
	}
	if queueLen <= 0 {
		queueLen = defaultQueueLen
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscription{owner: owner, filter: filter, h: h, q: make(chan *modules.Request, queueLen),
		ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sub.done)
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-sub.q:
				h(ctx, r)
			}
		}
	}()
	full := s.root.Topic(filter)
	s.mu.Lock()
	s.subs = append(s.subs, sub)
	need := s.connected && !s.filters[full]
	cm := s.cm
	s.mu.Unlock()
	if need {
		go s.subscribe(cm, []string{full})
	}
	return nil
}

// removeSubscriptions ends owner's subscriptions and waits for their
// workers. Broker-side subscriptions stay until the next reconnect: a
// message nobody handles is answered "rejected".
func (s *Session) removeSubscriptions(owner string) {
	s.mu.Lock()
	var keep, gone []*subscription
	for _, c := range s.subs {
		if c.owner == owner {
			gone = append(gone, c)
		} else {
			keep = append(keep, c)
		}
	}
	s.subs = keep
	s.mu.Unlock()
	s.ext.remove(owner)
	for _, c := range gone {
		c.cancel()
		<-c.done
	}
}

// Close publishes offline (retained), disconnects cleanly and stops.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	up, cm := s.connected, s.cm
	s.mu.Unlock()
	if cm == nil { // never started
		s.quitCancel()
		close(s.quit)
		s.errRepliesWG.Wait()
		s.eventsWG.Wait()
		return nil
	}
	// Let queued events and answers (a last command audit) go out.
	drain := time.Now().Add(time.Second)
	for up && (len(s.events) > 0 || s.eventsBusy.Load() || len(s.errReplies) > 0) && time.Now().Before(drain) {
		time.Sleep(5 * time.Millisecond)
	}
	if up {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := cm.Publish(pctx, &paho.Publish{Topic: s.root.Topic(contract.TopicStatus), QoS: 1, Retain: true,
			Payload: []byte(contract.StatusOffline)})
		cancel()
		if err != nil {
			s.log.Warn("publish offline failed", "err", err)
		}
	}
	s.quitCancel()
	err := cm.Disconnect(ctx)
	close(s.quit)
	s.errRepliesWG.Wait()
	s.eventsWG.Wait()
	if s.st != nil {
		_ = s.st.Close()
	}
	return err
}

// pahoLogger adapts paho's Println/Printf logger to slog.
type pahoLogger struct {
	l   *slog.Logger
	lvl slog.Level
}

func (p pahoLogger) Println(v ...any) {
	p.l.Log(context.Background(), p.lvl, strings.TrimSpace(fmt.Sprintln(v...)), "source", "paho")
}
func (p pahoLogger) Printf(format string, v ...any) {
	p.l.Log(context.Background(), p.lvl, strings.TrimSpace(fmt.Sprintf(format, v...)), "source", "paho")
}
