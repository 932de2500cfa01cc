package gpio

import (
	"math"
	"slices"
	"time"
)

// pwmCycle is one measured PWM period from the fake line's recorded writes:
// rising edge, falling edge, next rising edge.
type pwmCycle struct {
	rise, fall, next time.Time
}

func (c pwmCycle) period() time.Duration { return c.next.Sub(c.rise) }
func (c pwmCycle) high() time.Duration   { return c.fall.Sub(c.rise) }
func (c pwmCycle) duty() float64         { return float64(c.high()) / float64(c.period()) }

// cycles extracts the complete periods from recorded writes.
func cycles(ws []Write) []pwmCycle {
	var out []pwmCycle
	var cur pwmCycle
	state := 0 // 0: want rise, 1: want fall, 2: want next rise
	for _, w := range ws {
		switch {
		case state == 0 && w.Value == 1:
			cur = pwmCycle{rise: w.Time}
			state = 1
		case state == 1 && w.Value == 0:
			cur.fall = w.Time
			state = 2
		case state == 2 && w.Value == 1:
			cur.next = w.Time
			out = append(out, cur)
			cur = pwmCycle{rise: w.Time}
			state = 1
		}
	}
	return out
}

// risingEdges counts writes of 1.
func risingEdges(ws []Write) int {
	n := 0
	for _, w := range ws {
		if w.Value == 1 {
			n++
		}
	}
	return n
}

// quantile returns the q-quantile (0..1) of xs (sorted in place).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	if i < 0 {
		i = 0
	}
	return xs[i]
}
