package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/gorilla/websocket"
)

// dial opens the network connection for one connection attempt
// (autopaho's AttemptConnection): TCP, TLS, WebSockets or secure
// WebSockets, each wrapped in a packetConn (one write per MQTT packet) with
// TCP_QUICKACK re-armed after every read where the socket is TCP.
func dial(tlsCfg *tls.Config) func(ctx context.Context, cc autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
	return func(ctx context.Context, cc autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
		timeout := cc.ConnectTimeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var d net.Dialer
		switch strings.ToLower(u.Scheme) {
		case "mqtt", "tcp", "":
			c, err := d.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			return newPacketConn(c, quickAck(c)), nil
		case "mqtts", "ssl", "tls", "tcps", "mqtt+ssl":
			raw, err := d.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			cfg := tlsCfg.Clone()
			if cfg.ServerName == "" {
				cfg.ServerName = u.Hostname()
			}
			tc := tls.Client(raw, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = raw.Close()
				return nil, err
			}
			return newPacketConn(tc, quickAck(raw)), nil
		case "ws", "wss":
			var raw net.Conn
			wd := websocket.Dialer{
				TLSClientConfig:  tlsCfg,
				Subprotocols:     []string{"mqtt"},
				HandshakeTimeout: timeout,
				NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := d.DialContext(ctx, network, addr)
					raw = c
					return c, err
				},
			}
			ws, _, err := wd.DialContext(ctx, u.String(), nil)
			if err != nil {
				return nil, fmt.Errorf("websocket connection failed: %w", err)
			}
			return newPacketConn(&wsConn{Conn: ws}, quickAck(raw)), nil
		}
		return nil, fmt.Errorf("unsupported scheme %q in broker url %s (use mqtt, mqtts, ws or wss)", u.Scheme, u.Redacted())
	}
}

// wsConn is a net.Conn over a WebSocket: each Write is one binary message
// (packetConn makes that one message per MQTT packet), reads run across
// message boundaries.
type wsConn struct {
	*websocket.Conn
	rmu sync.Mutex
	r   io.Reader
}

func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
