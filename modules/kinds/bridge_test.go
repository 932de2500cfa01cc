package kinds_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/gpio"
	"github.com/picockpit/picockpit-client/modules/picontrol"
	"github.com/picockpit/picockpit-client/modules/pistats"
)

// bridgeConf returns the bridge section of docs/bridging.md with the
// remote's address, CA and password filled in.
func bridgeConf(t *testing.T, remote *brokertest.Broker, password string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "bridging.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "```conf\n# picockpit bridge (local side)\n")
	if start < 0 {
		t.Fatal("docs/bridging.md has no bridge configuration block")
	}
	block := doc[start+len("```conf\n"):]
	block = block[:strings.Index(block, "```")]
	host := strings.TrimPrefix(remote.TLSURL, "mqtts://")
	for _, r := range [][2]string{{"remote.example.net:8883", host}, {"/etc/mosquitto/certs/remote-ca.pem", remote.Certs.CAFile}, {"CHANGE-ME", password}} {
		if !strings.Contains(block, r[0]) {
			t.Fatalf("bridge configuration has no %q", r[0])
		}
		block = strings.ReplaceAll(block, r[0], r[1])
	}
	return block
}

// TestBridgeOverTLS: an agent on a local Mosquitto bridged over TLS (the
// configuration of docs/bridging.md) to a remote Mosquitto. A dashboard on
// the remote sees the Pi under home/, and requests whose Response Topic is
// built from info's reply_prefix (as the shipped flow does) are answered;
// one built from the topic the dashboard sees is refused. When the local
// broker dies, the bridge notification says so while the retained status
// stays "online", and the stats expire.
func TestBridgeOverTLS(t *testing.T) {
	remote := brokertest.Mosquitto(t, brokertest.Options{TLS: true,
		Users: map[string]string{"house-bridge": "bridge-secret", "dashboard": "dash-secret"}})
	local := brokertest.MosquittoBridged(t, brokertest.Options{}, bridgeConf(t, remote, "bridge-secret"))
	// The dashboard subscribes as the shipped flow does with
	// PICOCKPIT_PREFIX=home/devices.
	sub, _ := flowRun(t, map[string]string{"PICOCKPIT_PREFIX": "home/devices"}, nil)
	filters := []string{"home/bridges/+/state"}
	for _, s := range sub["topic"].([]any) {
		filters = append(filters, s.(map[string]any)["topic"].(string))
	}
	dash := brokertest.Connect(t, remote.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash-secret"})
	dash.Subscribe(filters...)
	dash.WaitFor(wait, "bridge connected notification", brokertest.Topic("home/bridges/house/state", "1"))
	obs := brokertest.Connect(t, remote.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash-secret"})
	obs.Subscribe("home/devices/+/gpio/+/set")

	fake := gpio.NewFake()
	// A 300ms interval: its Message Expiry (3 intervals) is rounded up to
	// 1s, so the expiry at the end takes about a second, not three.
	stats := pistats.KindForTests(300 * time.Millisecond)
	stats.Section = pistats.SectionKey
	hello := `{"id":"demo","name":"Demo","commands":[{"id":"hello","name":"Say hello","argv":["/bin/echo","hello"],"user":"nobody"}]}`
	agenttest.Start(t, agenttest.Options{BrokerURL: local.URL, Prefix: "devices", DeviceID: "pib",
		Kinds: []modules.Kind{gpio.KindWith(fake), stats, picontrol.Kind()},
		Files: map[string]string{"apps/com.picockpit/picontrol/modules/demo.json": hello},
		Config: map[string]any{"host": map[string]any{"root": pi4Root(t)}, "stats": map[string]any{"interval": "300ms"},
			"gpio": map[string]any{"backend": "fake", "pins": []any{map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0}}}}})

	// The dashboard learns the Pi from the remapped retained info.
	m := dash.WaitFor(wait, "info through the bridge", brokertest.Topic("home/devices/pib/info"))
	var info contract.Info
	if err := json.Unmarshal(m.Payload, &info); err != nil {
		t.Fatal(err)
	}
	if info.ReplyPrefix != "devices/pib/reply/" {
		t.Fatalf("info.reply_prefix = %q, want the agent's own devices/pib/reply/", info.ReplyPrefix)
	}
	seenBase := strings.TrimSuffix(m.Topic, "info") // home/devices/pib/

	// The naive way (Response Topic from the topic seen) is refused ...
	dash.Publish(seenBase+"gpio/17/set", []byte(`{"value":1}`), brokertest.PublishOptions{QoS: 1, Expiry: 10,
		ResponseTopic: seenBase + "reply/node-red/naive", Correlation: []byte("naive")})
	dash.WaitFor(wait, "refusal event through the bridge", func(m brokertest.Message) bool {
		return m.Topic == seenBase+"events" && strings.Contains(string(m.Payload), "must start with devices/pib/reply/")
	})
	if fake.Level("GPIO17") != 0 {
		t.Fatal("a request with a refused response topic ran")
	}

	// ... the flow's way (its model and request builder, run in node) is
	// answered, on a topic its reply subscription covers.
	var infoDoc any
	_ = json.Unmarshal(m.Payload, &infoDoc)
	_, reqs := flowRun(t, map[string]string{"PICOCKPIT_PREFIX": "home/devices"}, []any{
		map[string]any{"topic": seenBase + "status", "payload": "online"},
		map[string]any{"topic": seenBase + "info", "payload": infoDoc},
		map[string]any{"action": "set", "id": "pib", "pin": "17", "body": map[string]any{"value": 1}},
		map[string]any{"action": "run", "id": "pib", "module": "demo", "command": "hello"},
	})
	if len(reqs) != 2 {
		t.Fatalf("the flow built %d requests, want 2: %v", len(reqs), reqs)
	}
	for i, want := range []string{`"status":"ok"`, `"status":"done"`} {
		r := reqs[i]
		rt, _ := r["responseTopic"].(string)
		corr, _ := r["correlationData"].(string)
		exp, _ := r["messageExpiryInterval"].(float64)
		if !strings.HasPrefix(rt, info.ReplyPrefix) || corr == "" || exp <= 0 || exp > 60 {
			t.Fatalf("flow request %v: want a Response Topic under %s, correlation data and a short expiry", r, info.ReplyPrefix)
		}
		dash.Publish(r["topic"].(string), []byte(r["payload"].(string)), brokertest.PublishOptions{QoS: 1, Expiry: uint32(exp),
			ResponseTopic: rt, Correlation: []byte(corr), Requester: "node-red"})
		dash.WaitFor(wait, "answer to the flow's request "+r["topic"].(string), func(m brokertest.Message) bool {
			return string(m.Correlation) == corr && m.Topic == seenBase+strings.TrimPrefix(rt, "devices/pib/") && strings.Contains(string(m.Payload), want)
		})
	}
	if fake.Level("GPIO17") != 1 {
		t.Error("relay not on")
	}
	// No loop: each request crossed the bridge once.
	n := 0
	for _, m := range obs.Messages() {
		if m.Topic == seenBase+"gpio/17/set" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("the remote saw %d set requests, want the 2 sent (a bridge loop echoes them)", n)
	}

	// The local broker dies: the bridge state turns 0, the retained status
	// still says online, and the stats expire.
	dash.WaitFor(wait, "stats through the bridge", brokertest.Topic(seenBase+"stats"))
	local.Kill()
	dash.WaitFor(wait, "bridge down notification", brokertest.Topic("home/bridges/house/state", "0"))
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		// A new subscriber gets the retained messages before anything
		// published after its SUBACK: the marker comes after all of them.
		fresh := brokertest.Connect(t, remote.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash-secret"})
		marker := fmt.Sprintf("test/retained-marker/%d", i)
		fresh.Subscribe(seenBase+"status", seenBase+"stats", marker)
		fresh.Publish(marker, []byte("m"), brokertest.PublishOptions{QoS: 1})
		fresh.WaitFor(wait, "marker after the retained messages", brokertest.Topic(marker))
		var status []byte
		stats := false
		for _, m := range fresh.Messages() {
			switch m.Topic {
			case seenBase + "status":
				status = m.Payload
			case seenBase + "stats":
				stats = true
			}
		}
		if string(status) != "online" {
			t.Fatalf("retained status on the remote = %q; the point is that it stays online", status)
		}
		if !stats {
			break // expired
		}
		if time.Now().After(deadline) {
			t.Fatal("stats still retained on the remote long after the local broker died")
		}
		time.Sleep(100 * time.Millisecond) // the broker expires by the second
	}
}
