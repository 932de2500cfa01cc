// Package picontrol is the PiControl module kind: commands defined in JSON
// module files, each run as its configured user through package runas and
// answered over the Bus: one final reply (done, failed or rejected) for a
// command that ends within the reply grace period, or accepted, running
// chunks and the final reply for a longer one. docs/picontrol.md describes
// the module format and the exchange.
package picontrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/agent/runas"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/signature"
)

// Name is the app name and the main config section of the kind.
const Name = "picontrol"

// subscriptionQueue is the queue length asked of the Bus for requests; the
// handler only validates and hands work to goroutines, so it drains fast.
const subscriptionQueue = 256

// replyTimeout bounds one reply or result publish.
const replyTimeout = 10 * time.Second

// Kind returns the PiControl module kind.
func Kind() modules.Kind {
	return modules.Kind{Name: Name, Load: Load}
}

// Load decodes the "picontrol" config section and the module files. A bad
// file is reported and skipped; the others load. The returned module always
// publishes a catalogue, even an empty one, so that a catalogue of removed
// modules does not linger.
func Load(env modules.Env, section []byte, sectionFile string, files []modules.File) (modules.Module, []modules.Problem) {
	m, probs := load(env, section, sectionFile, files)
	return m, probs
}

func load(env modules.Env, section []byte, sectionFile string, files []modules.File) (*Module, []modules.Problem) {
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, probs := decodeConfig(section, sectionFile)
	l := &loader{cfg: cfg}
	m := &Module{
		log:      log.With("module", Name),
		cfg:      cfg,
		commands: map[string]*command{},
		run:      runas.Run,
		now:      time.Now,
		root:     env.Root,
		sigs:     env.Signatures,
	}
	files = slices.Clone(files)
	slices.SortStableFunc(files, func(a, b modules.File) int { return strings.Compare(a.Path, b.Path) })
	byID := map[string]string{}
	for _, f := range files {
		mod, ps := l.decodeModule(f)
		if len(ps) > 0 {
			probs = append(probs, ps...)
			continue
		}
		if other, dup := byID[mod.ID]; dup {
			probs = append(probs, modules.Problem{File: f.Path, Field: "id",
				Err: fmt.Errorf("module id %q is already used by %s", mod.ID, other)})
			continue
		}
		byID[mod.ID] = f.Path
		m.mods = append(m.mods, mod)
		for _, c := range mod.Commands {
			m.commands[mod.ID+"/"+c.ID] = c
		}
	}
	slices.SortStableFunc(m.mods, func(a, b *module) int { return strings.Compare(a.ID, b.ID) })
	return m, probs
}

// Module is a loaded PiControl instance. Start publishes the catalogue and
// subscribes; Close kills running commands and waits for them. A new
// instance (after a reload) may be started once the old one is closed.
type Module struct {
	log      *slog.Logger
	cfg      Config
	mods     []*module
	commands map[string]*command // "module/command"
	// run starts a command; tests replace it to see what reaches exec.
	run func(context.Context, runas.Spec) (runas.Result, error)
	now func() time.Time
	// root and sigs verify signed requests (signed.go).
	root contract.Root
	sigs *signature.Verifier

	bus     modules.Bus
	ctx     context.Context
	cancel  context.CancelFunc
	sem     chan struct{}
	mu      sync.Mutex
	closed  bool
	pending int // accepted, not finished
	wg      sync.WaitGroup
}

// Start implements modules.Module.
func (m *Module) Start(ctx context.Context, bus modules.Bus) error {
	m.bus = bus
	m.ctx, m.cancel = context.WithCancel(ctx)
	m.sem = make(chan struct{}, m.cfg.MaxParallel)
	cat, err := json.Marshal(m.catalogue())
	if err != nil {
		return fmt.Errorf("picontrol: encode catalogue: %w", err)
	}
	// Subscribe first: a client that sees the catalogue may run its
	// commands at once.
	if err := bus.Subscribe(contract.TopicPiControlRunFilter, subscriptionQueue, m.handle); err != nil {
		return fmt.Errorf("picontrol: subscribe %s: %w", contract.TopicPiControlRunFilter, err)
	}
	if err := bus.Publish(m.ctx, contract.TopicPiControlCommands, cat, modules.PublishOptions{Retain: true, QoS: 1}); err != nil {
		return fmt.Errorf("picontrol: publish catalogue: %w", err)
	}
	m.log.Info("picontrol started", "modules", len(m.mods), "commands", len(m.commands))
	return nil
}

// Close implements modules.Module: it refuses new requests, kills the
// process groups of running commands (SIGTERM, then SIGKILL after the grace
// period), answers waiting requests and waits for everything.
func (m *Module) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	return nil
}

// catalogue builds the public catalogue: never argv, user or env.
func (m *Module) catalogue() contract.PiControlCatalogue {
	cat := contract.PiControlCatalogue{Contract: contract.Version, Modules: []contract.PiControlModule{}, TS: m.now().UTC()}
	for _, mod := range m.mods {
		pm := contract.PiControlModule{ID: mod.ID, Name: mod.Name, Description: mod.Description, Icon: mod.Icon,
			Commands: []contract.PiControlCommand{}}
		for _, c := range mod.Commands {
			pc := contract.PiControlCommand{ID: c.ID, Name: c.Name, Description: c.Description, Icon: c.Icon,
				Confirm: c.Confirm, Topic: contract.PiControlRunTopic(mod.ID, c.ID), Parameters: []contract.PiControlParameter{},
				RequireSignature: c.RequireSignature}
			for _, p := range c.Params {
				pc.Parameters = append(pc.Parameters, contract.PiControlParameter{
					Name: p.Name, Type: p.Type, Description: p.Description, Required: p.Required,
					Default: p.defaultValue, Pattern: p.Pattern, Enum: p.Enum, MaxLength: maxLenFor(p),
					Min: p.Min, Max: p.Max,
				})
			}
			pm.Commands = append(pm.Commands, pc)
		}
		cat.Modules = append(cat.Modules, pm)
	}
	return cat
}

func maxLenFor(p *param) int {
	if p.Type == contract.PiControlParamString {
		return p.MaxLength
	}
	return 0
}

// exchange is one request and the replies it gets. A request that ends
// within the reply grace period gets one reply, the final one; a longer one
// gets "accepted" when the grace period passes (or as soon as its output
// would not fit the final reply), then its output as "running" chunks, then
// the final reply.
type exchange struct {
	m       *Module
	req     *modules.Request
	module  string
	command string
	user    string
	// signedBy names the key of a signed request, for the audit.
	signedBy string

	mu       sync.Mutex
	seq      int
	promoted bool        // accepted was sent: output is streamed
	final    bool        // the final reply was sent
	grace    *time.Timer // promotes the exchange when the grace period passes
	held     []heldChunk // output not sent while not promoted
	heldSize map[string]int
}

type heldChunk struct{ stream, data string }

func (x *exchange) base(status string) contract.PiControlReply {
	return contract.PiControlReply{
		Response: contract.Response{Status: status, Topic: x.req.Topic, TS: x.m.now().UTC()},
		Module:   x.module, Command: x.command,
	}
}

// startGrace arms the grace period: when it passes before the final reply,
// the exchange is promoted (accepted, then streamed output).
func (x *exchange) startGrace(d time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if d <= 0 {
		x.promoteLocked()
		return
	}
	x.grace = time.AfterFunc(d, func() {
		x.mu.Lock()
		defer x.mu.Unlock()
		x.promoteLocked()
	})
}

// promoteLocked sends accepted and the output held so far, once, unless the
// final reply went out already.
func (x *exchange) promoteLocked() {
	if x.promoted || x.final {
		return
	}
	x.promoted = true
	x.sendLocked(x.base(contract.StatusAccepted))
	for _, c := range x.held {
		x.sendChunkLocked(c.stream, c.data)
	}
	x.held, x.heldSize = nil, nil
}

// output takes one chunk of output: streamed once promoted, otherwise held
// for the final reply. Output that the final reply could not carry whole
// (more than limit bytes of a stream) promotes the exchange at once, so no
// byte is lost.
func (x *exchange) output(stream string, data []byte, limit int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.final {
		return
	}
	if x.promoted {
		x.sendChunkLocked(stream, string(data))
		return
	}
	if x.heldSize == nil {
		x.heldSize = map[string]int{}
	}
	x.held = append(x.held, heldChunk{stream, string(data)})
	x.heldSize[stream] += len(data)
	if x.heldSize[stream] > limit {
		x.promoteLocked()
	}
}

func (x *exchange) sendChunkLocked(stream, data string) {
	cr := x.base(contract.StatusRunning)
	cr.Stream, cr.Data = stream, data
	x.sendLocked(cr)
}

// finish sends the final reply: after accepted and every chunk when the
// exchange was promoted, alone (seq 0) otherwise.
func (x *exchange) finish(r contract.PiControlReply) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.grace != nil {
		x.grace.Stop()
	}
	x.final = true
	x.held, x.heldSize = nil, nil
	x.sendLocked(r)
}

// sendLocked publishes one reply of the exchange with the next sequence
// number.
func (x *exchange) sendLocked(r contract.PiControlReply) {
	r.Seq = x.seq
	x.seq++
	b, err := json.Marshal(r)
	if err != nil {
		x.m.log.Error("encode reply", "topic", x.req.Topic, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
	defer cancel()
	if err := x.m.bus.Reply(ctx, x.req, b); err != nil {
		x.m.log.Warn("reply", "topic", x.req.Topic, "status", r.Status, "err", err)
	}
}

// publishResult retains the final reply of a run on the command's result
// topic, unless a run that ended later already published its own.
func (x *exchange) publishResult(c *command, order uint64, r contract.PiControlReply) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	c.result.mu.Lock()
	defer c.result.mu.Unlock()
	if order < c.result.published {
		return
	}
	c.result.published = order
	ctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
	defer cancel()
	if err := x.m.bus.Publish(ctx, contract.PiControlResultTopic(x.module, x.command), b,
		modules.PublishOptions{Retain: true, QoS: 1, Sticky: true}); err != nil {
		x.m.log.Warn("publish result", "topic", x.req.Topic, "err", err)
	}
}

// reject answers the request with a final rejected and audits the refusal.
func (x *exchange) reject(param string, err error) {
	r := x.base(contract.StatusRejected)
	r.Error = err.Error()
	r.Parameter = param
	x.finish(r)
	fields := map[string]any{"module": x.module, "command": x.command, "error": r.Error}
	if x.user != "" {
		fields["user"] = x.user
	}
	if param != "" {
		fields["parameter"] = param
	}
	signatureFields(fields, err)
	x.m.bus.Event(contract.Event{TS: x.m.now().UTC(), Kind: contract.EventRejected, Module: Name,
		Message: fmt.Sprintf("%s/%s rejected: %s", x.module, x.command, r.Error),
		Topic:   x.req.Topic, Requester: x.req.Requester, Fields: fields})
}

// handle runs on the subscription worker: it validates and never blocks on a
// command.
func (m *Module) handle(_ context.Context, req *modules.Request) {
	x := &exchange{m: m, req: req}
	mod, cmd, ok := contract.ParsePiControlRunTopic(req.Topic)
	x.module, x.command = mod, cmd
	if !ok {
		x.reject("", fmt.Errorf("topic %q is not picontrol/run/{module}/{command}", req.Topic))
		return
	}
	if req.Expired(m.now()) {
		x.reject("", errors.New("request expired before it was handled (message expiry passed); not run"))
		return
	}
	c := m.commands[mod+"/"+cmd]
	if c == nil {
		if !m.hasModule(mod) {
			x.reject("", fmt.Errorf("unknown module %q", mod))
		} else {
			x.reject("", fmt.Errorf("unknown command %q in module %q", cmd, mod))
		}
		return
	}
	x.user = c.User.Name
	if c.RequireSignature {
		key, err := m.verify(req, c)
		if err != nil {
			x.reject("", err)
			return
		}
		x.signedBy = key
	}
	raw, err := decodePayload(req.Payload)
	if err != nil {
		var pe *paramError
		if errors.As(err, &pe) {
			x.reject(pe.Param, err)
		} else {
			x.reject("", err)
		}
		return
	}
	vals, err := c.bindJSON(raw)
	if err != nil {
		var pe *paramError
		errors.As(err, &pe)
		x.reject(pe.Param, err)
		return
	}

	// Admission: per command (reject or queue), then the module-wide queue.
	c.mu.Lock()
	if !c.Queue && c.active > 0 {
		c.mu.Unlock()
		x.reject("", fmt.Errorf("%s/%s is already running", mod, cmd))
		return
	}
	c.active++
	c.mu.Unlock()
	release := func() {
		c.mu.Lock()
		c.active--
		c.mu.Unlock()
	}
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		release()
		x.reject("", errors.New("picontrol is shutting down"))
		return
	case m.pending >= m.cfg.MaxParallel+m.cfg.MaxQueue:
		m.mu.Unlock()
		release()
		x.reject("", fmt.Errorf("too many commands running or waiting (%d); try again later", m.pending))
		return
	}
	m.pending++
	m.wg.Add(1)
	m.mu.Unlock()
	var once sync.Once
	admitted := func() {
		once.Do(func() {
			release()
			m.mu.Lock()
			m.pending--
			m.mu.Unlock()
		})
	}
	// The command starts at once; replies may wait for the broker, so they
	// all go out from the goroutine and the subscription worker never waits.
	go func() {
		defer m.wg.Done()
		defer admitted()
		m.execute(x, c, vals, admitted)
	}()
}

func (m *Module) hasModule(id string) bool {
	for _, mod := range m.mods {
		if mod.ID == id {
			return true
		}
	}
	return false
}

// execute waits for its turn, runs the command and sends the final reply,
// then the retained result and the audit event. Everything the request
// holds (its place in the queue, the command's and the module's slots) is
// given back before the final reply goes out: a requester that sends its
// next request as soon as it has the answer finds the command free. The
// result and the event follow the final reply, so they never delay it.
func (m *Module) execute(x *exchange, c *command, vals map[string]string, admitted func()) {
	x.startGrace(time.Duration(m.cfg.ReplyGrace))
	var held []chan struct{}
	free := func() {
		for _, s := range held {
			<-s
		}
		held = nil
		admitted()
	}
	end := func(r contract.PiControlReply) {
		order := c.result.next()
		free()
		x.finish(r)
		x.publishResult(c, order, r)
		m.audit(x, c, r)
	}
	notRun := func(why string) {
		r := x.base(contract.StatusFailed)
		r.Error = why
		end(r)
	}
	if c.Queue {
		select {
		case c.slot <- struct{}{}:
			held = append(held, c.slot)
		case <-m.ctx.Done():
			notRun("picontrol shut down before the command ran")
			return
		}
	}
	select {
	case m.sem <- struct{}{}:
		held = append(held, m.sem)
	case <-m.ctx.Done():
		notRun("picontrol shut down before the command ran")
		return
	}
	if x.req.Expired(m.now()) {
		free()
		x.reject("", errors.New("request expired while waiting to run (message expiry passed); not run"))
		return
	}
	if m.ctx.Err() != nil {
		notRun("picontrol shut down before the command ran")
		return
	}
	// A chunk may end inside a UTF-8 sequence: hold the incomplete tail back
	// for the next chunk of the same stream.
	limit := m.cfg.OutputLimit
	var tailMu sync.Mutex
	tails := map[string][]byte{}
	r := m.runCommand(m.ctx, c, vals, func(stream string, data []byte) {
		tailMu.Lock()
		data = append(tails[stream], data...)
		complete, rest := splitUTF8(data)
		tails[stream] = append([]byte(nil), rest...)
		tailMu.Unlock()
		if len(complete) > 0 {
			x.output(stream, complete, limit)
		}
	})
	for _, stream := range []string{runas.Stdout, runas.Stderr} {
		if len(tails[stream]) > 0 {
			x.output(stream, tails[stream], limit)
		}
	}
	r.Response.Topic = x.req.Topic
	r.Module, r.Command = x.module, x.command
	end(r)
}

// resultOrder keeps the retained result of a command the latest one: runs
// are numbered as they end, and a result is published only if no run that
// ended later published first.
type resultOrder struct {
	ended     atomic.Uint64
	mu        sync.Mutex // held while publishing
	published uint64
}

func (o *resultOrder) next() uint64 { return o.ended.Add(1) }

// runCommand runs c with bound values through runas and returns the final
// reply (done or failed) without topic.
func (m *Module) runCommand(ctx context.Context, c *command, vals map[string]string, onOutput func(string, []byte)) contract.PiControlReply {
	argv, env := c.build(vals)
	spec := runas.Spec{
		Path: c.Path, Args: argv, User: c.User, Env: env, Dir: c.Workdir,
		NoNewPrivs: c.NoNewPrivs, LimitCapabilities: c.LimitCaps, Capabilities: c.Caps,
		Timeout: c.Timeout, KillGrace: time.Duration(m.cfg.KillGrace), OutputLimit: m.cfg.OutputLimit,
		OnOutput: onOutput,
	}
	if m.cfg.OutputLimit == 0 {
		spec.OutputLimit = -1
	}
	res, err := m.run(ctx, spec)
	r := contract.PiControlReply{Response: contract.Response{Status: contract.StatusDone, TS: m.now().UTC()}}
	if err != nil && errors.Is(err, runas.ErrStart) {
		r.Status = contract.StatusFailed
		r.Error = "could not start the command: " + err.Error()
		return r
	}
	code := res.ExitCode
	dur := res.Duration.Milliseconds()
	r.ExitCode, r.DurationMS = &code, &dur
	r.Signal = res.Signal
	r.Stdout, r.Stderr = string(res.Stdout), string(res.Stderr)
	r.Truncated = res.StdoutTruncated || res.StderrTruncated
	switch {
	case err != nil:
		r.Status, r.Error = contract.StatusFailed, err.Error()
	case res.Reason == runas.ReasonTimeout:
		r.Status, r.Error = contract.StatusFailed, fmt.Sprintf("timed out after %v; the process group was killed", c.Timeout)
	case res.Reason == runas.ReasonCanceled:
		r.Status, r.Error = contract.StatusFailed, "picontrol shut down; the process group was killed"
	case res.Signal != "":
		r.Status, r.Error = contract.StatusFailed, "killed by "+res.Signal
	}
	return r
}

// audit records one run (or a run that never started) on the events topic.
func (m *Module) audit(x *exchange, c *command, r contract.PiControlReply) {
	fields := map[string]any{"module": x.module, "command": x.command, "user": c.User.Name, "status": r.Status}
	msg := fmt.Sprintf("%s/%s as %s: %s", x.module, x.command, c.User.Name, r.Status)
	if r.ExitCode != nil {
		fields["exit_code"] = *r.ExitCode
		msg += fmt.Sprintf(", exit %d", *r.ExitCode)
	}
	if r.DurationMS != nil {
		fields["duration_ms"] = *r.DurationMS
		msg += fmt.Sprintf(" in %d ms", *r.DurationMS)
	}
	if r.Error != "" {
		fields["error"] = r.Error
	}
	if x.req.Requester != "" {
		fields["requester"] = x.req.Requester
	}
	if x.signedBy != "" {
		fields["signed_by"] = x.signedBy
	}
	m.bus.Event(contract.Event{TS: m.now().UTC(), Kind: contract.EventCommand, Module: Name, Message: msg,
		Topic: x.req.Topic, Requester: x.req.Requester, Fields: fields})
}

// Commands lists "module/command" ids of the loaded commands, sorted.
func (m *Module) Commands() []string {
	return slices.Sorted(maps.Keys(m.commands))
}

// splitUTF8 splits b before a UTF-8 sequence that is cut off at its end.
func splitUTF8(b []byte) (complete, rest []byte) {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i], b[i:]
			}
			break
		}
	}
	return b, nil
}
