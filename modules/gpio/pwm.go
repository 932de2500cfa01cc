package gpio

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Software PWM limits. The timing they allow is measured by
// BenchmarkPWMJitter and documented in docs/gpio.md.
const (
	MinPWMFrequency = 0.1    // Hz
	MaxPWMFrequency = 5000.0 // Hz, the hard cap of software PWM
	// DefaultMaxPWMFrequency is a pin's max_frequency when not configured.
	DefaultMaxPWMFrequency = 1000.0
	// DefaultPWMFrequency is a pin's pwm.frequency when not configured.
	DefaultPWMFrequency = 100.0
	// sleepChunk bounds one sleep, so that stop and parameter changes are
	// seen within it even at low frequencies.
	sleepChunk = 20 * time.Millisecond
)

// pwmOutput drives PWM on one pin.
type pwmOutput interface {
	// Set starts PWM or changes it: frequency in Hz, duty from 0 to 1. A
	// duty of 0 or 1 holds the output low or high without toggling.
	Set(freq, duty float64) error
	// Stop stops PWM and leaves the output at level (0 or 1).
	Stop(level int) error
	// Close stops PWM and releases what the output holds (not the line).
	Close() error
}

type pwmParams struct{ freq, duty float64 }

// softPWM toggles a Line from a goroutine locked to its own OS thread that
// sleeps until absolute CLOCK_MONOTONIC deadlines (clock_nanosleep with a
// 1 ns timer slack on Linux), so errors do not accumulate: a late edge
// shortens the next phase instead of shifting all later ones.
type softPWM struct {
	line Line

	mu     sync.Mutex // serialises Set/Stop/Close
	params atomic.Pointer[pwmParams]
	quit   chan struct{}
	done   chan struct{}
	// wake tells a parked loop that the parameters changed.
	wake    chan struct{}
	stopped atomic.Bool
	// overruns counts periods where the loop fell more than a period
	// behind and restarted its schedule.
	overruns atomic.Uint64
	// realtime reports whether the loop's thread got SCHED_FIFO.
	realtime atomic.Bool
	// wakeups counts the loop's passes (one per period while toggling);
	// parked is true while it waits, at a constant level, for a change.
	wakeups atomic.Uint64
	parked  atomic.Bool
	// onErr is told about the first SetValue error of each run of the loop
	// (a line that fails once usually fails on every edge).
	onErr func(error)
}

func newSoftPWM(l Line, onErr func(error)) *softPWM {
	if onErr == nil {
		onErr = func(error) {}
	}
	return &softPWM{line: l, onErr: onErr, wake: make(chan struct{}, 1)}
}

func validPWM(freq, duty float64) error {
	if math.IsNaN(freq) || freq < MinPWMFrequency || freq > MaxPWMFrequency {
		return fmt.Errorf("pwm frequency %v Hz is outside %v..%v", freq, MinPWMFrequency, MaxPWMFrequency)
	}
	if math.IsNaN(duty) || duty < 0 || duty > 1 {
		return fmt.Errorf("pwm duty %v is outside 0..1", duty)
	}
	return nil
}

func (s *softPWM) Set(freq, duty float64) error {
	if err := validPWM(freq, duty); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.params.Store(&pwmParams{freq: freq, duty: duty})
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if s.quit == nil {
		s.quit = make(chan struct{})
		s.done = make(chan struct{})
		s.stopped.Store(false)
		go s.run(s.quit, s.done)
	}
	return nil
}

func (s *softPWM) stop() {
	if s.quit != nil {
		s.stopped.Store(true)
		close(s.quit)
		<-s.done
		s.quit, s.done = nil, nil
	}
}

func (s *softPWM) Stop(level int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
	if err := s.line.SetValue(level); err != nil {
		return fmt.Errorf("stop pwm: %w", err)
	}
	return nil
}

func (s *softPWM) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
	return nil
}

func (s *softPWM) run(quit, done chan struct{}) {
	defer close(done)
	s.realtime.Store(pinThread())
	level := -1
	reported := false
	set := func(v int) {
		if v == level {
			return
		}
		if err := s.line.SetValue(v); err != nil {
			if !reported {
				reported = true
				s.onErr(err)
			}
			return
		}
		level = v
	}
	next := monoNow()
	for {
		s.wakeups.Add(1)
		p := s.params.Load()
		period := int64(1e9 / p.freq)
		high := int64(p.duty*float64(period) + 0.5)
		changed := func() bool { return s.stopped.Load() || s.params.Load() != p }
		if high <= 0 || high >= period {
			// Constant level: park. The thread sleeps, without a timer,
			// until Set or stop wakes it. A wake-up left over from an
			// earlier Set is dropped first; one that comes after the drain
			// finds the new parameters below or wakes the park.
			set(b2i(high > 0))
			select {
			case <-s.wake:
			default:
			}
			if s.params.Load() != p {
				continue
			}
			s.parked.Store(true)
			select {
			case <-quit:
				s.parked.Store(false)
				return
			case <-s.wake:
			}
			s.parked.Store(false)
			next = monoNow()
			continue
		}
		set(1)
		if !sleepUntil(next+high, changed) {
			if s.stopped.Load() {
				return
			}
			next = monoNow()
			continue
		}
		set(0)
		next += period
		if !sleepUntil(next, changed) {
			if s.stopped.Load() {
				return
			}
			next = monoNow()
			continue
		}
		if now := monoNow(); now-next > period {
			// More than a period behind (the machine stalled): restart the
			// schedule instead of firing a burst of short periods.
			s.overruns.Add(1)
			next = now
		}
	}
}

// monoBase ties Go's monotonic clock to CLOCK_MONOTONIC (they are the same
// clock on Linux) so that monoNow needs no system call.
var monoBase = struct {
	once sync.Once
	mono int64
	t    time.Time
}{}

// monoNow returns CLOCK_MONOTONIC in nanoseconds.
func monoNow() int64 {
	monoBase.once.Do(func() {
		monoBase.t = time.Now()
		monoBase.mono = clockMonotonic()
	})
	return monoBase.mono + int64(time.Since(monoBase.t))
}

// sleepUntil sleeps until the CLOCK_MONOTONIC deadline, in chunks of at most
// sleepChunk; it returns false early when abort reports true.
func sleepUntil(deadline int64, abort func() bool) bool {
	for {
		if abort() {
			return false
		}
		now := monoNow()
		if now >= deadline {
			return true
		}
		d := deadline
		if d-now > int64(sleepChunk) {
			d = now + int64(sleepChunk)
		}
		sleepAbs(d)
	}
}
