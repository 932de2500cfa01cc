package brokertest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener is a mochi listener for MQTT over WebSocket on a socket the
// test opened (mochi's own one binds an address itself, so it cannot use
// port 0 and tell which port it got).
type wsListener struct {
	id        string
	l         net.Listener
	srv       *http.Server
	establish listeners.EstablishFn
	log       *slog.Logger
	closeOnce sync.Once
}

func newWSListener(id string, l net.Listener) *wsListener {
	return &wsListener{id: id, l: l}
}

func (w *wsListener) ID() string       { return w.id }
func (w *wsListener) Address() string  { return w.l.Addr().String() }
func (w *wsListener) Protocol() string { return w.id }

func (w *wsListener) Init(log *slog.Logger) error {
	w.log = log
	up := &websocket.Upgrader{Subprotocols: []string{"mqtt"}, CheckOrigin: func(*http.Request) bool { return true }}
	w.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(rw, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if err := w.establish(w.id, &wsConn{Conn: c.UnderlyingConn(), ws: c}); err != nil {
			w.log.Debug("websocket client", "error", err)
		}
	})}
	return nil
}

func (w *wsListener) Serve(establish listeners.EstablishFn) {
	w.establish = establish
	if err := w.srv.Serve(w.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		w.log.Error("websocket listener", "error", err, "listener", w.id)
	}
}

func (w *wsListener) Close(closeClients listeners.CloseFn) {
	w.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.srv.Shutdown(ctx)
	})
	closeClients(w.id)
}

// wsConn turns binary WebSocket messages into the byte stream mochi reads.
type wsConn struct {
	net.Conn
	ws  *websocket.Conn
	cur io.Reader // the message being read, nil between messages
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.cur == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			c.cur = r
		}
		n, err := c.cur.Read(p)
		if errors.Is(err, io.EOF) {
			c.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
