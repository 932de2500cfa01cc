package gpio

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Fake is an in-memory Backend: config gpio.backend "fake", for make demo,
// tests and machines without GPIO. Its lines behave like the kernel's: a
// line is held by one consumer at a time, levels survive a release (the
// "hardware" keeps them), inputs report edges when their level is driven,
// and every SetValue is recorded with its time. Safe for concurrent use.
type Fake struct {
	mu    sync.Mutex
	lines map[string]*fakeLine
	// jumpers maps an output line to the input line it drives.
	jumpers map[string]string
}

// Write is one recorded SetValue call on a fake line.
type Write struct {
	Value int // active level written
	Time  time.Time
}

// maxWrites bounds the writes kept per line (the oldest half is dropped).
const maxWrites = 1 << 17

type fakeLine struct {
	name     string
	level    int // physical level
	consumer string
	held     bool // requested by someone (us or another program)
	req      *FakeLine
	writes   []Write
}

// FakeLine is a line requested from a Fake.
type FakeLine struct {
	f         *Fake
	l         *fakeLine
	dir       Direction
	activeLow bool
	onEdge    func(Edge)
	closed    bool
}

// NewFake returns a fake backend whose lines are all low and free.
func NewFake() *Fake { return &Fake{lines: map[string]*fakeLine{}, jumpers: map[string]string{}} }

// Jumper joins line from to line to as a jumper wire would: every level the
// line from is set to (by SetValue) is driven on the line to.
func (f *Fake) Jumper(from, to string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jumpers[from] = to
}

// Name implements Backend.
func (*Fake) Name() string { return BackendFake }

func (f *Fake) line(name string) *fakeLine {
	l := f.lines[name]
	if l == nil {
		l = &fakeLine{name: name}
		f.lines[name] = l
	}
	return l
}

// Hold marks the line name as held by another program with the consumer
// label (empty for none), as if it had requested it.
func (f *Fake) Hold(name, consumer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.line(name)
	l.consumer = consumer
	l.held = true
	l.req = nil
}

// Release frees a line held with Hold.
func (f *Fake) Release(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.line(name)
	if l.req == nil {
		l.consumer, l.held = "", false
	}
}

// Holder reports who holds the line: the consumer label and true, or false
// when the line is free.
func (f *Fake) Holder(name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.lines[name]
	if l == nil || !l.held {
		return "", false
	}
	return l.consumer, true
}

// Level returns the physical level of the line.
func (f *Fake) Level(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.line(name).level
}

// Drive sets the physical level of the line, level after level, as a signal
// on an input pin would; every change of an input requested with edges
// calls its edge handler (on the caller's goroutine, once per change).
func (f *Fake) Drive(name string, levels ...int) {
	for _, lv := range levels {
		f.mu.Lock()
		l := f.line(name)
		var h func(Edge)
		var active int
		if lv != l.level {
			l.level = lv & 1
			if r := l.req; r != nil && r.dir == Input && r.onEdge != nil {
				h = r.onEdge
				active = l.level
				if r.activeLow {
					active ^= 1
				}
			}
		}
		f.mu.Unlock()
		if h != nil {
			h(Edge{Value: active, Time: time.Now()})
		}
	}
}

// Writes returns the SetValue calls recorded on the line so far.
func (f *Fake) Writes(name string) []Write {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Write(nil), f.line(name).writes...)
}

// ResetWrites forgets the recorded writes of the line.
func (f *Fake) ResetWrites(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.line(name).writes = nil
}

// Request implements Backend.
func (f *Fake) Request(spec LineSpec) (Line, error) {
	if spec.Name == "" {
		return nil, errors.New("fake: empty line name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.line(spec.Name)
	if l.held {
		return nil, &BusyError{Line: spec.Name, Chip: "fakechip0", Offset: spec.BCM, Consumer: l.consumer}
	}
	r := &FakeLine{f: f, l: l, dir: spec.Direction, activeLow: spec.ActiveLow}
	if spec.Direction == Input {
		r.onEdge = spec.OnEdge
	} else {
		v := spec.Initial
		if spec.KeepLevel {
			v = l.level
			if spec.ActiveLow {
				v ^= 1
			}
		}
		l.level = (v & 1) ^ b2i(spec.ActiveLow)
	}
	l.req = r
	l.consumer = spec.Consumer
	l.held = true
	return r, nil
}

// Value implements Line.
func (r *FakeLine) Value() (int, error) {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	if r.closed {
		return 0, errors.New("fake: line closed")
	}
	return r.l.level ^ b2i(r.activeLow), nil
}

// SetValue implements Line.
func (r *FakeLine) SetValue(v int) error {
	now := time.Now()
	r.f.mu.Lock()
	if r.closed {
		r.f.mu.Unlock()
		return errors.New("fake: line closed")
	}
	if r.dir != Output {
		r.f.mu.Unlock()
		return fmt.Errorf("fake: set %s: line is an input", r.l.name)
	}
	r.l.level = (v & 1) ^ b2i(r.activeLow)
	if len(r.l.writes) >= maxWrites {
		r.l.writes = append(r.l.writes[:0], r.l.writes[maxWrites/2:]...)
	}
	r.l.writes = append(r.l.writes, Write{Value: v & 1, Time: now})
	to, jumpered := r.f.jumpers[r.l.name]
	level := r.l.level
	r.f.mu.Unlock()
	if jumpered {
		r.f.Drive(to, level)
	}
	return nil
}

// Close implements Line.
func (r *FakeLine) Close() error {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	if r.closed {
		return errors.New("fake: line already closed")
	}
	r.closed = true
	if r.l.req == r {
		r.l.req = nil
		r.l.consumer, r.l.held = "", false
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
