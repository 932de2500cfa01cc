// Package connect implements `picockpit-client connect`, `disconnect` and
// their parts: a real connection test with a precise diagnosis of what went
// wrong, the atomic edit of the config file, the broker account provisioned
// through Mosquitto's dynamic security plugin, clearing a device's retained
// topics, and storing the broker password with systemd-creds.
package connect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// Target says how to reach a broker as one user.
type Target struct {
	// URLs are tried in order; the first that accepts the login is used.
	URLs     []string
	Username string
	Password []byte
	CAFile   string
	CertFile string
	KeyFile  string
	// ClientID of the short-lived connection (never the agent's own id:
	// that would take over the running agent's session).
	ClientID string
	// Timeout bounds each connection attempt and each wait for an answer
	// (default 10s).
	Timeout time.Duration
	// ProbeWait is how long Probe waits for its message to come back before
	// it concludes that reading is not allowed (default Timeout).
	ProbeWait time.Duration
}

func (t Target) timeout() time.Duration {
	if t.Timeout <= 0 {
		return 10 * time.Second
	}
	return t.Timeout
}

// TLSConfig builds the client TLS settings from PEM files.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, &Error{Kind: KindLocal, Detail: "cannot read the CA file", Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &Error{Kind: KindLocal, Detail: fmt.Sprintf("CA file %s holds no PEM certificate", caFile)}
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, &Error{Kind: KindLocal, Detail: "a client certificate needs both --cert-file and --key-file"}
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, &Error{Kind: KindLocal, Detail: "cannot load the client certificate and key", Err: err}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// session is one short-lived MQTT 5 connection (clean start, no session
// kept at the broker) that collects what it receives.
type session struct {
	cm  *autopaho.ConnectionManager
	url string
	in  chan *paho.Publish
	// dropped counts messages lost because in was full.
	dropped atomic.Int64
	// stop ends the connection manager.
	stop context.CancelFunc
	t    Target
}

// dial connects to the first URL of t that accepts the connection. When all
// fail it returns the diagnosis of each (an *Error, or several joined).
func dial(ctx context.Context, t Target) (*session, error) {
	if len(t.URLs) == 0 {
		return nil, &Error{Kind: KindLocal, Detail: "no broker URL"}
	}
	var urls []*url.URL
	for _, raw := range t.URLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, &Error{Kind: KindLocal, URL: raw, Detail: "not a broker URL (want mqtt://, mqtts://, ws:// or wss://host:port)", Err: err}
		}
		switch u.Scheme {
		case "mqtt", "mqtts", "ws", "wss":
		default:
			return nil, &Error{Kind: KindLocal, URL: raw, Detail: fmt.Sprintf("scheme %q not supported (want mqtt, mqtts, ws or wss)", u.Scheme)}
		}
		urls = append(urls, u)
	}
	tlsCfg, err := TLSConfig(t.CAFile, t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	mctx, stop := context.WithCancel(context.Background())
	s := &session{url: "", in: make(chan *paho.Publish, 16384), stop: stop, t: t}
	var mu sync.Mutex
	var current string
	var failures []error
	failed := make(chan struct{})
	cfg := autopaho.ClientConfig{
		ServerUrls:                    urls,
		TlsCfg:                        tlsCfg,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         0,
		ConnectTimeout:                t.timeout(),
		// One round over the URLs: the first try at once, then never again
		// (dial gives up when every URL failed).
		ReconnectBackoff: func(attempt int) time.Duration {
			if attempt == 0 {
				return 0
			}
			return time.Hour
		},
		ConnectUsername: t.Username,
		ConnectPassword: t.Password,
		ConnectPacketBuilder: func(cp *paho.Connect, u *url.URL) (*paho.Connect, error) {
			mu.Lock()
			current = u.String()
			mu.Unlock()
			return cp, nil
		},
		OnConnectError: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, classify(current, err))
			if len(failures) == len(urls) {
				close(failed)
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID: t.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				select { // never block paho's receive loop
				case s.in <- pr.Packet:
				default:
					s.dropped.Add(1)
				}
				return true, nil
			}},
		},
	}
	cm, err := autopaho.NewConnection(mctx, cfg)
	if err != nil {
		stop()
		return nil, &Error{Kind: KindOther, Detail: "mqtt client", Err: err}
	}
	s.cm = cm
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-failed:
			cancel()
		case <-actx.Done():
		}
	}()
	if err := cm.AwaitConnection(actx); err != nil {
		stop()
		<-cm.Done()
		mu.Lock()
		defer mu.Unlock()
		if len(failures) == 0 {
			return nil, &Error{Kind: KindTimeout, URL: current, Detail: "no answer from the broker", Err: ctx.Err()}
		}
		if len(failures) == 1 {
			return nil, failures[0]
		}
		return nil, errors.Join(failures...)
	}
	mu.Lock()
	s.url = current
	mu.Unlock()
	return s, nil
}

// close disconnects cleanly.
func (s *session) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.cm.Disconnect(ctx)
	s.stop()
}

func (s *session) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.t.timeout())
}

// subscribe subscribes to one filter; a refusal is KindSubscribeDenied.
func (s *session) subscribe(ctx context.Context, filter string, retainHandling byte) error {
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	sa, err := s.cm.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1, RetainHandling: retainHandling}}})
	if sa != nil && len(sa.Reasons) == 1 && sa.Reasons[0] >= 0x80 {
		return &Error{Kind: KindSubscribeDenied, URL: s.url,
			Detail: fmt.Sprintf("the broker refused the subscription to %s (reason 0x%02x%s)", filter, sa.Reasons[0], reasonName(sa.Reasons[0])), Err: err}
	}
	if err != nil {
		return &Error{Kind: KindOther, URL: s.url, Detail: "subscribe to " + filter, Err: err}
	}
	return nil
}

// publish publishes at QoS 1; a refusal is KindPublishDenied.
func (s *session) publish(ctx context.Context, p *paho.Publish) error {
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	p.QoS = 1
	pr, err := s.cm.Publish(cctx, p)
	if pr != nil && pr.ReasonCode >= 0x80 {
		return &Error{Kind: KindPublishDenied, URL: s.url,
			Detail: fmt.Sprintf("the broker refused a publish to %s (reason 0x%02x%s)", p.Topic, pr.ReasonCode, reasonName(pr.ReasonCode)), Err: err}
	}
	if err != nil {
		return &Error{Kind: KindOther, URL: s.url, Detail: "publish to " + p.Topic, Err: err}
	}
	return nil
}

func reasonName(rc byte) string {
	switch rc {
	case 0x87:
		return " not authorized"
	case 0x8F:
		return " topic filter invalid"
	case 0x90:
		return " topic name invalid"
	case 0x97:
		return " quota exceeded"
	case 0x80:
		return " unspecified error"
	}
	return ""
}
