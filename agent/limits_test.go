package agent

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{strings.Repeat("a", 20), 10, "aaaaaaaaaa... (20 bytes)"},
		{"ééééé", 3, "é... (10 bytes)"}, // never cuts a rune in half
	} {
		if got := clip(tc.in, tc.n); got != tc.want {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestPacketSize(t *testing.T) {
	p := &paho.Publish{Topic: "a/b", QoS: 1, Payload: []byte("hello"), Properties: &paho.PublishProperties{}}
	// fixed header 2 + topic 2+3 + packet id 2 + properties length 1 + payload 5
	if got := packetSize(p); got != 15 {
		t.Errorf("packetSize = %d, want 15", got)
	}
	p.QoS = 0
	if got := packetSize(p); got != 13 {
		t.Errorf("QoS 0 packetSize = %d, want 13", got)
	}
}

func TestShrinkToFit(t *testing.T) {
	reply := func(out, errOut string) *paho.Publish {
		b, _ := json.Marshal(map[string]any{"status": "done", "seq": 2, "stdout": out, "stderr": errOut})
		return &paho.Publish{Topic: "picockpit/d/reply/x", QoS: 1, Payload: b,
			Properties: &paho.PublishProperties{CorrelationData: []byte("c"), ContentType: "application/json"}}
	}
	for _, tc := range []struct {
		name     string
		p        *paho.Publish
		limit    int
		fits     bool
		truncate bool
	}{
		{"already fits", reply("a", "b"), 1000, true, false},
		{"output cut", reply(strings.Repeat("o", 70000), strings.Repeat("e", 70000)), 131072, true, true},
		{"tiny limit", reply(strings.Repeat("o", 5000), strings.Repeat("e", 100)), 1024, true, true},
		{"escaped output", reply(strings.Repeat("\x01", 5000), ""), 1024, true, true},
		{"no output to cut", &paho.Publish{Topic: "t", QoS: 1, Payload: []byte(`{"status":"ok","x":"` + strings.Repeat("x", 2000) + `"}`), Properties: &paho.PublishProperties{}}, 1024, false, false},
		{"not JSON", &paho.Publish{Topic: "t", QoS: 1, Payload: []byte(strings.Repeat("x", 2000)), Properties: &paho.PublishProperties{}}, 1024, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fits := shrinkToFit(tc.p, tc.limit)
			if fits != tc.fits {
				t.Fatalf("fits = %v, want %v", fits, tc.fits)
			}
			if !fits {
				return
			}
			if size := packetSize(tc.p); size > tc.limit {
				t.Errorf("packet is %d bytes, limit %d", size, tc.limit)
			}
			var m map[string]any
			if err := json.Unmarshal(tc.p.Payload, &m); err != nil {
				t.Fatal(err)
			}
			if got := m["truncated"] == true; got != tc.truncate {
				t.Errorf("truncated = %v, want %v", got, tc.truncate)
			}
			if m["status"] != "done" || m["seq"] != float64(2) {
				t.Errorf("other fields changed: %v", m)
			}
			if tc.truncate && tc.limit > 100000 && len(m["stdout"].(string)) < 60000 {
				t.Errorf("cut more than needed: %d bytes of stdout left", len(m["stdout"].(string)))
			}
		})
	}
}

func TestSeenRing(t *testing.T) {
	r := newSeenRing(4)
	r.add(1, 100)
	r.add(2, 200)
	if !r.contains(1, 100) || r.contains(1, 101) || r.contains(3, 100) {
		t.Error("lookup by id and hash")
	}
	for i := uint16(10); i < 14; i++ {
		r.add(i, uint64(i))
	}
	if r.contains(1, 100) {
		t.Error("the oldest entry survived a full ring")
	}
	if !r.contains(13, 13) {
		t.Error("the newest entry is missing")
	}
}
