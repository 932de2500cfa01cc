package brokertest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Message is a received publish.
type Message struct {
	Topic       string
	Payload     []byte
	Retain      bool
	QoS         byte
	Correlation []byte
	ContentType string
	Expiry      *uint32
	At          time.Time
}

// Client is a plain MQTT 5 test client over TCP that records everything it
// receives. Its methods fail the test on errors.
type Client struct {
	t    testing.TB
	c    *paho.Client
	mu   sync.Mutex
	cond *sync.Cond
	msgs []Message
	ID   string
}

// ClientOptions for Connect.
type ClientOptions struct {
	ID       string
	Username string
	Password string
}

// Connect connects a test client to an mqtt:// URL; it disconnects at the
// end of the test.
func Connect(t testing.TB, rawURL string, o ClientOptions) *Client {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("test client: dial %s: %v", u.Host, err)
	}
	if o.ID == "" {
		o.ID = fmt.Sprintf("test-%d", time.Now().UnixNano())
	}
	cl := &Client{t: t, ID: o.ID}
	cl.cond = sync.NewCond(&cl.mu)
	cl.c = paho.NewClient(paho.ClientConfig{
		ClientID: o.ID,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			m := Message{Topic: p.Topic, Payload: append([]byte(nil), p.Payload...), Retain: p.Retain, QoS: p.QoS, At: time.Now()}
			if p.Properties != nil {
				m.Correlation = p.Properties.CorrelationData
				m.ContentType = p.Properties.ContentType
				m.Expiry = p.Properties.MessageExpiry
			}
			cl.mu.Lock()
			cl.msgs = append(cl.msgs, m)
			cl.cond.Broadcast()
			cl.mu.Unlock()
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: o.ID, KeepAlive: 30, CleanStart: true}
	if o.Username != "" {
		cp.Username, cp.UsernameFlag = o.Username, true
		cp.Password, cp.PasswordFlag = []byte(o.Password), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := cl.c.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("test client connect: %v", err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("test client connect: reason 0x%02x", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = cl.c.Disconnect(&paho.Disconnect{}) })
	return cl
}

// Subscribe subscribes at QoS 1 and waits for the SUBACK.
func (c *Client) Subscribe(filters ...string) {
	c.t.Helper()
	var opts []paho.SubscribeOptions
	for _, f := range filters {
		opts = append(opts, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil {
		c.t.Fatalf("subscribe %v: %v", filters, err)
	}
	for i, r := range sa.Reasons {
		if r >= 0x80 {
			c.t.Fatalf("subscribe %s refused: 0x%02x", filters[i], r)
		}
	}
}

// PublishOptions for Publish.
type PublishOptions struct {
	QoS           byte
	Retain        bool
	ResponseTopic string
	Correlation   []byte
	Expiry        uint32 // seconds; 0 = none
	Requester     string
	// User are more user properties (e.g. "not_after").
	User map[string]string
}

// Publish publishes and waits for the acknowledgement at QoS > 0.
func (c *Client) Publish(topic string, payload []byte, o PublishOptions) {
	c.t.Helper()
	if err := c.TryPublish(topic, payload, o); err != nil {
		c.t.Fatalf("publish %s: %v", topic, err)
	}
}

// TryPublish is Publish that returns the error (safe from any goroutine).
func (c *Client) TryPublish(topic string, payload []byte, o PublishOptions) error {
	p := &paho.Publish{Topic: topic, Payload: payload, QoS: o.QoS, Retain: o.Retain, Properties: &paho.PublishProperties{
		ResponseTopic: o.ResponseTopic, CorrelationData: o.Correlation}}
	if o.Expiry > 0 {
		e := o.Expiry
		p.Properties.MessageExpiry = &e
	}
	if o.Requester != "" {
		p.Properties.User = paho.UserProperties{{Key: "requester", Value: o.Requester}}
	}
	for k, v := range o.User {
		p.Properties.User = append(p.Properties.User, paho.UserProperty{Key: k, Value: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.c.Publish(ctx, p)
	return err
}

// Messages returns a copy of everything received so far.
func (c *Client) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.msgs...)
}

// Reset forgets the messages received so far.
func (c *Client) Reset() {
	c.mu.Lock()
	c.msgs = nil
	c.mu.Unlock()
}

// WaitFor waits until a received message satisfies match and returns it;
// the test fails after timeout.
func (c *Client) WaitFor(timeout time.Duration, what string, match func(Message) bool) Message {
	c.t.Helper()
	m, ok := c.Await(timeout, match)
	if !ok {
		var seen []string
		for _, m := range c.Messages() {
			seen = append(seen, fmt.Sprintf("%s %q retain=%v", m.Topic, truncate(m.Payload, 200), m.Retain))
		}
		c.t.Fatalf("timed out after %s waiting for %s; received:\n%s", timeout, what, strings.Join(seen, "\n"))
	}
	return m
}

// Await is WaitFor without failing: it reports whether a match arrived.
// match runs without the client's lock held, so it may call Messages.
func (c *Client) Await(timeout time.Duration, match func(Message) bool) (Message, bool) {
	deadline := time.Now().Add(timeout)
	wake := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer wake.Stop()
	seen := 0
	for {
		c.mu.Lock()
		if seen > len(c.msgs) {
			seen = 0 // Reset was called meanwhile
		}
		for seen >= len(c.msgs) && time.Now().Before(deadline) {
			c.cond.Wait()
		}
		batch := c.msgs[seen:len(c.msgs):len(c.msgs)]
		c.mu.Unlock()
		for _, m := range batch {
			if match(m) {
				return m, true
			}
		}
		seen += len(batch)
		if !time.Now().Before(deadline) {
			return Message{}, false
		}
	}
}

// Topic matches messages on one topic, optionally with a given payload.
func Topic(topic string, payload ...string) func(Message) bool {
	return func(m Message) bool {
		return m.Topic == topic && (len(payload) == 0 || string(m.Payload) == payload[0])
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
