// Package agent is the picockpit-client daemon core: config, identity, the
// MQTT 5 session, the module lifecycle (load, start, reload, stop) and the
// systemd integration. It knows module kinds only through modules.Kind and
// never imports a module's internals.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// StaleRetainedGrace is how long after a reload the modules have to publish
// their retained topics again; what a module published before the reload and
// not since is then cleared (a GPIO pin removed from the config).
var StaleRetainedGrace = 5 * time.Second

// ReadyTimeout bounds how long start-up waits for the broker before telling
// systemd READY=1 anyway, so a broker that is down never holds up boot.
const ReadyTimeout = 15 * time.Second

// Options configure an Agent.
type Options struct {
	ConfigDir string
	StateDir  string
	Version   string
	// Environ and Sets are the environment and --set overrides.
	Environ []string
	Sets    []string
	Kinds   []modules.Kind
	Log     *slog.Logger
	// Reload delivers reload requests (SIGHUP).
	Reload <-chan struct{}
	// ReadyTimeout replaces the package's ReadyTimeout when positive (tests).
	ReadyTimeout time.Duration
	// EventWindow replaces the 10 s over which refusals are summed up on
	// events when positive (tests).
	EventWindow time.Duration
}

// Agent is a running daemon.
type Agent struct {
	opts    Options
	log     *slog.Logger
	cfg     Config
	device  contract.Device
	root    contract.Root
	session *Session
	notify  Notifier
	started time.Time
	status  *statusFile

	mu      sync.Mutex
	running []runningModule
	apps    []string
	// staleTimer clears retained topics left over by the last reload.
	staleTimer *time.Timer
	// stateErr says why the state dir cannot be written (nil: it can).
	stateErr error
}

type runningModule struct {
	kind   string
	mod    modules.Module
	cancel context.CancelFunc
}

// LoadResult is the outcome of loading config and modules without starting
// anything (also what `picockpit-client check` prints).
type LoadResult struct {
	Config   Config
	Device   contract.Device
	Modules  map[string]modules.Module
	Problems []modules.Problem
}

// KindNames lists the names of kinds.
func KindNames(kinds []modules.Kind) []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.Name)
	}
	return out
}

// SectionKeys lists the main config sections of kinds.
func SectionKeys(kinds []modules.Kind) []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.SectionKey())
	}
	return out
}

// Load reads the config and every module file and builds (does not start)
// the modules. A config error is returned as err; module problems are
// collected and the other modules still load. The modules are loaded even
// when the main config has problems (with the bad values at their
// defaults), so that check can report everything at once.
func Load(opts Options, log *slog.Logger) (LoadResult, error) {
	var res LoadResult
	cfg, cfgErr := LoadConfig(opts.ConfigDir, opts.Environ, opts.Sets, SectionKeys(opts.Kinds))
	res.Config = cfg
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}
	dev, err := ReadDevice(cfg.Host.Root, cfg.Device.ID)
	if err != nil && cfgErr == nil {
		return res, &ConfigError{Where: "identity", Key: "device.id", Err: err}
	}
	res.Device = dev
	res.Modules, res.Problems = loadModules(opts, cfg, dev, log)
	return res, cfgErr
}

func loadModules(opts Options, cfg Config, dev contract.Device, log *slog.Logger) (map[string]modules.Module, []modules.Problem) {
	var problems []modules.Problem
	known := map[string]bool{}
	for _, k := range opts.Kinds {
		known[k.Name] = true
	}
	// Report app directories that no kind handles (typos like "picontol").
	appDirs, _ := filepath.Glob(filepath.Join(opts.ConfigDir, "apps", "*", "*"))
	for _, d := range appDirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() && !known[filepath.Base(d)] {
			problems = append(problems, modules.Problem{File: d, Err: fmt.Errorf("no module kind %q (known: %s)",
				filepath.Base(d), strings.Join(KindNames(opts.Kinds), ", "))})
		}
	}
	verifier, probs := trustedKeys(opts.ConfigDir) // signed requests: agent/trustedkeys.go
	problems = append(problems, probs...)
	mods := map[string]modules.Module{}
	for _, k := range opts.Kinds {
		files, probs := ModuleFiles(opts.ConfigDir, k.Name)
		problems = append(problems, probs...)
		env := ModuleEnv(opts, cfg, dev, log) // modules tag their lines with .With("module", ...)
		env.Signatures = verifier
		m, probs := k.Load(env, cfg.Sections[k.SectionKey()], cfg.File, files)
		problems = append(problems, probs...)
		if m != nil {
			mods[k.Name] = m
		}
	}
	return mods, problems
}

// ModuleFiles reads <configDir>/apps/*/<kind>/modules/*.json in name order.
func ModuleFiles(configDir, kind string) ([]modules.File, []modules.Problem) {
	paths, _ := filepath.Glob(filepath.Join(configDir, "apps", "*", kind, "modules", "*.json"))
	sort.Strings(paths)
	var files []modules.File
	var problems []modules.Problem
	for _, p := range paths {
		b, _, err := ReadTrusted(configDir, p) // StrictModes: agent/strictmodes.go
		if err != nil {
			problems = append(problems, modules.Problem{File: p, Err: refusal(p, err)})
			continue
		}
		files = append(files, modules.File{Path: p, Data: b})
	}
	return files, problems
}

// ModuleEnv is the environment a kind's Load gets.
func ModuleEnv(opts Options, cfg Config, dev contract.Device, log *slog.Logger) modules.Env {
	return modules.Env{Log: log, HostRoot: cfg.Host.Root, StateDir: opts.StateDir, ConfigDir: opts.ConfigDir,
		Device: dev, Root: contract.Root{Prefix: cfg.Topics.Prefix, Device: dev.ID}}
}

// New loads the config and prepares the agent; Run starts it.
func New(opts Options) (*Agent, LoadResult, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	res, err := Load(opts, log)
	if err != nil {
		return nil, res, err
	}
	a := &Agent{opts: opts, log: log, cfg: res.Config, device: res.Device, notify: Notifier{log}, started: time.Now().UTC()}
	a.root = contract.Root{Prefix: a.cfg.Topics.Prefix, Device: a.device.ID}
	stateErr := checkStateDir(opts.StateDir)
	a.status = newStatusFile(opts.StateDir, Status{PID: os.Getpid(), Version: opts.Version, Device: a.device.ID, StartedAt: a.started})
	s, err := NewSession(SessionConfig{Broker: a.cfg.Broker, Root: a.root, StateDir: opts.StateDir,
		Log: log.With("component", "mqtt"), OnStatus: a.notify.Status, Info: a.infoPayload, OnConn: a.observeConn,
		EventWindow: opts.EventWindow})
	if err != nil {
		return nil, res, err
	}
	a.session = s
	a.stateErr = stateErr
	return a, res, nil
}

// checkStateDir makes sure the state directory exists and can be written.
// A state dir that cannot be written is reported (log, events, STATUS=) and
// does not stop the agent: the session keeps its state in memory, and only
// what modules keep across restarts is lost. It also removes the on-disk
// MQTT session of older versions, which could replay a packet the broker
// refuses after every restart.
func checkStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir %s: %w", dir, err)
	}
	_ = os.RemoveAll(filepath.Join(dir, "session"))
	f, err := os.CreateTemp(dir, ".write-test-")
	if err != nil {
		return fmt.Errorf("state dir %s cannot be written: %w", dir, err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("ok"))
	cerr := f.Close()
	_ = os.Remove(name)
	if werr != nil || cerr != nil {
		return fmt.Errorf("state dir %s cannot be written: %w", dir, errors.Join(werr, cerr))
	}
	return nil
}

// Root returns the device's topic root.
func (a *Agent) Root() contract.Root { return a.root }

// Session returns the MQTT session (for tests).
func (a *Agent) Session() *Session { return a.session }

func (a *Agent) infoPayload() []byte {
	a.mu.Lock()
	apps := append([]string{}, a.apps...)
	a.mu.Unlock()
	b, _ := marshal(contract.Info{Contract: contract.Version, Agent: a.opts.Version, Device: a.device, Apps: apps, StartedAt: a.started,
		ReplyPrefix: a.root.Topic(contract.ReplyPrefix)})
	return b
}

// Run connects, starts the modules and serves until ctx is cancelled; then
// it stops the modules, publishes offline and disconnects.
func (a *Agent) Run(ctx context.Context, initial map[string]modules.Module, problems []modules.Problem) error {
	a.status.st.ClientID = a.session.ClientID()
	a.observeConn(ConnEvent{Kind: ConnConnecting})
	defer func() {
		if err := a.status.stopped(); err != nil {
			a.log.Warn("status file", "err", err)
		}
	}()
	// Modules first: their subscriptions are then part of the first
	// connection's SUBSCRIBE, so "online" means requests are taken.
	a.log.Info("starting", "version", a.opts.Version, "device", a.device.ID, "root", a.root.Base(),
		"broker", strings.Join(a.cfg.Broker.URL, ","), "client_id", a.session.ClientID())
	a.startModules(initial)
	if err := a.session.Start(); err != nil {
		return err
	}
	a.reportProblems(problems)
	if a.stateErr != nil {
		a.session.Event(contract.Event{Kind: contract.EventError, Message: a.stateErr.Error() + "; the agent keeps serving, but module state kept across restarts is lost: fix the directory's permissions or free space"})
		a.notify.Status("error: " + a.stateErr.Error())
	}
	a.session.Event(contract.Event{Kind: contract.EventStarted, Message: "agent started", Fields: map[string]any{"version": a.opts.Version}})

	// READY=1 once online, or after a bounded wait so boot is not held up.
	readyAfter := ReadyTimeout
	if a.opts.ReadyTimeout > 0 {
		readyAfter = a.opts.ReadyTimeout
	}
	readyTimer := time.NewTimer(readyAfter)
	defer readyTimer.Stop()
	online := a.session.Online()
	ready := false
	var wd <-chan time.Time
	if iv := WatchdogInterval(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		wd = t.C
	}
	for {
		select {
		case <-online:
			online = nil
			if !ready {
				ready = true
				a.notify.Send("READY=1")
			}
		case <-readyTimer.C:
			if !ready {
				ready = true
				a.log.Warn("broker not reachable yet; reporting ready and retrying in the background")
				a.notify.Send("READY=1")
			}
		case <-wd:
			// Pinged only from this loop: if it stalls, systemd restarts us.
			a.notify.Send("WATCHDOG=1")
		case <-a.opts.Reload:
			a.reloadWatched()
		case <-ctx.Done():
			if a.staleTimer != nil {
				a.staleTimer.Stop()
			}
			a.notify.Send("STOPPING=1")
			a.log.Info("stopping")
			a.stopModules()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return a.session.Close(sctx)
		}
	}
}

// observeConn records a connection state change in the status file.
func (a *Agent) observeConn(ev ConnEvent) {
	if err := a.status.observe(ev); err != nil {
		a.log.Warn("status file", "err", err)
	}
}

func (a *Agent) reportProblems(problems []modules.Problem) {
	for _, p := range problems {
		a.session.Event(contract.Event{Kind: contract.EventError, Message: "module config problem: " + p.Error(),
			Fields: map[string]any{"file": p.File, "field": p.Field}})
	}
}

func (a *Agent) startModules(mods map[string]modules.Module) {
	names := make([]string, 0, len(mods))
	for n := range mods {
		names = append(names, n)
	}
	sort.Strings(names)
	var apps []string
	var running []runningModule
	for _, n := range names {
		ctx, cancel := context.WithCancel(context.Background())
		bus := &moduleBus{s: a.session, owner: n}
		if err := mods[n].Start(ctx, bus); err != nil {
			cancel()
			a.session.Event(contract.Event{Kind: contract.EventError, Module: n, Message: "module failed to start: " + err.Error()})
			a.session.removeSubscriptions(n)
			_ = mods[n].Close()
			continue
		}
		apps = append(apps, n)
		running = append(running, runningModule{kind: n, mod: mods[n], cancel: cancel})
	}
	a.mu.Lock()
	a.running = running
	a.apps = apps
	a.mu.Unlock()
	a.session.PublishRetained(contract.TopicInfo, a.infoPayload(), modules.PublishOptions{QoS: 1})
}

func (a *Agent) stopModules() {
	a.mu.Lock()
	running := a.running
	a.running = nil
	a.mu.Unlock()
	for _, r := range running {
		a.session.removeSubscriptions(r.kind)
		r.cancel()
		if err := r.mod.Close(); err != nil {
			a.log.Warn("module close", "module", r.kind, "err", err)
		}
	}
}

// reloadWatched runs reload while pinging the systemd watchdog: stopping
// a module waits for its commands (up to their kill_grace), longer than
// WatchdogSec may allow.
func (a *Agent) reloadWatched() {
	iv := WatchdogInterval()
	if iv <= 0 {
		a.reload()
		return
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(iv)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				a.notify.Send("WATCHDOG=1")
			}
		}
	}()
	a.reload()
	close(done)
}

// reload re-reads the module files (and module sections of the config) and
// restarts the modules without touching the MQTT connection. Changes to the
// agent's own keys (broker, device, topics) need a restart; they are
// reported, not applied.
func (a *Agent) reload() {
	a.notify.Send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer a.notify.Send("READY=1")
	a.log.Info("reloading modules")
	cfg, err := LoadConfig(a.opts.ConfigDir, a.opts.Environ, a.opts.Sets, SectionKeys(a.opts.Kinds))
	if err != nil {
		a.session.Event(contract.Event{Kind: contract.EventError, Message: "reload refused, keeping the running modules: " + err.Error()})
		return
	}
	if fmt.Sprint(cfg.Broker, cfg.Device, cfg.Topics, cfg.Host) != fmt.Sprint(a.cfg.Broker, a.cfg.Device, a.cfg.Topics, a.cfg.Host) {
		a.session.Event(contract.Event{Kind: contract.EventError, Message: "broker, device, topics or host settings changed: restart the service to apply them (systemctl restart picockpit-client)"})
	}
	cfg.Broker, cfg.Device, cfg.Topics, cfg.Host = a.cfg.Broker, a.cfg.Device, a.cfg.Topics, a.cfg.Host
	began := time.Now()
	a.stopModules()
	mods, problems := loadModules(a.opts, cfg, a.device, a.log)
	a.startModules(mods)
	a.reportProblems(problems)
	a.mu.Lock()
	apps := append([]string(nil), a.apps...)
	a.mu.Unlock()
	a.session.Event(contract.Event{Kind: contract.EventReloaded, Message: "modules reloaded",
		Fields: map[string]any{"apps": apps, "problems": len(problems)}})
	if a.staleTimer != nil {
		a.staleTimer.Stop() // the newer reload's check covers the older one
	}
	a.staleTimer = time.AfterFunc(StaleRetainedGrace, func() {
		if cleared := a.session.clearStale(began); len(cleared) > 0 {
			a.log.Info("cleared retained topics that no module published since the reload", "topics", cleared)
		}
	})
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// moduleBus is the Bus one module sees: the session, with its subscriptions
// and events tagged with the module's name.
type moduleBus struct {
	s     *Session
	owner string
}

func (b *moduleBus) Publish(ctx context.Context, topic string, payload []byte, opts modules.PublishOptions) error {
	if opts.Retain {
		b.s.publishRetained(b.owner, topic, payload, opts)
		return nil
	}
	return b.s.Publish(ctx, topic, payload, opts)
}

func (b *moduleBus) Subscribe(filter string, queueLen int, h modules.Handler) error {
	return b.s.addSubscription(b.owner, filter, queueLen, h)
}

func (b *moduleBus) Reply(ctx context.Context, req *modules.Request, payload []byte) error {
	return b.s.Reply(ctx, req, payload)
}

func (b *moduleBus) Event(ev contract.Event) {
	if ev.Module == "" {
		ev.Module = b.owner
	}
	b.s.Event(ev)
}

func (b *moduleBus) Connection() (bool, <-chan struct{}) { return b.s.Connection() }

func marshal(v any) ([]byte, error) { return json.Marshal(v) }
