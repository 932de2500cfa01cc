package kinds_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/gpio"
	"github.com/picockpit/picockpit-client/modules/picontrol"
)

func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	pct := func(p float64) float64 {
		i := int(p * float64(len(d)-1))
		return float64(d[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// nagle runs f with Mosquitto's default (set_tcp_nodelay false) and with
// set_tcp_nodelay true: most users never change the default.
func nagle(b *testing.B, f func(b *testing.B, br *brokertest.Broker)) {
	for _, n := range []bool{false, true} {
		name := "nodelay"
		if n {
			name = "mosquitto-default-nagle"
		}
		b.Run(name, func(b *testing.B) { f(b, brokertest.Mosquitto(b, brokertest.Options{Nagle: n})) })
	}
}

// BenchmarkGPIOSetToState: publish gpio/17/set, wait for the state with the
// new value on a subscriber.
func BenchmarkGPIOSetToState(b *testing.B) {
	nagle(b, func(b *testing.B, br *brokertest.Broker) {
		fake := gpio.NewFake()
		a := agenttest.Start(b, agenttest.Options{BrokerURL: br.URL, Kinds: []modules.Kind{gpio.KindWith(fake)},
			Config: gpioConfig(map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0})})
		c := brokertest.Connect(b, br.URL, brokertest.ClientOptions{})
		topic := a.Topic("gpio/17/state")
		c.Subscribe(topic)
		c.WaitFor(wait, "initial", brokertest.Topic(topic))
		d := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			v := (i + 1) % 2
			want := fmt.Sprintf(`"value":%d`, v)
			c.Reset()
			t0 := time.Now()
			c.Publish(a.Topic("gpio/17/set"), []byte(fmt.Sprint(v)), brokertest.PublishOptions{QoS: 1})
			m := c.WaitFor(wait, "state", func(m brokertest.Message) bool {
				return m.Topic == topic && strings.Contains(string(m.Payload), want)
			})
			d = append(d, m.At.Sub(t0))
		}
		b.StopTimer()
		reportPercentiles(b, d)
	})
}

// BenchmarkPiControlTrueRoundTrip: request picontrol/run/bench/true with a
// response topic, wait for the final "done" (a short command gets only that).
func BenchmarkPiControlTrueRoundTrip(b *testing.B) {
	runAs := "root"
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			b.Fatal(err)
		}
		runAs = u.Username
	}
	module := fmt.Sprintf(`{"id":"bench","name":"Bench","commands":[{"id":"true","name":"True","argv":["/bin/true"],"user":%q,"concurrency":"queue"}]}`, runAs)
	nagle(b, func(b *testing.B, br *brokertest.Broker) {
		a := agenttest.Start(b, agenttest.Options{BrokerURL: br.URL, Kinds: []modules.Kind{picontrol.Kind()},
			Files: map[string]string{"apps/com.picockpit/picontrol/modules/bench.json": module}})
		c := brokertest.Connect(b, br.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("reply/#"))
		d := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			corr := []byte(fmt.Sprint(i))
			c.Reset()
			t0 := time.Now()
			c.Publish(a.Topic("picontrol/run/bench/true"), nil, brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/bench"), Correlation: corr})
			m := c.WaitFor(wait, "done", func(m brokertest.Message) bool {
				if string(m.Correlation) != string(corr) {
					return false
				}
				var r struct{ Status string }
				_ = json.Unmarshal(m.Payload, &r)
				return r.Status == "done" || r.Status == "failed" || r.Status == "rejected"
			})
			if !strings.Contains(string(m.Payload), `"done"`) {
				b.Fatalf("answer %s", m.Payload)
			}
			d = append(d, m.At.Sub(t0))
		}
		b.StopTimer()
		reportPercentiles(b, d)
	})
}
