// Package pidoctor is the PiDoctor module kind: diagnostics defined in JSON
// module files, each check either built in (read under host.root, no shell)
// or an external command decoded and run by PiControl's decoder and runner,
// judged by a verdict rule (exit codes, a regular expression, or a number
// against thresholds) into ok, warn, fail or error, with a message and a
// remedy. docs/pidoctor.md describes the format and the topics.
package pidoctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// Name is the app name and the main config section of the kind.
const Name = "pidoctor"

// Limits of the request handling.
const (
	// MaxPayload is the largest request payload accepted (requests carry no
	// parameters: empty or {}).
	MaxPayload      = 1024
	subscriptionLen = 64
	// maxWaiting bounds the requests waiting for a run.
	maxWaiting   = 64
	replyTimeout = 10 * time.Second
)

// Kind returns the PiDoctor module kind.
func Kind() modules.Kind {
	return modules.Kind{Name: Name, Load: Load}
}

// Load decodes the "pidoctor" config section and the module files. A bad
// check is reported with its file and field and left out; the other checks
// load. The module always publishes a catalogue, even an empty one.
func Load(env modules.Env, section []byte, sectionFile string, files []modules.File) (modules.Module, []modules.Problem) {
	return load(env, section, sectionFile, files)
}

func load(env modules.Env, section []byte, sectionFile string, files []modules.File) (*Module, []modules.Problem) {
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, probs := decodeConfig(section, sectionFile)
	root := env.HostRoot
	if root == "" {
		root = "/"
	}
	m := &Module{log: log.With("module", Name), cfg: cfg, checks: map[string]*check{}, now: time.Now,
		host: &host{root: root, stateDir: env.StateDir, now: time.Now, adjtimex: kernelClockSynced}}
	l := &loader{cfg: cfg}
	files = slices.Clone(files)
	slices.SortStableFunc(files, func(a, b modules.File) int { return strings.Compare(a.Path, b.Path) })
	byID := map[string]string{}
	for _, f := range files {
		mod, ps := l.decodeModule(f)
		probs = append(probs, ps...)
		if mod == nil {
			continue
		}
		if other, dup := byID[mod.ID]; dup {
			probs = append(probs, modules.Problem{File: f.Path, Field: "id", Err: fmt.Errorf("module id %q is already used by %s", mod.ID, other)})
			continue
		}
		byID[mod.ID] = f.Path
		if len(mod.Checks) == 0 {
			continue
		}
		m.mods = append(m.mods, mod)
	}
	slices.SortStableFunc(m.mods, func(a, b *module) int { return strings.Compare(a.ID, b.ID) })
	for _, mod := range m.mods {
		for _, c := range mod.Checks {
			m.checks[mod.ID+"/"+c.ID] = c
			m.order = append(m.order, c)
		}
	}
	m.runner = newRunner(cfg.MaxParallel, m.host, m.clock)
	return m, probs
}

// Module is a loaded PiDoctor instance.
type Module struct {
	log    *slog.Logger
	cfg    Config
	mods   []*module
	checks map[string]*check // "module/check"
	order  []*check
	host   *host
	runner *runner
	now    func() time.Time

	bus    modules.Bus
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	waiting int
	full    *fullRun                 // the full run in progress, if any
	last    *contract.PiDoctorReport // latest report
	verdict map[string]string        // "module/check" -> latest verdict
}

// fullRun is a run of every check that requests join while it runs.
type fullRun struct {
	done   chan struct{}
	report contract.PiDoctorReport
}

func (m *Module) clock() time.Time { return m.now() }

// Checks lists "module/check" ids of the loaded checks in report order.
func (m *Module) Checks() []string {
	out := make([]string, len(m.order))
	for i, c := range m.order {
		out[i] = c.Module + "/" + c.ID
	}
	return out
}

// Start implements modules.Module.
func (m *Module) Start(ctx context.Context, bus modules.Bus) error {
	m.bus = bus
	m.ctx, m.cancel = context.WithCancel(ctx)
	cat, err := json.Marshal(m.catalogue())
	if err != nil {
		return fmt.Errorf("pidoctor: encode catalogue: %w", err)
	}
	// Subscribe first: a client that sees the catalogue may run its checks
	// at once.
	for _, filter := range []string{contract.TopicPiDoctorRun, contract.TopicPiDoctorRunFilter} {
		if err := bus.Subscribe(filter, subscriptionLen, m.handle); err != nil {
			return fmt.Errorf("pidoctor: subscribe %s: %w", filter, err)
		}
	}
	if err := bus.Publish(m.ctx, contract.TopicPiDoctorChecks, cat, modules.PublishOptions{Retain: true, QoS: 1}); err != nil {
		return fmt.Errorf("pidoctor: publish catalogue: %w", err)
	}
	if m.cfg.Interval > 0 && len(m.order) > 0 {
		m.wg.Add(1)
		go m.periodic()
	}
	m.log.Info("pidoctor started", "modules", len(m.mods), "checks", len(m.order), "interval", m.cfg.Interval)
	return nil
}

// Close implements modules.Module: running checks are cancelled (their
// process groups killed) and waited for.
func (m *Module) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	m.host.Close()
	return nil
}

func (m *Module) catalogue() contract.PiDoctorCatalogue {
	cat := contract.PiDoctorCatalogue{Contract: contract.Version, Modules: []contract.PiDoctorModule{},
		IntervalS: m.cfg.Interval.Seconds(), TS: m.now().UTC().Round(time.Millisecond)}
	for _, mod := range m.mods {
		pm := contract.PiDoctorModule{ID: mod.ID, Name: mod.Name, Description: mod.Description, Checks: []contract.PiDoctorCheck{}}
		for _, c := range mod.Checks {
			pc := contract.PiDoctorCheck{ID: c.ID, Name: c.Name, Description: c.Description, Category: c.Category,
				Kind: contract.PiDoctorKindExternal, Topic: contract.PiDoctorRunTopic(mod.ID, c.ID)}
			if c.Builtin != "" {
				pc.Kind, pc.Builtin = contract.PiDoctorKindBuiltin, c.Builtin
			}
			pm.Checks = append(pm.Checks, pc)
		}
		cat.Modules = append(cat.Modules, pm)
	}
	return cat
}

func (m *Module) periodic() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		if _, ok := m.runAll(); !ok {
			return
		}
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runAll runs every check, or joins the full run in progress, and returns
// its report; ok is false when the module closed first.
func (m *Module) runAll() (contract.PiDoctorReport, bool) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return contract.PiDoctorReport{}, false
	}
	run := m.full
	if run == nil {
		run = &fullRun{done: make(chan struct{})}
		m.full = run
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			rep := m.runner.report(m.ctx, m.order)
			m.mu.Lock()
			m.full = nil
			m.mu.Unlock()
			run.report = rep
			if m.ctx.Err() == nil {
				m.publishReport(rep, rep.Checks)
			}
			close(run.done)
		}()
	}
	m.mu.Unlock()
	select {
	case <-run.done:
		return run.report, m.ctx.Err() == nil
	case <-m.ctx.Done():
		<-run.done
		return run.report, false
	}
}

// runOne runs one check and returns its result.
func (m *Module) runOne(c *check) (contract.PiDoctorResult, bool) {
	res := m.runner.run(m.ctx, []*check{c})[0]
	if m.ctx.Err() != nil {
		return res, false
	}
	m.mu.Lock()
	var rep contract.PiDoctorReport
	if m.last != nil {
		rep = *m.last
		rep.Checks = slices.Clone(m.last.Checks)
		i := slices.IndexFunc(rep.Checks, func(r contract.PiDoctorResult) bool { return r.Module == c.Module && r.ID == c.ID })
		if i >= 0 {
			rep.Checks[i] = res
		} else {
			rep.Checks = append(rep.Checks, res)
		}
		rep.Summary = contract.Summarize(rep.Checks)
		rep.TS = res.TS
	}
	haveReport := m.last != nil
	m.mu.Unlock()
	if haveReport {
		m.publishReport(rep, []contract.PiDoctorResult{res})
	} else {
		m.noteVerdicts([]contract.PiDoctorResult{res})
	}
	return res, true
}

// publishReport retains rep and publishes an event for every verdict among
// changed that differs from the previous one.
func (m *Module) publishReport(rep contract.PiDoctorReport, changed []contract.PiDoctorResult) {
	m.mu.Lock()
	if m.last != nil && rep.TS.Before(m.last.TS) {
		// A single-check run finished after this full run began and is newer.
		m.mu.Unlock()
		return
	}
	m.last = &rep
	m.mu.Unlock()
	m.noteVerdicts(changed)
	b, err := json.Marshal(rep)
	if err != nil {
		m.log.Error("encode report", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
	defer cancel()
	if err := m.bus.Publish(ctx, contract.TopicPiDoctorReport, b, modules.PublishOptions{Retain: true, QoS: 1, Sticky: true}); err != nil {
		m.log.Warn("publish report", "err", err)
	}
}

// noteVerdicts remembers verdicts and publishes an event for each change.
func (m *Module) noteVerdicts(results []contract.PiDoctorResult) {
	m.mu.Lock()
	if m.verdict == nil {
		m.verdict = map[string]string{}
	}
	var events []contract.Event
	for _, r := range results {
		key := r.Module + "/" + r.ID
		prev, seen := m.verdict[key]
		m.verdict[key] = r.Verdict
		if !seen || prev == r.Verdict {
			continue
		}
		events = append(events, contract.Event{TS: m.now().UTC(), Kind: contract.EventVerdict, Module: Name,
			Message: fmt.Sprintf("%s: %s -> %s", r.Name, prev, r.Verdict),
			Fields:  map[string]any{"module": r.Module, "check": r.ID, "from": prev, "to": r.Verdict, "message": r.Message}})
	}
	m.mu.Unlock()
	for _, ev := range events {
		m.bus.Event(ev)
	}
}

// exchange is one request and its replies.
type exchange struct {
	m      *Module
	req    *modules.Request
	module string
	check  string
	mu     sync.Mutex
	seq    int
}

func (x *exchange) send(r contract.PiDoctorReply) {
	x.mu.Lock()
	defer x.mu.Unlock()
	r.Topic, r.TS = x.req.Topic, x.m.now().UTC()
	r.Module, r.Check = x.module, x.check
	r.Seq = x.seq
	x.seq++
	b, err := json.Marshal(r)
	if err != nil {
		x.m.log.Error("encode reply", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
	defer cancel()
	if err := x.m.bus.Reply(ctx, x.req, b); err != nil {
		x.m.log.Warn("reply", "topic", x.req.Topic, "status", r.Status, "err", err)
	}
}

func (x *exchange) reject(err error) {
	x.send(contract.PiDoctorReply{Response: contract.Response{Status: contract.StatusRejected, Error: err.Error()}})
	x.m.bus.Event(contract.Event{TS: x.m.now().UTC(), Kind: contract.EventRejected, Module: Name,
		Message: "pidoctor request rejected: " + err.Error(), Topic: x.req.Topic, Requester: x.req.Requester})
}

// handle runs on the subscription worker; runs go to goroutines of their own.
func (m *Module) handle(_ context.Context, req *modules.Request) {
	x := &exchange{m: m, req: req}
	var c *check
	if req.Topic != contract.TopicPiDoctorRun {
		mod, id, ok := contract.ParsePiDoctorRunTopic(req.Topic)
		x.module, x.check = mod, id
		if !ok {
			x.reject(fmt.Errorf("topic %q is not pidoctor/run or pidoctor/run/{module}/{check}", truncate(req.Topic, 128)))
			return
		}
		if c = m.checks[mod+"/"+id]; c == nil {
			x.reject(fmt.Errorf("unknown check %q in module %q", truncate(id, 64), truncate(mod, 64)))
			return
		}
	}
	if err := checkPayload(req.Payload); err != nil {
		x.reject(err)
		return
	}
	if req.Expired(m.now()) {
		x.reject(errors.New("request expired before it was handled (message expiry passed); not run"))
		return
	}
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		x.reject(errors.New("pidoctor is shutting down"))
		return
	case m.waiting >= maxWaiting:
		m.mu.Unlock()
		x.reject(fmt.Errorf("too many diagnostics requests waiting (%d); try again later", maxWaiting))
		return
	}
	m.waiting++
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			m.waiting--
			m.mu.Unlock()
		}()
		x.send(contract.PiDoctorReply{Response: contract.Response{Status: contract.StatusAccepted}})
		final := contract.PiDoctorReply{Response: contract.Response{Status: contract.StatusDone}}
		if c == nil {
			rep, ok := m.runAll()
			if ok {
				final.Report = &rep
			}
		} else if res, ok := m.runOne(c); ok {
			final.Result = &res
		}
		if final.Report == nil && final.Result == nil {
			final.Status, final.Error = contract.StatusFailed, "pidoctor shut down before the checks finished"
		}
		x.send(final)
	}()
}

// checkPayload accepts an empty payload or an empty JSON object.
func checkPayload(p []byte) error {
	if len(p) > MaxPayload {
		return fmt.Errorf("payload of %d bytes is larger than %d", len(p), MaxPayload)
	}
	t := bytes.TrimSpace(p)
	if len(t) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(t, &obj); err != nil || obj == nil {
		return errors.New("payload must be empty or {}")
	}
	if len(obj) > 0 {
		return errors.New("pidoctor requests take no parameters: send an empty payload or {}")
	}
	return nil
}
