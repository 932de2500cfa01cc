package gpio

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// Documented software PWM bound (docs/gpio.md, "PWM timing"): the median
// error of an edge against its schedule is at most pwmMedianEdgeBound, so
// the median duty of single periods is within 2*pwmMedianEdgeBound/period
// of the set duty, and the median period within 2*pwmMedianEdgeBound of
// the nominal one. Tests assert on these medians over many periods, never
// on how long the test itself took.
const pwmMedianEdgeBound = 250 * time.Microsecond

// waitCycles waits until the fake line recorded at least n complete
// periods and returns them.
func waitCycles(t *testing.T, f *Fake, line string, n int) []pwmCycle {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		cs := cycles(f.Writes(line))
		if len(cs) >= n {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: only %d PWM periods recorded", line, len(cs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func medianDutyAndPeriod(cs []pwmCycle) (float64, time.Duration) {
	var duties, periods []float64
	for _, c := range cs {
		duties = append(duties, c.duty())
		periods = append(periods, float64(c.period()))
	}
	return quantile(duties, 0.5), time.Duration(quantile(periods, 0.5))
}

func TestPWMDutyFollowsSets(t *testing.T) {
	h := start(t, `{"pins":[{"bcm":18,"mode":"pwm","pwm":{"frequency":100,"duty":0.25}}]}`, nil)
	h.waitState("18", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	for _, c := range []struct {
		set  string
		freq float64
		duty float64
	}{
		{"", 100, 0.25},
		{`{"pwm":{"duty":0.75}}`, 100, 0.75},
		{`{"pwm":{"frequency":50,"duty":0.5}}`, 50, 0.5},
		{`{"pwm":{"duty":0.1}}`, 50, 0.1},
	} {
		t.Run(fmt.Sprintf("%gHz-%g", c.freq, c.duty), func(t *testing.T) {
			if c.set != "" {
				st := h.mustSet("18", c.set)
				if st.PWM == nil || *st.PWM != (contract.GPIOPWM{Frequency: c.freq, Duty: c.duty}) {
					t.Fatalf("state %+v", st)
				}
			}
			h.fake.ResetWrites("GPIO18")
			// The period running when the set arrived may still have the
			// old setting: drop the first two. The median of 30 periods
			// holds the same bound as that of any larger count (a wrong
			// setting shifts every period; more than half of them must be
			// off to move a median), and the SCHED_FIFO PWM thread keeps
			// the edges on time under load.
			cs := waitCycles(t, h.fake, "GPIO18", 32)[2:]
			duty, period := medianDutyAndPeriod(cs)
			nominal := time.Duration(1e9 / c.freq)
			tolDuty := 2 * float64(pwmMedianEdgeBound) / float64(nominal)
			if math.Abs(duty-c.duty) > tolDuty {
				t.Errorf("median duty %.4f over %d periods, want %.2f ± %.4f", duty, len(cs), c.duty, tolDuty)
			}
			if d := period - nominal; d < -2*pwmMedianEdgeBound || d > 2*pwmMedianEdgeBound {
				t.Errorf("median period %v, want %v ± %v", period, nominal, 2*pwmMedianEdgeBound)
			}
		})
	}
}

func TestPWMStopAndHold(t *testing.T) {
	h := start(t, `{"pins":[{"bcm":18,"mode":"pwm","pwm":{"frequency":200,"duty":0.5}}]}`, nil)
	waitCycles(t, h.fake, "GPIO18", 3)
	st := h.mustSet("18", "off")
	if st.Value != 0 || st.Mode != contract.GPIOModePWM {
		t.Fatalf("stop: %+v", st)
	}
	// Stop joins the PWM goroutine before the state is published: no
	// write may follow the final 0.
	ws := h.fake.Writes("GPIO18")
	if last := ws[len(ws)-1]; last.Value != 0 {
		t.Errorf("last write %+v, want 0", last)
	}
	h.barrier("18")
	if n := len(h.fake.Writes("GPIO18")); n != len(ws) {
		t.Errorf("%d writes after stop", n-len(ws))
	}

	// Duty 1 holds the line high without toggling.
	h.mustSet("18", `{"value":1,"pwm":{"duty":1}}`)
	deadline := time.Now().Add(waitLong)
	for h.fake.Level("GPIO18") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("duty 1 never drove the line high")
		}
		time.Sleep(time.Millisecond)
	}
	h.fake.ResetWrites("GPIO18")
	h.mustSet("18", `{"pwm":{"duty":0}}`)
	for h.fake.Level("GPIO18") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("duty 0 never drove the line low")
		}
		time.Sleep(time.Millisecond)
	}
	if ws := h.fake.Writes("GPIO18"); len(ws) != 1 {
		t.Errorf("duty 1 then 0: writes %+v, want exactly one write of 0", ws)
	}
}

// waitParked waits until the PWM loop is parked at level on the fake line.
func waitParked(t *testing.T, pw *softPWM, f *Fake, line string, level int) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !pw.parked.Load() || f.Level(line) != level {
		if time.Now().After(deadline) {
			t.Fatalf("PWM loop not parked at %d", level)
		}
		time.Sleep(time.Millisecond)
	}
}

// At duty 0 or 1 the PWM loop parks: it holds the level and its thread
// sleeps until the duty changes or PWM stops, with no periodic wake-up.
func TestPWMParksAtConstantDuty(t *testing.T) {
	fake := NewFake()
	l, err := fake.Request(LineSpec{Name: "GPIO18", Direction: Output})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pw := newSoftPWM(l, nil)
	defer pw.Close()
	for _, duty := range []float64{0, 1, 0} {
		if err := pw.Set(100, duty); err != nil {
			t.Fatal(err)
		}
		waitParked(t, pw, fake, "GPIO18", int(duty))
		before := pw.wakeups.Load()
		// An observation window of several former polling intervals: a
		// loop that polls would pass at least once in it.
		time.Sleep(5 * sleepChunk)
		if n := pw.wakeups.Load() - before; n != 0 || !pw.parked.Load() {
			t.Errorf("duty %v: the parked loop woke %d times in %v", duty, n, 5*sleepChunk)
		}
	}
	// A duty in between wakes it and toggles again.
	fake.ResetWrites("GPIO18")
	if err := pw.Set(100, 0.5); err != nil {
		t.Fatal(err)
	}
	waitCycles(t, fake, "GPIO18", 3)
	if err := pw.Stop(0); err != nil {
		t.Fatal(err)
	}
}
