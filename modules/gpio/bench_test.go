package gpio

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

// BenchmarkPWMJitter runs software PWM (duty 0.5) on a fake line for b.N
// periods and reports the error of each period (time between successive
// rising edges minus the nominal period) and of each falling edge against
// its schedule, as p50/p99/max in microseconds. ns/op is the period.
func BenchmarkPWMJitter(b *testing.B) {
	for _, freq := range []float64{100, 1000} {
		b.Run(fmt.Sprintf("%gHz", freq), func(b *testing.B) {
			fake := NewFake()
			l, err := fake.Request(LineSpec{Name: "GPIO18", Direction: Output})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			pw := newSoftPWM(l, nil)
			b.ResetTimer()
			if err := pw.Set(freq, 0.5); err != nil {
				b.Fatal(err)
			}
			for risingEdges(fake.Writes("GPIO18")) < b.N+2 {
				time.Sleep(5 * time.Millisecond)
			}
			_ = pw.Close()
			b.StopTimer()
			report(b, cycles(fake.Writes("GPIO18")), freq, 0.5)
			b.ReportMetric(float64(pw.overruns.Load()), "overruns")
		})
	}
}

func report(b *testing.B, cs []pwmCycle, freq, duty float64) {
	period := 1e9 / freq
	var perErr, fallErr, dutyErr []float64
	for _, c := range cs {
		perErr = append(perErr, math.Abs(float64(c.period())-period)/1e3)
		fallErr = append(fallErr, math.Abs(float64(c.high())-duty*period)/1e3)
		dutyErr = append(dutyErr, math.Abs(c.duty()-duty))
	}
	b.ReportMetric(quantile(perErr, 0.5), "p50-period-err-µs")
	b.ReportMetric(quantile(perErr, 0.99), "p99-period-err-µs")
	b.ReportMetric(quantile(perErr, 1), "max-period-err-µs")
	b.ReportMetric(quantile(fallErr, 0.5), "p50-high-err-µs")
	b.ReportMetric(quantile(fallErr, 0.99), "p99-high-err-µs")
	b.ReportMetric(quantile(dutyErr, 0.5), "p50-duty-err")
}

// BenchmarkSetState measures a set request through the in-memory bus to the
// reply that carries the new state (the retained state is published before
// the reply).
func BenchmarkSetState(b *testing.B) {
	fake := NewFake()
	mod, probs := KindWith(fake).Load(modules.Env{}, []byte(relayCfg), "config.json", nil)
	if len(probs) > 0 {
		b.Fatal(probs)
	}
	bus := bustest.New()
	defer bus.Close()
	if err := mod.Start(context.Background(), bus); err != nil {
		b.Fatal(err)
	}
	defer mod.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := &modules.Request{Topic: "gpio/17/set", Payload: []byte(fmt.Sprint(i & 1)),
			ResponseTopic: "picockpit/dev/reply/b", CorrelationData: []byte(fmt.Sprint(i))}
		for !bus.Inject(req) {
			time.Sleep(time.Microsecond)
		}
		want := uint64(i + 2)
		if !bus.WaitFor(10*time.Second, func(msgs []bustest.Message) bool {
			m := msgs[len(msgs)-1]
			return m.Reply && string(m.Correlation) == fmt.Sprint(i)
		}) {
			b.Fatalf("no reply to set %d", i)
		}
		if st, ok := bus.Retained(contract.TopicGPIOState("17")); !ok || len(st.Payload) == 0 {
			b.Fatalf("no state for seq %d", want)
		}
	}
}
