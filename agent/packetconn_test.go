package agent_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/modules"
)

// tlsCapture is a TCP proxy in front of a TLS listener that counts the TLS
// records (and their bytes) the client sends: a capture of what the agent
// puts on the wire.
type tlsCapture struct {
	l       net.Listener
	target  string
	mu      sync.Mutex
	records int
	bytes   int
}

func newTLSCapture(t *testing.T, target string) *tlsCapture {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &tlsCapture{l: l, target: target}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			go func() { _, _ = io.Copy(in, out); in.Close() }()
			go c.count(in, out)
		}
	}()
	return c
}

// count forwards client -> server, record by record.
func (c *tlsCapture) count(in, out net.Conn) {
	defer out.Close()
	hdr := make([]byte, 5)
	for {
		if _, err := io.ReadFull(in, hdr); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[3:5]))
		body := make([]byte, n)
		if _, err := io.ReadFull(in, body); err != nil {
			return
		}
		if hdr[0] == 23 { // application data
			c.mu.Lock()
			c.records++
			c.bytes += 5 + n
			c.mu.Unlock()
		}
		if _, err := out.Write(append(hdr, body...)); err != nil {
			return
		}
	}
}

func (c *tlsCapture) snapshot() (records, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records, c.bytes
}

// TestOneTLSRecordPerPacket: over TLS every MQTT packet the agent sends is
// one TLS record (paho writes a packet as four buffers; without the
// agent's packet writer that is four records and four segments).
func TestOneTLSRecordPerPacket(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{TLS: true})
	u := b.TLSURL[len("mqtts://"):]
	capture := newTLSCapture(t, u)
	pk := &probeKind{}
	_, port, _ := net.SplitHostPort(capture.l.Addr().String())
	a := agenttest.Start(t, agenttest.Options{BrokerURL: "mqtts://localhost:" + port, Kinds: []modules.Kind{pk.kind()},
		Config: map[string]any{"broker": map[string]any{"ca_file": b.Certs.CAFile}}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	reply := a.Topic("reply/tls")
	c.Subscribe(reply)
	r0, b0 := capture.snapshot()
	const n = 50
	for i := range n {
		c.Publish(a.Topic("probe/x"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte(fmt.Sprint(i))})
		c.WaitFor(wait, "answer", func(m brokertest.Message) bool { return string(m.Correlation) == fmt.Sprint(i) })
	}
	// Per request the agent sends two packets: the PUBACK of the request
	// and the reply PUBLISH; start-up publishes (info, the started event)
	// and a keepalive ping may add a few. The last PUBACK may still be on
	// its way when the last answer arrived: wait until 2n records passed.
	r1, b1 := capture.snapshot()
	for deadline := time.Now().Add(wait); r1-r0 < 2*n && time.Now().Before(deadline); r1, b1 = capture.snapshot() {
		time.Sleep(5 * time.Millisecond)
	}
	records := r1 - r0
	if records < 2*n || records > 2*n+8 {
		t.Errorf("%d TLS records for %d requests (2 packets each): want one record per packet", records, n)
	}
	t.Logf("%d requests: %d TLS records, %d bytes from the agent (%.1f bytes per packet)", n, records, b1-b0, float64(b1-b0)/float64(records))
}
