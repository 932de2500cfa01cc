package brokertest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of a broker that can turn into a black
// hole: connections stay open but nothing gets through, as when a Pi's Wi-Fi
// drops without a FIN. Both sides must then notice through keepalive.
type Proxy struct {
	URL string // mqtt://127.0.0.1:port of the proxy

	l      net.Listener
	target string
	mu     sync.Mutex
	hole   bool
	conns  []net.Conn
	down   []byte // what went from the broker to clients, up to maxDown
}

// maxDown bounds what Forwarded can see.
const maxDown = 1 << 20

// NewProxy listens on a free loopback port and forwards to the broker's
// plain mqtt:// listener. It closes at the end of the test.
func NewProxy(t testing.TB, b *Broker) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{URL: fmt.Sprintf("mqtt://%s", l.Addr()), l: l, target: b.URL[len("mqtt://"):]}
	go p.accept()
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

// Blackhole starts (true) or ends (false) dropping everything silently.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hole = on
}

// Cut closes every connection through the proxy, as a broker or a NAT
// that drops them; new connections are forwarded as before.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Forwarded reports whether the bytes the proxy passed from the broker to
// its clients contain sub (the first MiB only).
func (p *Proxy) Forwarded(sub []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Contains(p.down, sub)
}

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.pipe(c, u, false)
		go p.pipe(u, c, true)
	}
}

// pipe copies src to dst; while the proxy is a black hole, what is read is
// dropped, so the sender's TCP sees its data acknowledged but no answer.
func (p *Proxy) pipe(src, dst net.Conn, down bool) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			hole := p.hole
			if down && !hole && len(p.down)+n <= maxDown {
				p.down = append(p.down, buf[:n]...)
			}
			p.mu.Unlock()
			if !hole {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				_ = src.Close()
			}
			return
		}
	}
}
