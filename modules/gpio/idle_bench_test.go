package gpio

import (
	"context"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

// idleWindow is how long BenchmarkIdlePWM watches each case; set
// PICOCKPIT_BENCH_IDLE (a Go duration) to change it.
func idleWindow(b *testing.B) time.Duration {
	if v := os.Getenv("PICOCKPIT_BENCH_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("PICOCKPIT_BENCH_IDLE: %v", err)
		}
		return d
	}
	return 10 * time.Second
}

// BenchmarkIdlePWM runs the GPIO module (fake lines) idle for a window, with
// a software-PWM pin at duty 0 and, as the floor, with a plain output pin
// instead, and reports the process's CPU time (ms per minute) and context
// switches per second over the window. A parked PWM pin should cost
// nothing over the floor.
func BenchmarkIdlePWM(b *testing.B) {
	for _, c := range []struct{ name, cfg string }{
		{"floor-output-pin", `{"backend":"fake","pins":[{"bcm":18,"mode":"output","initial":0}]}`},
		{"pwm-duty-0", `{"backend":"fake","pins":[{"bcm":18,"mode":"pwm","pwm":{"frequency":100,"duty":0}}]}`},
		{"pwm-duty-1", `{"backend":"fake","pins":[{"bcm":18,"mode":"pwm","pwm":{"frequency":100,"duty":1}}]}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			window := idleWindow(b)
			for range b.N {
				mod, probs := KindWith(NewFake()).Load(modules.Env{}, []byte(c.cfg), "config.json", nil)
				if len(probs) > 0 {
					b.Fatal(probs)
				}
				bus := bustest.New()
				if err := mod.Start(context.Background(), bus); err != nil {
					b.Fatal(err)
				}
				time.Sleep(time.Second) // start-up settles
				runtime.GC()
				var r0, r1 syscall.Rusage
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
				t0 := time.Now()
				time.Sleep(window)
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
				el := time.Since(t0)
				_ = mod.Close()
				bus.Close()
				cpu := time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) * time.Nanosecond
				b.ReportMetric(float64(cpu.Microseconds())/1000/el.Minutes(), "cpu-ms/min")
				b.ReportMetric(float64(r1.Nvcsw+r1.Nivcsw-r0.Nvcsw-r0.Nivcsw)/el.Seconds(), "ctxsw/s")
			}
		})
	}
}
