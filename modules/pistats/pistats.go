// Package pistats is the telemetry module: it samples the host (CPU, load,
// memory, disks, network, SoC temperature, CPU clock, the Raspberry Pi
// firmware's throttling and under-voltage flags, Wi-Fi signal, fan, uptime,
// the agent's own cost) from procfs, sysfs and the device tree under the host
// root, and publishes a retained JSON snapshot on "stats" every interval and
// on request ("stats/refresh").
//
// A value that cannot be read is null with a reason, never a made-up number;
// each change of a reason is logged once. Sampling is cheap: discovery happens
// once at start, and each sample reads a handful of small files into one
// reused buffer with hand-written parsers.
package pistats

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// Name is the app name: apps/com.picockpit/pistats/.
const Name = "pistats"

// SectionKey is the key of this module's section in the main config file. It
// differs from Name: the agent maps SectionKey to this Kind.
const SectionKey = "stats"

// Kind returns the pistats module kind.
func Kind() modules.Kind {
	return modules.Kind{Name: Name, Load: loader(MinInterval)}
}

// KindForTests is Kind that accepts an interval down to minInterval instead
// of MinInterval, so that end-to-end tests can see a fast publish cycle and a
// short Message Expiry (rounded up to whole seconds by the agent). Not for
// production use.
func KindForTests(minInterval time.Duration) modules.Kind {
	return modules.Kind{Name: Name, Load: loader(minInterval)}
}

// loader returns the Load of a kind whose interval may be as short as
// minInterval.
func loader(minInterval time.Duration) func(modules.Env, []byte, string, []modules.File) (modules.Module, []modules.Problem) {
	return func(env modules.Env, section []byte, sectionFile string, files []modules.File) (modules.Module, []modules.Problem) {
		return load(env, section, sectionFile, files, minInterval)
	}
}

// refreshReuse is how young the last snapshot may be to answer a refresh with
// it instead of sampling again: rates over a shorter window are noise, and a
// burst of refresh requests must not turn the agent into the load.
const refreshReuse = time.Second

// expiryFactor times the interval is the Message Expiry of published stats.
const expiryFactor = 3

func load(env modules.Env, section []byte, sectionFile string, files []modules.File, minInterval time.Duration) (modules.Module, []modules.Problem) {
	set := defaultSettings()
	var probs []modules.Problem
	if section != nil {
		s, p := parseConfig(section, sectionFile, SectionKey, minInterval)
		if len(p) > 0 {
			probs = append(probs, p...)
		} else {
			set = s
		}
	}
	for i, f := range files {
		switch {
		case section != nil:
			probs = append(probs, modules.Problem{File: f.Path, Err: fmt.Errorf(
				"stats settings are already in section %q of %s; this file is ignored", SectionKey, sectionFile)})
		case i > 0:
			probs = append(probs, modules.Problem{File: f.Path, Err: fmt.Errorf(
				"only one pistats module file is supported (using %s); this file is ignored", files[0].Path)})
		default:
			s, p := parseConfig(f.Data, f.Path, "", minInterval)
			if len(p) > 0 {
				probs = append(probs, p...)
			} else {
				set = s
			}
		}
	}
	if !set.enabled {
		return nil, probs
	}
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newModule(env, set, log.With("module", Name)), probs
}

// module is the running pistats module.
type module struct {
	env modules.Env
	set settings
	log *slog.Logger

	// test hooks; zero values mean the real thing
	now        func() time.Time
	self       SelfReader
	statfs     StatfsFunc
	firstDelay time.Duration // before the first periodic publish

	bus    modules.Bus
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards everything below
	closed  bool
	sampler *Sampler
	last    []byte
	lastAt  time.Time
	reasons map[string]string
	flatOn  map[string]bool
}

func newModule(env modules.Env, set settings, log *slog.Logger) *module {
	return &module{env: env, set: set, log: log, reasons: map[string]string{}, flatOn: map[string]bool{}}
}

func (m *module) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

// Start discovers the host, subscribes to stats/refresh and starts the
// sampling goroutine. The first snapshot is published after one second (a
// baseline is taken at once so it can report CPU use and rates).
func (m *module) Start(ctx context.Context, bus modules.Bus) error {
	m.bus = bus
	m.mu.Lock()
	m.sampler = NewSampler(SamplerConfig{
		Root:           m.env.HostRoot,
		Interval:       m.set.interval,
		Metrics:        m.set.metrics,
		Mounts:         m.set.mounts,
		Interfaces:     m.set.interfaces,
		ThrottleSource: m.set.throttle,
		StateDir:       m.env.StateDir,
		Log:            m.log,
		Now:            m.now,
		Self:           m.self,
		Statfs:         m.statfs,
	})
	m.sampler.Prime()
	m.mu.Unlock()

	if err := bus.Subscribe(contract.TopicStatsRefresh, 4, m.onRefresh); err != nil {
		return fmt.Errorf("pistats: subscribe %s: %w", contract.TopicStatsRefresh, err)
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.wg.Add(1)
	go m.run(ctx)
	m.log.Info("started", "interval", m.set.interval, "root", m.env.HostRoot, "flat_topics", m.set.flat)
	return nil
}

// Close stops sampling and waits for the goroutine.
func (m *module) Close() error {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	m.mu.Lock()
	m.closed = true
	if m.sampler != nil {
		m.sampler.Close()
	}
	m.mu.Unlock()
	return nil
}

func (m *module) run(ctx context.Context) {
	defer m.wg.Done()
	first := m.firstDelay
	if first == 0 {
		first = min(time.Second, m.set.interval)
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.sampleAndPublish(ctx)
			t.Reset(m.set.interval)
		}
	}
}

// sampleAndPublish takes a snapshot, publishes it (and the flat topics) and
// returns the JSON.
func (m *module) sampleAndPublish(ctx context.Context) []byte {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	st := m.sampler.Sample()
	payload, err := json.Marshal(st)
	if err != nil { // cannot happen with these types; never publish garbage
		m.mu.Unlock()
		m.log.Error("cannot encode stats", "err", err)
		return nil
	}
	m.last, m.lastAt = payload, m.clock()
	m.logReasons(st.Unavailable)
	var flat []flatValue
	if m.set.flat {
		flat = m.flatValues(st)
	}
	m.mu.Unlock()

	expiry := expiryFactor * m.set.interval
	if err := m.bus.Publish(ctx, contract.TopicStats, payload, modules.PublishOptions{Retain: true, QoS: 0, Expiry: expiry}); err != nil {
		m.log.Debug("publish stats", "err", err)
	}
	for _, f := range flat {
		if err := m.bus.Publish(ctx, f.topic, f.payload, modules.PublishOptions{Retain: true, QoS: 0, Expiry: expiry, Raw: true}); err != nil {
			m.log.Debug("publish flat stat", "topic", f.topic, "err", err)
		}
	}
	return payload
}

// onRefresh answers stats/refresh with a fresh snapshot (or the last one if
// it is younger than refreshReuse) and updates the retained stats.
func (m *module) onRefresh(ctx context.Context, req *modules.Request) {
	now := m.clock()
	if req.Expired(now) {
		return
	}
	m.mu.Lock()
	payload, at, closed := m.last, m.lastAt, m.closed
	m.mu.Unlock()
	if closed {
		return
	}
	if payload == nil || now.Sub(at) >= refreshReuse || now.Before(at) {
		payload = m.sampleAndPublish(ctx)
	}
	resp := struct {
		contract.Response
		Stats json.RawMessage `json:"stats,omitempty"`
	}{Response: contract.Response{Status: contract.StatusOK, Topic: req.Topic, TS: now.UTC()}, Stats: payload}
	if payload == nil {
		resp.Status, resp.Error = contract.StatusFailed, "cannot encode stats"
	}
	b, err := json.Marshal(resp)
	if err != nil {
		m.log.Error("cannot encode refresh response", "err", err)
		return
	}
	if err := m.bus.Reply(ctx, req, b); err != nil {
		m.log.Debug("reply to refresh", "err", err)
	}
}

// logReasons logs each metric that became unavailable (or whose reason
// changed) and each that came back, once; not every interval.
func (m *module) logReasons(now map[string]string) {
	for k, r := range now {
		if strings.HasPrefix(r, "disabled in config") {
			continue
		}
		if old, ok := m.reasons[k]; ok && old == r {
			continue
		}
		m.reasons[k] = r
		lvl := slog.LevelWarn
		if strings.HasPrefix(r, "first sample") || strings.HasPrefix(k, "throttle.") || strings.HasPrefix(k, "fan.") {
			lvl = slog.LevelDebug
		}
		m.log.Log(context.Background(), lvl, "metric unavailable", "metric", k, "reason", r)
	}
	for k := range m.reasons {
		if _, ok := now[k]; !ok {
			delete(m.reasons, k)
			m.log.Info("metric available again", "metric", k)
		}
	}
}

// flatValue is one flat topic and its plain-number payload (empty to clear
// the retained value).
type flatValue struct {
	topic   string
	payload []byte
}

// flatValues lists the flat per-metric topics for st: the values that could
// be read, plus an empty payload once for each that went away.
func (m *module) flatValues(st *contract.Stats) []flatValue {
	out := make([]flatValue, 0, len(m.flatOn)+8)
	seen := map[string]bool{}
	num := func(name string, v float64) {
		t := contract.TopicStatsFlatPrefix + name
		seen[t] = true
		m.flatOn[t] = true
		out = append(out, flatValue{topic: t, payload: strconv.AppendFloat(nil, v, 'f', -1, 64)})
	}
	flag := func(name string, b *bool) {
		if b == nil {
			return
		}
		v := 0.0
		if *b {
			v = 1
		}
		num(name, v)
	}
	if c := st.CPU; c != nil {
		num("cpu_percent", c.Percent)
	}
	if l := st.Load; l != nil {
		num("load1", l.Load1)
		num("load5", l.Load5)
		num("load15", l.Load15)
	}
	if mem := st.Memory; mem != nil {
		num("memory_used_percent", mem.UsedPercent)
		num("memory_available_bytes", float64(mem.AvailableBytes))
	}
	if sw := st.Swap; sw != nil {
		num("swap_used_percent", sw.UsedPercent)
	}
	if t := st.Temperature; t != nil {
		num("temperature_c", t.SoCCelsius)
	}
	if f := st.CPUFreq; f != nil {
		num("cpu_freq_mhz", f.MHz)
	}
	if th := st.Throttle; th != nil {
		flag("under_voltage_now", th.Now.UnderVoltage)
		flag("under_voltage_since_boot", th.SinceBoot.UnderVoltage)
		flag("throttled_now", th.Now.Throttled)
		flag("throttled_since_boot", th.SinceBoot.Throttled)
	}
	if f := st.Fan; f != nil {
		num("fan_rpm", f.RPM)
	}
	if u := st.Uptime; u != nil {
		num("uptime_s", u.Seconds)
	}
	if a := st.Agent; a != nil {
		num("agent_rss_bytes", float64(a.RSSBytes))
		if a.CPUPercent != nil {
			num("agent_cpu_percent", *a.CPUPercent)
		}
	}
	for _, d := range st.Disks {
		if d.UsedPercent != nil {
			num("disk_used_percent/"+mountSlug(d.Mount), *d.UsedPercent)
		}
	}
	for _, n := range st.Net {
		lvl := topicLevel(n.Interface)
		if n.RxBytesPerSecond != nil {
			num("net_rx_bytes_per_s/"+lvl, *n.RxBytesPerSecond)
		}
		if n.TxBytesPerSecond != nil {
			num("net_tx_bytes_per_s/"+lvl, *n.TxBytesPerSecond)
		}
	}
	for _, w := range st.WiFi {
		num("wifi_signal_dbm/"+topicLevel(w.Interface), w.SignalDBm)
	}
	for t := range m.flatOn {
		if !seen[t] {
			delete(m.flatOn, t)
			out = append(out, flatValue{topic: t, payload: nil})
		}
	}
	return out
}

// topicLevel makes a name safe as one topic level.
func topicLevel(s string) string {
	return strings.NewReplacer("/", "_", "+", "_", "#", "_").Replace(s)
}
