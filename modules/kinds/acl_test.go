package kinds_test

import (
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules/kinds"
)

// TestGeneratedACLIsEnough runs the agent with every module kind behind the
// ACL that `picockpit-client acl --pattern` generates: it can subscribe and
// publish all it needs, the frontend can read everything and send requests,
// and the frontend cannot overwrite the device's status.
func TestGeneratedACLIsEnough(t *testing.T) {
	for _, pattern := range []bool{true, false} {
		acl := contract.MosquittoACL("picockpit", "pi1", "pi1", "dashboard", pattern)
		b := brokertest.Mosquitto(t, brokertest.Options{Users: map[string]string{"pi1": "device-secret", "dashboard": "dash-secret"}, ACL: acl})
		a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, DeviceID: "pi1", Kinds: kinds.All(),
			Config: map[string]any{
				"broker": map[string]any{"username": "pi1", "password": "device-secret"},
				"host":   map[string]any{"root": pi4Root(t)},
				"gpio":   map[string]any{"backend": "fake", "pins": []any{map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0}}},
			}})
		d := brokertest.Connect(t, b.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash-secret"})
		d.Subscribe("picockpit/#")
		d.WaitFor(wait, "retained online", brokertest.Topic(a.Topic("status"), "online"))
		d.WaitFor(wait, "gpio pins", brokertest.Topic(a.Topic("gpio/pins")))
		d.WaitFor(wait, "picontrol catalogue", brokertest.Topic(a.Topic("picontrol/commands")))

		d.Publish(a.Topic("gpio/17/set"), []byte("on"), brokertest.PublishOptions{QoS: 1})
		d.WaitFor(wait, "relay on", func(m brokertest.Message) bool {
			return m.Topic == a.Topic("gpio/17/state") && strings.Contains(string(m.Payload), `"value":1`)
		})
		d.Publish(a.Topic("stats/refresh"), nil, brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/dash"), Correlation: []byte("r")})
		d.WaitFor(wait, "refresh reply", brokertest.Topic(a.Topic("reply/dash")))

		// Not allowed: a frontend overwriting the device's status.
		_ = d.TryPublish(a.Topic("status"), []byte("offline"), brokertest.PublishOptions{QoS: 1, Retain: true})
		time.Sleep(200 * time.Millisecond)
		fresh := brokertest.Connect(t, b.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash-secret"})
		fresh.Subscribe(a.Topic("status"))
		if m := fresh.WaitFor(wait, "status", brokertest.Topic(a.Topic("status"))); string(m.Payload) != "online" {
			t.Errorf("pattern=%v: the frontend could overwrite the status: %q", pattern, m.Payload)
		}
		if strings.Contains(a.Logs.String(), "refused subscription") {
			t.Errorf("pattern=%v: the ACL refused one of the agent's subscriptions:\n%s", pattern, a.Logs.String())
		}
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}
