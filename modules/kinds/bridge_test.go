package kinds_test

import (
	"encoding/json"
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
	dash := brokertest.Connect(t, remote.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash-secret"})
	dash.Subscribe("home/#")
	dash.WaitFor(wait, "bridge connected notification", brokertest.Topic("home/bridges/house/state", "1"))

	fake := gpio.NewFake()
	stats := pistats.Kind()
	stats.Section = pistats.SectionKey
	hello := `{"id":"demo","name":"Demo","commands":[{"id":"hello","name":"Say hello","argv":["/bin/echo","hello"],"user":"nobody"}]}`
	agenttest.Start(t, agenttest.Options{BrokerURL: local.URL, Prefix: "devices", DeviceID: "pib",
		Kinds: []modules.Kind{gpio.KindWith(fake), stats, picontrol.Kind()},
		Files: map[string]string{"apps/com.picockpit/picontrol/modules/demo.json": hello},
		Config: map[string]any{"host": map[string]any{"root": pi4Root(t)}, "stats": map[string]any{"interval": "1s"},
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

	// ... the flow's way (Response Topic from reply_prefix, listening on the
	// seen prefix) is answered.
	dash.Publish(seenBase+"gpio/17/set", []byte(`{"value":1}`), brokertest.PublishOptions{QoS: 1, Expiry: 10,
		ResponseTopic: info.ReplyPrefix + "node-red/c1", Correlation: []byte("c1"), Requester: "node-red"})
	r := dash.WaitFor(wait, "set reply through the bridge", brokertest.Topic(seenBase+"reply/node-red/c1"))
	if string(r.Correlation) != "c1" || !strings.Contains(string(r.Payload), `"status":"ok"`) {
		t.Fatalf("set reply %s correlation %q", r.Payload, r.Correlation)
	}
	if fake.Level("GPIO17") != 1 {
		t.Error("relay not on")
	}
	dash.Publish(seenBase+"picontrol/run/demo/hello", []byte(`{}`), brokertest.PublishOptions{QoS: 1, Expiry: 10,
		ResponseTopic: info.ReplyPrefix + "node-red/c2", Correlation: []byte("c2")})
	dash.WaitFor(wait, "command result through the bridge", func(m brokertest.Message) bool {
		return m.Topic == seenBase+"reply/node-red/c2" && strings.Contains(string(m.Payload), `"status":"done"`)
	})
	// No loop: each request crossed the bridge once.
	n := 0
	for _, m := range dash.Messages() {
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
	for {
		fresh := brokertest.Connect(t, remote.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash-secret"})
		fresh.Subscribe(seenBase+"status", seenBase+"stats")
		st := fresh.WaitFor(wait, "retained status", brokertest.Topic(seenBase+"status"))
		if string(st.Payload) != "online" {
			t.Fatalf("status on the remote = %q; the point is that it stays online", st.Payload)
		}
		if _, ok := fresh.Await(300*time.Millisecond, brokertest.Topic(seenBase+"stats")); !ok {
			break // expired
		}
		if time.Now().After(deadline) {
			t.Fatal("stats still retained on the remote long after the local broker died")
		}
		time.Sleep(500 * time.Millisecond)
	}
}
