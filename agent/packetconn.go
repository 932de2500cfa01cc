package agent

import (
	"net"
	"sync"
)

// packetConn sends every MQTT packet with one Write on the connection
// beneath. paho writes a packet as several buffers (fixed header, variable
// header, properties, payload) and locks the connection around them when it
// implements sync.Locker; packetConn collects the buffers between Lock and
// Unlock and writes them at Unlock. Over TLS that makes one TLS record (and
// usually one TCP segment) per packet instead of four; over WebSockets one
// frame per packet.
//
// Every write paho makes goes through packets.ControlPacket.WriteTo, which
// takes the lock; a Write without the lock is passed straight through
// (under the lock, so it cannot interleave with a packet).
type packetConn struct {
	net.Conn
	mu      sync.Mutex
	held    bool
	buf     []byte
	err     error
	onRead  func() // re-arms TCP_QUICKACK (Linux); may be nil
	maxKeep int
}

func newPacketConn(c net.Conn, onRead func()) *packetConn {
	return &packetConn{Conn: c, onRead: onRead, maxKeep: 64 << 10}
}

// Lock starts a packet.
func (c *packetConn) Lock() {
	c.mu.Lock()
	c.held = true
	c.buf = c.buf[:0]
	c.err = nil
}

// Unlock writes the collected packet in one Write and ends it. On a write
// error the connection is closed, so that paho's reader notices at once
// (the packet is lost as it would be on a broken link; QoS 1 packets are
// sent again after the reconnect).
func (c *packetConn) Unlock() {
	if len(c.buf) > 0 {
		if _, err := c.Conn.Write(c.buf); err != nil {
			c.err = err
			_ = c.Conn.Close()
		}
	}
	if cap(c.buf) > c.maxKeep {
		c.buf = nil // do not keep a large packet's buffer for ever
	}
	c.held = false
	c.mu.Unlock()
}

// Write appends to the current packet, or writes through when no packet is
// being collected.
func (c *packetConn) Write(p []byte) (int, error) {
	if c.held {
		if c.err != nil {
			return 0, c.err
		}
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

// Read reads and re-arms TCP_QUICKACK: the kernel clears it by itself, and
// a delayed ACK of the broker's data holds back its next small write
// behind Nagle's algorithm (about 40 ms per request on a default Mosquitto).
func (c *packetConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.onRead != nil && n > 0 {
		c.onRead()
	}
	return n, err
}
