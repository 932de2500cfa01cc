package agent

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/paho"
)

// Limits on what arrives from the broker. Everything is checked in the
// receive callback, before anything is stored or queued.
const (
	// MaxRequestPayload is the largest request payload a module is handed
	// (PiControl's own limit; GPIO and stats requests are far smaller).
	MaxRequestPayload = 64 << 10
	// MaxRequestTopic is the longest request topic (full MQTT topic) that is
	// handled; longer ones are refused without echoing the topic in full.
	MaxRequestTopic = 1 << 10
	// MaxCorrelationData is the largest Correlation Data the agent echoes;
	// larger requests are answered rejected (without their correlation data).
	MaxCorrelationData = 1 << 10
	// MaxResponseTopic is the longest Response Topic the agent answers on.
	MaxResponseTopic = 1 << 10
	// MaxUserProperties caps the user properties read from a request (bytes
	// of keys and values together).
	MaxUserProperties = 4 << 10

	// maxPacketSize is the CONNECT Maximum Packet Size: bigger requests are
	// dropped by the broker (MQTT 5 §3.1.2.11.4) and never reach the agent;
	// everything up to it is read, checked and answered "rejected" when too
	// large (the payload is dropped at once, so the memory is transient).
	// It is well above what modules accept, on purpose: Mosquitto 2.0.11
	// keeps a receive slot for every QoS 1 message it drops for being too
	// large, so 64 such messages (receiveMaximum) would cut the agent off
	// from all requests until it reconnects; a clear "rejected" is better for
	// everything short of an attack. paho buffers at most receiveMaximum
	// packets between the socket and the router.
	maxPacketSize = 512 << 10

	// logStringLimit truncates attacker-controlled strings in logs and events.
	logStringLimit = 128
)

// clip truncates s to about n bytes (on a rune boundary) for logs and
// events, saying how long it was.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:cut], len(s))
}

// counter counts bytes written (the size of an encoded packet, without
// copying the payload).
type counter int

func (c *counter) Write(p []byte) (int, error) { *c += counter(len(p)); return len(p), nil }

// packetSize is the encoded size of a PUBLISH packet, as the broker's
// Maximum Packet Size counts it (whole packet, with a packet identifier
// when QoS > 0).
func packetSize(p *paho.Publish) int {
	pk := p.Packet()
	if p.QoS > 0 && pk.PacketID == 0 {
		pk.PacketID = 1
	}
	var c counter
	if _, err := pk.ToControlPacket().WriteTo(&c); err != nil {
		return int(^uint(0) >> 1)
	}
	return int(c)
}

// shrinkToFit tries to make a response fit into limit bytes as the contract
// allows: captured command output (stdout, stderr) is cut and the reply
// says truncated: true. It returns false when the packet cannot be made to
// fit (it is then not sent).
func shrinkToFit(p *paho.Publish, limit int) bool {
	size := packetSize(p)
	if size <= limit {
		return true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(p.Payload, &m) != nil {
		return false
	}
	var out, errOut string
	_ = json.Unmarshal(m["stdout"], &out)
	_ = json.Unmarshal(m["stderr"], &errOut)
	if len(out)+len(errOut) == 0 {
		return false
	}
	// The largest share of the output that fits (JSON escaping makes the
	// encoded text longer than the raw bytes, so measure, don't compute).
	try := func(budget int) []byte {
		o, e := cutPair(out, errOut, budget)
		m["stdout"], _ = json.Marshal(o)
		m["stderr"], _ = json.Marshal(e)
		m["truncated"] = json.RawMessage("true")
		b, _ := json.Marshal(m)
		return b
	}
	fits := func(b []byte) bool {
		q := *p
		q.Payload = b
		return packetSize(&q) <= limit
	}
	best := try(0)
	if !fits(best) {
		return false
	}
	lo, hi := 0, len(out)+len(errOut)-1 // lo fits; above hi is the original, too large
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if b := try(mid); fits(b) {
			lo, best = mid, b
		} else {
			hi = mid - 1
		}
	}
	p.Payload = best
	return true
}

// cutPair shortens a and b to budget bytes in total, each keeping a share
// proportional to its length.
func cutPair(a, b string, budget int) (string, string) {
	if budget <= 0 {
		return "", ""
	}
	total := len(a) + len(b)
	if total <= budget {
		return a, b
	}
	na := budget * len(a) / total
	nb := budget - na
	return cutUTF8(a, na), cutUTF8(b, nb)
}

func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
