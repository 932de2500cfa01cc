package gpio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/signature"
)

// setQueue is the length of the set subscription's queue.
const setQueue = 256

// module is the running gpio module.
type module struct {
	log     *slog.Logger
	backend Backend
	chip    string
	specs   []*pinSpec
	clock   clock
	pwmRoot string // <host root>/sys/class/pwm
	// root and sigs verify signed set requests (signed.go).
	root contract.Root
	sigs *signature.Verifier

	bus    modules.Bus
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	pins   []*pin
	byID   map[string]*pin
	epoch  int64
	// linkGen counts broker link changes, so that a failsafe timer that
	// fired just before the link came back is ignored.
	linkGen atomic.Uint64
	started bool
}

// fsMsg asks a pin to apply (gen != 0) or leave (gen == 0) failsafe.
type fsMsg struct{ gen uint64 }

type setOp struct {
	set       contract.GPIOSet
	requester string
	done      chan setResult
}

type setResult struct {
	state contract.GPIOState
	err   error
}

// pin is one exposed pin. Fields below "owned by run" are only touched by
// the pin's goroutine after Start.
type pin struct {
	m    *module
	spec *pinSpec

	ops       chan *setOp
	edges     chan Edge
	edgeLost  atomic.Bool
	debounced chan uint64
	fs        chan fsMsg

	// owned by run (and by Start before run starts, by Close after it ended)
	line    Line
	lineDir Direction
	pwm     pwmOutput
	pwmOn   bool // PWM is toggling (or holding a duty) on the pin
	params  contract.GPIOPWM
	st      contract.GPIOState
	saved   *contract.GPIOState // the state before failsafe
	debGen  uint64
	debT    stopper
	unavail string // why the pin cannot be used, or ""
}

// Start implements modules.Module.
func (m *module) Start(ctx context.Context, bus modules.Bus) error {
	if m.started {
		return errors.New("gpio: started twice")
	}
	m.started = true
	m.bus = bus
	m.ctx, m.cancel = context.WithCancel(ctx)
	m.epoch = m.clock.Now().UnixMilli()
	m.byID = map[string]*pin{}
	for _, s := range m.specs {
		p := &pin{m: m, spec: s,
			ops:       make(chan *setOp),
			edges:     make(chan Edge, 64),
			debounced: make(chan uint64, 1),
			fs:        make(chan fsMsg, 4),
		}
		p.open()
		m.pins = append(m.pins, p)
		m.byID[s.id] = p
	}
	slices.SortFunc(m.pins, func(a, b *pin) int { return a.spec.bcm - b.spec.bcm })
	m.publishPins()
	for _, p := range m.pins {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			p.run(m.ctx)
		}()
	}
	if err := bus.Subscribe(contract.FilterGPIOSet, setQueue, m.handleSet); err != nil {
		m.cancel()
		m.wg.Wait()
		m.release()
		return fmt.Errorf("gpio: subscribe %s: %w", contract.FilterGPIOSet, err)
	}
	if slices.ContainsFunc(m.pins, func(p *pin) bool { return p.spec.failsafe != nil }) {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.watchLink(m.ctx)
		}()
	}
	return nil
}

// Close implements modules.Module: it stops every goroutine, then stops PWM
// and releases every line.
func (m *module) Close() error {
	if !m.started {
		return nil
	}
	m.cancel()
	m.wg.Wait()
	return m.release()
}

func (m *module) release() error {
	var errs []error
	for _, p := range m.pins {
		if p.debT != nil {
			p.debT.Stop()
		}
		if p.pwm != nil {
			if err := p.pwm.Close(); err != nil {
				errs = append(errs, fmt.Errorf("pin %s: stop pwm: %w", p.spec.id, err))
			}
			p.pwm = nil
		}
		if p.line != nil {
			if err := p.line.Close(); err != nil {
				errs = append(errs, fmt.Errorf("pin %s: release line: %w", p.spec.id, err))
			}
			p.line = nil
		}
	}
	return errors.Join(errs...)
}

// lineSpec builds the request for the pin in direction dir.
func (p *pin) lineSpec(dir Direction, initial int, keep bool) LineSpec {
	s := LineSpec{Chip: p.m.chip, Name: p.spec.line, BCM: p.spec.bcm, Consumer: Consumer,
		Direction: dir, Pull: p.spec.pull, ActiveLow: p.spec.activeLow, Initial: initial, KeepLevel: keep}
	if dir == Input {
		s.OnEdge = p.onEdge
	}
	return s
}

// open requests the pin's line in its start mode and sets the initial state
// (seq 0: run publishes it as seq 1). Called by Start.
func (p *pin) open() {
	s := p.spec
	p.params = contract.GPIOPWM{Frequency: s.pwm.freq, Duty: s.pwm.duty}
	p.st = contract.GPIOState{Pin: s.id, Mode: s.mode, Epoch: p.m.epoch}
	if s.hw != nil {
		p.pwm = newSysfsPWM(p.m.pwmRoot, *s.hw)
	} else {
		dir, initial, keep := Output, 0, false
		switch s.mode {
		case contract.GPIOModeIn:
			dir = Input
		case contract.GPIOModeOut:
			if s.initial != nil {
				initial = *s.initial
			} else {
				keep = true
			}
		}
		l, err := p.m.backend.Request(p.lineSpec(dir, initial, keep))
		if err != nil {
			p.fail(fmt.Errorf("request line: %w", err))
			return
		}
		p.line, p.lineDir = l, dir
	}
	switch s.mode {
	case contract.GPIOModeIn:
		v, err := p.line.Value()
		if err != nil {
			p.fail(fmt.Errorf("read: %w", err))
			return
		}
		p.st.Value = v
	case contract.GPIOModeOut:
		if p.line == nil {
			p.fail(errors.New("no line"))
			return
		}
		v, err := p.line.Value()
		if err != nil {
			p.fail(fmt.Errorf("read: %w", err))
			return
		}
		p.st.Value = v
	case contract.GPIOModePWM:
		p.st.Value = 1
		if s.initial != nil {
			p.st.Value = *s.initial
		}
		pw := p.params
		p.st.PWM = &pw
		if err := p.drive(); err != nil {
			p.fail(err)
			return
		}
	}
}

// fail marks the pin unavailable; the error goes to the log and events.
func (p *pin) fail(err error) {
	p.unavail = err.Error()
	p.st.Error = p.unavail
	p.st.Value = 0
	p.m.log.Error("pin unavailable", "pin", p.spec.id, "line", p.spec.line, "err", err)
	p.m.bus.Event(contract.Event{TS: p.m.clock.Now(), Kind: contract.EventError, Module: Name,
		Message: fmt.Sprintf("gpio pin %s (%s): %v", p.spec.id, p.spec.line, err),
		Topic:   contract.TopicGPIOState(p.spec.id)})
}

// onEdge runs on the backend's goroutine: it never blocks.
func (p *pin) onEdge(e Edge) {
	select {
	case p.edges <- e:
	default:
		p.edgeLost.Store(true)
	}
}

// run owns the pin: it publishes the initial state, then applies sets,
// edges and failsafe changes one at a time.
func (p *pin) run(ctx context.Context) {
	p.publish(ctx, contract.GPIOSourceInit, "")
	for {
		select {
		case <-ctx.Done():
			return
		case op := <-p.ops:
			st, err := p.apply(ctx, op)
			op.done <- setResult{state: st, err: err}
		case e := <-p.edges:
			p.edge(ctx, e)
		case g := <-p.debounced:
			if g == p.debGen {
				p.settle(ctx)
			}
		case f := <-p.fs:
			p.failsafe(ctx, f)
		}
	}
}

func (p *pin) publish(ctx context.Context, source, requester string) {
	p.st.Seq++
	p.st.TS = p.m.clock.Now().UTC()
	p.st.Source = source
	p.st.Requester = requester
	b, err := json.Marshal(&p.st)
	if err != nil {
		p.m.log.Error("encode state", "pin", p.spec.id, "err", err)
		return
	}
	if err := p.m.bus.Publish(ctx, contract.TopicGPIOState(p.spec.id), b,
		modules.PublishOptions{Retain: true, QoS: 1}); err != nil {
		p.m.log.Warn("publish state", "pin", p.spec.id, "seq", p.st.Seq, "err", err)
	}
}

func (p *pin) edge(ctx context.Context, e Edge) {
	if p.st.Mode != contract.GPIOModeIn || p.line == nil || p.unavail != "" {
		return
	}
	if p.spec.debounce > 0 {
		// Wait until the line was quiet for the debounce time.
		if p.debT != nil {
			p.debT.Stop()
		}
		p.debGen++
		g := p.debGen
		p.debT = p.m.clock.AfterFunc(p.spec.debounce, func() {
			select {
			case p.debounced <- g:
			case <-ctx.Done():
			}
		})
		return
	}
	v := e.Value
	if p.edgeLost.Swap(false) {
		var err error
		if v, err = p.line.Value(); err != nil {
			p.m.log.Warn("read input", "pin", p.spec.id, "err", err)
			return
		}
	}
	if v != p.st.Value {
		p.st.Value = v
		p.publish(ctx, contract.GPIOSourceEdge, "")
	}
}

// settle reads a debounced input once it was quiet and publishes a change.
func (p *pin) settle(ctx context.Context) {
	if p.st.Mode != contract.GPIOModeIn || p.line == nil {
		return
	}
	p.edgeLost.Store(false)
	v, err := p.line.Value()
	if err != nil {
		p.m.log.Warn("read input", "pin", p.spec.id, "err", err)
		return
	}
	if v != p.st.Value {
		p.st.Value = v
		p.publish(ctx, contract.GPIOSourceEdge, "")
	}
}

// errRejected marks errors of the request itself (nothing was changed).
type rejectError struct{ msg string }

func (e *rejectError) Error() string { return e.msg }

func reject(format string, a ...any) error { return &rejectError{msg: fmt.Sprintf(format, a...)} }

// plan computes the state a set leads to from cur, or rejects it.
func (p *pin) plan(cur contract.GPIOState, set contract.GPIOSet) (contract.GPIOState, contract.GPIOPWM, error) {
	next := cur
	next.Failsafe = false
	params := p.params
	if set.Mode != "" {
		mode, ok := normMode(set.Mode)
		if !ok {
			return next, params, reject("mode %q is not one of in, out, pwm", set.Mode)
		}
		if !slices.Contains(p.spec.modes, mode) {
			return next, params, reject("pin %s may not switch to %s (allowed: %s)", p.spec.id, mode, strings.Join(p.spec.modes, ", "))
		}
		if mode != cur.Mode {
			next.Mode = mode
			switch mode {
			case contract.GPIOModePWM:
				next.Value = 1 // entering pwm starts it
			default:
				next.Value = 0
			}
		}
	}
	if next.Mode == contract.GPIOModeIn {
		if set.Value != nil || set.PWM != nil {
			return next, params, reject("pin %s is an input: it cannot be set", p.spec.id)
		}
	}
	if set.PWM != nil {
		if next.Mode != contract.GPIOModePWM {
			return next, params, reject("pin %s is in %s mode: pwm needs mode pwm", p.spec.id, next.Mode)
		}
		if set.PWM.Frequency != nil {
			f := *set.PWM.Frequency
			if !(f >= MinPWMFrequency && f <= p.spec.pwm.max) {
				return next, params, reject("pwm frequency %v Hz is outside %v..%v for pin %s", f, MinPWMFrequency, p.spec.pwm.max, p.spec.id)
			}
			params.Frequency = f
		}
		if set.PWM.Duty != nil {
			d := *set.PWM.Duty
			if !(d >= 0 && d <= 1) {
				return next, params, reject("pwm duty %v is outside 0..1", d)
			}
			params.Duty = d
		}
	}
	if set.Value != nil {
		if *set.Value != 0 && *set.Value != 1 {
			return next, params, reject("value %d is not 0 or 1", *set.Value)
		}
		next.Value = *set.Value
	}
	next.PWM = nil
	if next.Mode == contract.GPIOModePWM {
		pw := params
		next.PWM = &pw
	}
	next.Error = ""
	return next, params, nil
}

func (p *pin) apply(ctx context.Context, op *setOp) (contract.GPIOState, error) {
	if p.unavail != "" {
		return p.st, reject("pin %s is unavailable: %s", p.spec.id, p.unavail)
	}
	cur := p.st
	if p.saved != nil {
		// A set during failsafe ends it: it applies to the state the
		// pin had before.
		cur = *p.saved
		cur.Seq = p.st.Seq
	}
	next, params, err := p.plan(cur, op.set)
	if err != nil {
		return p.st, err
	}
	prev, prevParams := p.st, p.params
	p.st, p.params = next, params
	if err := p.drive(); err != nil {
		// Put the pin back as it was.
		p.st, p.params = prev, prevParams
		if derr := p.drive(); derr != nil {
			p.unavail = derr.Error()
			p.st.Error = p.unavail
			p.publish(ctx, contract.GPIOSourceSet, op.requester)
		}
		return p.st, fmt.Errorf("pin %s: %w", p.spec.id, err)
	}
	p.saved = nil
	p.publish(ctx, contract.GPIOSourceSet, op.requester)
	return p.st, nil
}

// drive makes the hardware match p.st (mode, value) and p.params.
func (p *pin) drive() error {
	st := p.st
	if p.spec.hw != nil {
		// A hardware PWM pin: "out" (failsafe) holds a level by duty.
		if st.Mode == contract.GPIOModePWM && st.Value == 1 {
			return p.pwm.Set(p.params.Frequency, p.params.Duty)
		}
		v := st.Value
		if st.Mode == contract.GPIOModePWM {
			v = 0
		}
		return p.pwm.Stop(v)
	}
	want := Output
	if st.Mode == contract.GPIOModeIn {
		want = Input
	}
	if p.line == nil || p.lineDir != want {
		if err := p.reopen(want, st.Value); err != nil {
			return err
		}
	}
	switch st.Mode {
	case contract.GPIOModeIn:
		v, err := p.line.Value()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		p.st.Value = v
	case contract.GPIOModeOut:
		if p.pwmOn {
			p.pwmOn = false
			return p.pwm.Stop(st.Value)
		}
		if err := p.line.SetValue(st.Value); err != nil {
			return fmt.Errorf("set value: %w", err)
		}
	case contract.GPIOModePWM:
		if p.pwm == nil {
			pin := p.spec.id
			p.pwm = newSoftPWM(p.line, func(err error) {
				p.m.log.Error("software pwm cannot drive the line", "pin", pin, "err", err)
			})
		}
		if st.Value == 1 {
			if err := p.pwm.Set(p.params.Frequency, p.params.Duty); err != nil {
				return err
			}
			p.pwmOn = true
			return nil
		}
		p.pwmOn = false
		return p.pwm.Stop(0)
	}
	return nil
}

// reopen releases the line and requests it again in direction dir.
func (p *pin) reopen(dir Direction, initial int) error {
	if p.pwm != nil {
		_ = p.pwm.Close()
		p.pwm, p.pwmOn = nil, false
	}
	if p.line != nil {
		if err := p.line.Close(); err != nil {
			p.m.log.Warn("release line", "pin", p.spec.id, "err", err)
		}
		p.line = nil
	}
	if p.debT != nil {
		p.debT.Stop()
		p.debGen++
	}
	l, err := p.m.backend.Request(p.lineSpec(dir, initial, false))
	if err != nil {
		return fmt.Errorf("request line: %w", err)
	}
	p.line, p.lineDir = l, dir
	return nil
}

// failsafe applies (f.gen != 0) or leaves (f.gen == 0) the failsafe value.
func (p *pin) failsafe(ctx context.Context, f fsMsg) {
	fs := p.spec.failsafe
	if fs == nil || p.unavail != "" {
		return
	}
	if f.gen != 0 {
		if f.gen != p.m.linkGen.Load() || p.saved != nil || p.st.Mode == contract.GPIOModeIn {
			return
		}
		saved, savedParams := p.st, p.params
		p.st.Mode, p.st.Value, p.st.PWM, p.st.Failsafe = contract.GPIOModeOut, fs.value, nil, true
		if err := p.drive(); err != nil {
			p.m.log.Error("apply failsafe", "pin", p.spec.id, "err", err)
			p.st, p.params = saved, savedParams
			return
		}
		p.saved = &saved
		p.m.log.Warn("failsafe applied", "pin", p.spec.id, "value", fs.value, "after", fs.after)
		p.publish(ctx, contract.GPIOSourceFailsafe, "")
		return
	}
	if p.saved == nil {
		return
	}
	failed := p.st
	p.st = *p.saved
	p.st.Seq = failed.Seq
	p.st.Failsafe = false
	if err := p.drive(); err != nil {
		p.m.log.Error("restore after failsafe", "pin", p.spec.id, "err", err)
		p.st = failed
		return
	}
	p.saved = nil
	p.m.log.Info("failsafe left: value restored", "pin", p.spec.id, "value", p.st.Value)
	p.publish(ctx, contract.GPIOSourceRestore, "")
}

// watchLink applies failsafe values when the broker link is down longer
// than each pin's after, and restores when it is back.
func (m *module) watchLink(ctx context.Context) {
	var timers []stopper
	stop := func() {
		for _, t := range timers {
			t.Stop()
		}
		timers = nil
	}
	defer stop()
	down := false
	for {
		up, changed := m.bus.Connection()
		switch {
		case !up && !down:
			down = true
			g := m.linkGen.Add(1)
			for _, p := range m.pins {
				if p.spec.failsafe == nil {
					continue
				}
				timers = append(timers, m.clock.AfterFunc(p.spec.failsafe.after, func() {
					select {
					case p.fs <- fsMsg{gen: g}:
					case <-ctx.Done():
					}
				}))
			}
			m.log.Info("broker link down: failsafe timers armed")
		case up && down:
			down = false
			m.linkGen.Add(1)
			stop()
			for _, p := range m.pins {
				if p.spec.failsafe == nil {
					continue
				}
				select {
				case p.fs <- fsMsg{}:
				case <-ctx.Done():
					return
				}
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// handleSet answers one set request.
func (m *module) handleSet(ctx context.Context, req *modules.Request) {
	id, ok := contract.GPIOPinFromTopic(req.Topic)
	p := m.byID[id]
	if !ok || p == nil {
		m.rejectSet(ctx, req, id, fmt.Errorf("unknown pin %q (exposed: %s)", id, m.pinList()))
		return
	}
	if req.Expired(m.clock.Now()) {
		m.rejectSet(ctx, req, id, errors.New("request expired before it was handled"))
		return
	}
	signedBy, err := m.verify(req, p)
	if err != nil {
		m.rejectSet(ctx, req, id, err)
		return
	}
	set, err := ParseSet(req.Payload)
	if err != nil {
		m.rejectSet(ctx, req, id, err)
		return
	}
	op := &setOp{set: set, requester: req.Requester, done: make(chan setResult, 1)}
	select {
	case p.ops <- op:
	case <-m.ctx.Done():
		m.rejectSet(ctx, req, id, errors.New("gpio module is stopping"))
		return
	}
	var res setResult
	select {
	case res = <-op.done:
	case <-m.ctx.Done():
		m.rejectSet(ctx, req, id, errors.New("gpio module is stopping"))
		return
	}
	if res.err != nil {
		m.rejectSet(ctx, req, id, res.err)
		return
	}
	st := res.state
	m.auditSigned(req, id, signedBy)
	m.reply(ctx, req, contract.GPIOSetResponse{Response: contract.Response{Status: contract.StatusOK,
		Topic: req.Topic, TS: m.clock.Now().UTC()}, Pin: id, State: &st})
}

func (m *module) pinList() string {
	ids := make([]string, 0, len(m.pins))
	for _, p := range m.pins {
		ids = append(ids, p.spec.id)
	}
	return strings.Join(ids, ", ")
}

func (m *module) rejectSet(ctx context.Context, req *modules.Request, pin string, err error) {
	msg := fmt.Sprintf("gpio set %s rejected: %v", req.Topic, err)
	var rj *rejectError
	if !errors.As(err, &rj) {
		m.log.Warn("set failed", "topic", req.Topic, "err", err)
	}
	m.reply(ctx, req, contract.GPIOSetResponse{Response: contract.Response{Status: contract.StatusRejected,
		Topic: req.Topic, Error: err.Error(), TS: m.clock.Now().UTC()}, Pin: pin})
	m.bus.Event(contract.Event{TS: m.clock.Now().UTC(), Kind: contract.EventRejected, Module: Name,
		Message: msg, Topic: req.Topic, Requester: req.Requester, Fields: signatureFields(err)})
}

func (m *module) reply(ctx context.Context, req *modules.Request, r contract.GPIOSetResponse) {
	if req.ResponseTopic == "" {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		m.log.Error("encode reply", "err", err)
		return
	}
	if err := m.bus.Reply(ctx, req, b); err != nil {
		m.log.Warn("reply", "topic", req.Topic, "err", err)
	}
}

// publishPins publishes the retained catalogue.
func (m *module) publishPins() {
	cat := contract.GPIOPins{Pins: make([]contract.GPIOPin, 0, len(m.pins)), Epoch: m.epoch, TS: m.clock.Now().UTC()}
	for _, p := range m.pins {
		cat.Pins = append(cat.Pins, p.describe())
	}
	b, err := json.Marshal(cat)
	if err != nil {
		m.log.Error("encode pins", "err", err)
		return
	}
	if err := m.bus.Publish(m.ctx, contract.TopicGPIOPins, b, modules.PublishOptions{Retain: true, QoS: 1}); err != nil {
		m.log.Warn("publish pins", "err", err)
	}
}

func (p *pin) describe() contract.GPIOPin {
	s := p.spec
	d := contract.GPIOPin{Pin: s.id, BCM: s.bcm, Name: s.name, Line: s.line, Mode: s.mode,
		Modes: slices.Clone(s.modes), Pull: string(s.pull), ActiveLow: s.activeLow,
		DebounceMS: float64(s.debounce) / float64(time.Millisecond), Error: p.unavail,
		Capabilities: []string{}, RequireSignature: s.requireSig}
	if s.hw == nil {
		d.Capabilities = append(d.Capabilities, contract.GPIOCapRead)
	}
	if slices.Contains(s.modes, contract.GPIOModeOut) {
		d.Capabilities = append(d.Capabilities, contract.GPIOCapWrite)
	}
	if slices.Contains(s.modes, contract.GPIOModeIn) {
		d.Capabilities = append(d.Capabilities, contract.GPIOCapEdges)
	}
	if slices.Contains(s.modes, contract.GPIOModePWM) {
		if s.hw != nil {
			d.Capabilities = append(d.Capabilities, contract.GPIOCapHardwarePWM)
		} else {
			d.Capabilities = append(d.Capabilities, contract.GPIOCapPWM)
		}
		d.PWM = &contract.GPIOPWMLimits{Frequency: s.pwm.freq, Duty: s.pwm.duty,
			MinFrequency: MinPWMFrequency, MaxFrequency: s.pwm.max, Hardware: s.hw != nil}
	}
	if s.failsafe != nil {
		d.Capabilities = append(d.Capabilities, contract.GPIOCapFailsafe)
		d.Failsafe = &contract.GPIOFailsafe{Value: s.failsafe.value, AfterMS: float64(s.failsafe.after) / float64(time.Millisecond)}
	}
	return d
}
