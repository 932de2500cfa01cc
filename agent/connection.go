package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// connection is the agent's MQTT 5 link to the broker: paho's connection
// manager with the agent's dialer (one write per packet, TCP_QUICKACK),
// the backoff that stops reconnect storms, the limits the broker announced
// in CONNACK, and sentences for connection failures a user can act on.
//
// In-flight session state lives in memory (paho's memory store): nothing is
// written to disk per message, and nothing a broker refused can be replayed
// after a restart. The broker keeps the session (Session Expiry > 0), so
// requests sent while the agent is away are still delivered.
type connection struct {
	cfg      BrokerConfig
	log      *slog.Logger
	clientID string
	will     string // full status topic
	onStatus func(string)
	// onConn observes connection state changes (the status file).
	onConn func(ConnEvent)
	// handlers set by the session
	onPublish func(paho.PublishReceived) (bool, error)
	onUp      func(cm *autopaho.ConnectionManager, gen uint64, ca *paho.Connack)
	onDown    func()

	cm *autopaho.ConnectionManager
	st *state.State

	mu        sync.Mutex
	up        bool
	stopping  bool
	gen       uint64
	lostGen   uint64 // last generation that came up without a session
	changed   chan struct{}
	connCtx   context.Context // cancelled when the current connection goes down
	connStop  context.CancelFunc
	lastUp    time.Time
	flaps     int
	url       string // redacted URL of the latest connection attempt
	limits    brokerLimits
	lastError string

	// ConnectAttempts counts connection attempts; Connects successful ones.
	ConnectAttempts atomic.Int64
	Connects        atomic.Int64
}

// brokerLimits are what the broker announced in CONNACK (MQTT 5 §3.2.2.3);
// they bind the client.
type brokerLimits struct {
	MaxPacketSize   int // 0: no limit announced
	ReceiveMaximum  uint16
	MaxQoS          byte
	RetainAvailable bool
	TopicAliasMax   uint16
}

// receiveMaximum caps how many QoS 1/2 messages the broker may have in
// flight to the agent (paho's default is 65535 slots per connection).
const receiveMaximum = 64

// stableConnection is how long a connection must last before a drop counts
// as ordinary; shorter ones count as flaps and back off (a duplicate client
// id otherwise makes a tight reconnect storm).
const stableConnection = 10 * time.Second

func newConnection(b BrokerConfig, clientID, will string, log *slog.Logger, onStatus func(string)) *connection {
	c := &connection{cfg: b, clientID: clientID, will: will, log: log, onStatus: onStatus, onConn: func(ConnEvent) {}, changed: make(chan struct{})}
	c.connCtx, c.connStop = context.WithCancel(context.Background())
	c.connStop()
	return c
}

// start begins connecting (and reconnecting) in the background.
func (c *connection) start() error {
	b := c.cfg
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
	c.st = state.NewInMemory()
	willDelay := uint32(0)
	recvMax := uint16(receiveMaximum)
	cc := autopaho.ClientConfig{
		ServerUrls:                    urls,
		TlsCfg:                        tlsCfg,
		AttemptConnection:             dial(tlsCfg),
		KeepAlive:                     uint16(b.Keepalive / time.Second),
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(b.SessionExpiry / time.Second),
		ConnectTimeout:                b.ConnectTimeout,
		ReconnectBackoff:              c.backoff,
		ConnectUsername:               b.Username,
		ConnectPassword:               password,
		WillMessage:                   &paho.WillMessage{Topic: c.will, Payload: []byte(contract.StatusOffline), QoS: 1, Retain: true},
		WillProperties:                &paho.WillProperties{WillDelayInterval: &willDelay},
		ConnectPacketBuilder: func(cp *paho.Connect, u *url.URL) (*paho.Connect, error) {
			c.ConnectAttempts.Add(1)
			c.mu.Lock()
			c.url = u.Redacted()
			c.mu.Unlock()
			c.log.Debug("connecting", "url", u.Redacted())
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &recvMax
			maxPkt := uint32(maxPacketSize)
			cp.Properties.MaximumPacketSize = &maxPkt
			return cp, nil
		},
		OnConnectionUp: c.connUp,
		OnConnectionDown: func() bool {
			c.connDown()
			return true
		},
		OnConnectError: c.connectError,
		Errors:         pahoLogger{c.log, slog.LevelDebug},
		PahoErrors:     pahoLogger{c.log, slog.LevelDebug},
		ClientConfig: paho.ClientConfig{
			ClientID:          c.clientID,
			Session:           c.st,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){c.onPublish},
			OnServerDisconnect: func(d *paho.Disconnect) {
				reason := ""
				if d.Properties != nil {
					reason = d.Properties.ReasonString
				}
				c.log.Error("broker disconnected us: "+describeDisconnect(d.ReasonCode), "client_id", c.clientID,
					"reason_code", fmt.Sprintf("0x%02x", d.ReasonCode), "reason", clip(reason, logStringLimit))
			},
			OnClientError: func(err error) { c.log.Warn("connection error", "err", err) },
		},
	}
	cm, err := autopaho.NewConnection(context.Background(), cc)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	c.mu.Lock()
	if c.cm == nil {
		c.cm = cm
	}
	c.mu.Unlock()
	c.onStatus("connecting to " + strings.Join(b.URL, ", "))
	return nil
}

func (c *connection) connUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	c.Connects.Add(1)
	lim := brokerLimits{MaxQoS: 2, RetainAvailable: true, ReceiveMaximum: 65535}
	if p := ca.Properties; p != nil {
		if p.MaximumPacketSize != nil {
			lim.MaxPacketSize = int(*p.MaximumPacketSize)
		}
		if p.ReceiveMaximum != nil {
			lim.ReceiveMaximum = *p.ReceiveMaximum
		}
		if p.MaximumQoS != nil {
			lim.MaxQoS = *p.MaximumQoS
		}
		lim.RetainAvailable = p.RetainAvailable
		if p.TopicAliasMaximum != nil {
			lim.TopicAliasMax = *p.TopicAliasMaximum
		}
	}
	c.mu.Lock()
	c.cm = cm // the connection can come up before NewConnection returned
	c.gen++
	gen := c.gen
	if !ca.SessionPresent {
		c.lostGen = gen
	}
	c.lastUp = time.Now()
	c.up = true
	c.limits = lim
	c.lastError = ""
	c.connStop()
	c.connCtx, c.connStop = context.WithCancel(context.Background())
	close(c.changed)
	c.changed = make(chan struct{})
	u := c.url
	c.mu.Unlock()
	c.onConn(ConnEvent{Kind: ConnUp, URL: u})
	c.log.Info("connected", "client_id", c.clientID, "url", u, "session_present", ca.SessionPresent,
		"max_packet_size", lim.MaxPacketSize, "receive_maximum", lim.ReceiveMaximum, "maximum_qos", lim.MaxQoS, "retain_available", lim.RetainAvailable)
	if lim.MaxQoS < 1 {
		c.log.Error("the broker allows only QoS 0 (max_qos 0); replies and retained state may be lost: allow QoS 1 for this client")
	}
	if !lim.RetainAvailable {
		c.log.Error("the broker does not allow retained messages (retain_available false); the status contract needs them")
	}
	c.onUp(cm, gen, ca)
}

func (c *connection) connDown() {
	c.mu.Lock()
	c.up = false
	c.connStop()
	close(c.changed)
	c.changed = make(chan struct{})
	stopping := c.stopping
	c.mu.Unlock()
	c.onDown()
	if !stopping {
		c.log.Warn("connection lost; reconnecting")
		c.onStatus("connection lost; reconnecting")
		c.onConn(ConnEvent{Kind: ConnDown})
	}
}

// state implements link.
func (c *connection) state() (bool, uint64, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up, c.gen, c.changed
}

// maxPacket implements link.
func (c *connection) maxPacket() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limits.MaxPacketSize
}

// sessionLostSince implements link.
func (c *connection) sessionLostSince(gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lostGen > gen
}

// publish implements link: QoS is lowered to what the broker allows (a
// broker with max_qos 0 still gets the message). It returns when the
// connection it was sent on goes down.
func (c *connection) publish(ctx context.Context, p *paho.Publish) (*paho.PublishResponse, error) {
	c.mu.Lock()
	up, cm, lim, connCtx := c.up, c.cm, c.limits, c.connCtx
	c.mu.Unlock()
	if !up || cm == nil {
		return nil, fmt.Errorf("publish %s: %w", clip(p.Topic, logStringLimit), ErrOffline)
	}
	// Give up waiting for the PUBACK when this connection goes down: a QoS 1
	// message stays in the session and is sent again with it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(connCtx, cancel)
	defer stop()
	if p.QoS > lim.MaxQoS {
		q := *p
		q.QoS = lim.MaxQoS
		p = &q
	}
	if p.Retain && !lim.RetainAvailable {
		return nil, fmt.Errorf("publish %s: the broker does not allow retained messages (retain_available false)", p.Topic)
	}
	return cm.Publish(ctx, p)
}

// stop disconnects cleanly.
func (c *connection) stop(ctx context.Context) error {
	c.mu.Lock()
	c.stopping = true
	cm := c.cm
	c.mu.Unlock()
	if cm == nil {
		return nil
	}
	err := cm.Disconnect(ctx)
	_ = c.st.Close()
	return err
}

// manager returns paho's connection manager (nil before start).
func (c *connection) manager() *autopaho.ConnectionManager {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cm
}

func (c *connection) markStopping() {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
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
func (c *connection) backoff(attempt int) time.Duration {
	max := c.cfg.ReconnectMax
	c.mu.Lock()
	defer c.mu.Unlock()
	if attempt == 0 {
		if c.lastUp.IsZero() {
			return 0
		}
		if time.Since(c.lastUp) >= stableConnection {
			c.flaps = 0
			return jitter(500 * time.Millisecond)
		}
		c.flaps++
		if c.flaps >= 2 {
			// Mosquitto drops a taken-over connection without a DISCONNECT
			// reason, so say what the usual causes are.
			c.log.Warn("connection keeps dropping soon after connecting; if another client uses the same client id they take the session from each other (check that device.id / broker.client_id are unique); the broker log says why it closed the connection",
				"client_id", c.clientID, "drops", c.flaps)
		}
		return jitter(expDelay(c.flaps, max))
	}
	return jitter(expDelay(attempt+c.flaps, max))
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

func (c *connection) connectError(err error) {
	msg := describeConnectError(err)
	c.mu.Lock()
	repeat := msg == c.lastError
	c.lastError = msg
	u := c.url
	c.mu.Unlock()
	c.onConn(ConnEvent{Kind: ConnFailed, URL: u, Err: msg})
	lvl := slog.LevelWarn
	if repeat {
		lvl = slog.LevelDebug
	}
	c.log.Log(context.Background(), lvl, "connect failed", "err", msg, "attempts", c.ConnectAttempts.Load())
	c.onStatus("retrying: " + msg)
}

// describeConnectError turns a connection error into a sentence a user can act on.
func describeConnectError(err error) string {
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) {
		return fmt.Sprintf("broker refused the connection: %s (reason code 0x%02x%s)", describeConnack(ce.ReasonCode), ce.ReasonCode,
			map[bool]string{true: ", " + clip(ce.Reason, logStringLimit), false: ""}[ce.Reason != ""])
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
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
		return "the broker closed the connection on the MQTT 5 CONNECT; it probably does not support MQTT 5 (picockpit-client needs an MQTT 5 broker: Mosquitto 2, EMQX, HiveMQ, VerneMQ, RabbitMQ 3.13+), or it refused this client (see the broker's log): " + err.Error()
	}
	return err.Error()
}

// describeConnack says what a CONNACK refusal means and what to change.
func describeConnack(rc byte) string {
	switch rc {
	case 0x80:
		return "unspecified error"
	case 0x81:
		return "malformed packet"
	case 0x82:
		return "protocol error"
	case 0x84:
		return "unsupported protocol version (picockpit-client needs an MQTT 5 broker)"
	case 0x85:
		return "client id not valid (broker.client_id)"
	case 0x86:
		return "bad user name or password (broker.username, broker.password)"
	case 0x87:
		return "not authorized (check broker.username and broker.password, and the broker's access rules)"
	case 0x88:
		return "server unavailable"
	case 0x89:
		return "server busy"
	case 0x8A:
		return "banned by the broker"
	case 0x8C:
		return "bad authentication method"
	case 0x90:
		return "topic name invalid (the status topic used as Will; check topics.prefix and device.id)"
	case 0x95:
		return "packet too large"
	case 0x97:
		return "quota exceeded"
	case 0x99:
		return "payload format invalid"
	case 0x9A:
		return "the broker does not allow retained messages (retain_available false); the status contract needs them: allow retained messages for this client"
	case 0x9B:
		return "the broker does not allow QoS 1 (max_qos 0); the agent's Will and replies need QoS 1: raise max_qos"
	case 0x9C:
		return "use another server (the broker redirected us)"
	case 0x9D:
		return "server moved"
	case 0x9F:
		return "connection rate exceeded; the agent backs off"
	}
	return "unknown reason"
}

// describeDisconnect says what a broker's DISCONNECT reason code means.
func describeDisconnect(rc byte) string {
	switch rc {
	case 0x8E:
		return "another client connected with the same client id; check that broker.client_id / device.id are unique"
	case 0x95:
		return "a packet was larger than the broker's maximum packet size"
	case 0x97:
		return "quota exceeded"
	case 0x9A:
		return "the broker does not allow retained messages"
	case 0x9B:
		return "QoS not supported by the broker"
	case 0x8B:
		return "the broker is shutting down"
	case 0x8D:
		return "keep alive timeout (the link was silent too long)"
	case 0x87:
		return "not authorized"
	}
	return describeReasonCode(rc)
}

// describeReasonCode names a PUBACK/DISCONNECT reason code.
func describeReasonCode(rc byte) string {
	switch rc {
	case 0x10:
		return "no matching subscribers"
	case 0x80:
		return "unspecified error"
	case 0x83:
		return "implementation specific error"
	case 0x87:
		return "not authorized (check the broker's ACL for this topic)"
	case 0x90:
		return "topic name invalid"
	case 0x91:
		return "packet identifier in use"
	case 0x95:
		return "packet too large"
	case 0x97:
		return "quota exceeded"
	case 0x99:
		return "payload format invalid"
	case 0x9A:
		return "retain not supported"
	case 0x9B:
		return "QoS not supported"
	}
	return "unknown reason code"
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
