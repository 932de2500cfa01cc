package pistats

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/agent/hostinfo"
)

// SelfUsage is the agent process's own resource use.
type SelfUsage struct {
	RSSBytes uint64
	// CPUTime is user + system CPU time consumed so far.
	CPUTime time.Duration
}

// SelfReader reads the agent's own usage. The default reads the real
// /proc/self/statm and getrusage, not the host root; tests inject a fake so
// snapshots are deterministic.
type SelfReader func() (SelfUsage, error)

// StatfsFunc is syscall.Statfs; tests inject a fake.
type StatfsFunc func(path string, st *syscall.Statfs_t) error

// Throttle source choices (config "throttle_source").
const (
	ThrottleAuto     = "auto"
	ThrottleFirmware = "firmware"
	ThrottleHwmon    = "hwmon"
)

// SamplerConfig says what a Sampler reads and how.
type SamplerConfig struct {
	// Root is the host root that /proc, /sys and /etc are read under.
	Root string
	// Interval is only reported in the snapshot.
	Interval time.Duration
	// Metrics lists the enabled metric names; nil enables all.
	Metrics []string
	// Mounts lists the mount points whose usage is reported; nil means the
	// default: "/" plus "/boot/firmware" (or else "/boot") when mounted.
	Mounts []string
	// Interfaces lists the network interfaces reported; nil means every
	// interface except loopback.
	Interfaces []string
	// ThrottleSource is ThrottleAuto (default), ThrottleFirmware or
	// ThrottleHwmon.
	ThrottleSource string
	// StateDir keeps the throttle history across agent restarts within one
	// boot; "" keeps it in memory only.
	StateDir string
	// Log receives discovery and state-file problems; nil discards them.
	Log *slog.Logger

	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Self reads the agent's own usage; nil means the real process.
	Self SelfReader
	// Statfs reads file system usage; nil means syscall.Statfs.
	Statfs StatfsFunc
}

// Sampler takes snapshots of the host. Discovery (which thermal zone, which
// hwmon, which files exist) and the static facts (model, serial, OS, kernel)
// happen once in NewSampler; Sample then reads only the small files it needs
// into one reused buffer. A Sampler is not safe for concurrent use.
type Sampler struct {
	cfg     SamplerConfig
	log     *slog.Logger
	now     func() time.Time
	self    SelfReader
	statfs  StatfsFunc
	enabled map[string]bool
	rd      fileReader
	selfRd  fileReader
	seq     uint64

	// paths read every sample
	pStat, pUptime, pLoadavg, pMeminfo, pNetDev, pWireless, pMounts hostPath

	out     contract.Stats
	unav    map[string]string
	reasons map[reasonKey]string // memoized reasons of remembered errors
	store   struct {
		system   contract.StatsSystem
		uptime   contract.StatsUptime
		bootTime time.Time
		cpu      contract.StatsCPU
		load     contract.StatsLoad
		mem      contract.StatsMemory
		swap     contract.StatsMemory
		temp     contract.StatsTemperature
		freq     contract.StatsCPUFreq
		throttle contract.StatsThrottle
		raw      string
		flags    [8]bool
		fan      contract.StatsFan
		fanPWM   float64
		agent    contract.StatsAgent
		agentCPU float64
	}

	sys      hostinfo.Info // static facts, read once
	cpu      cpuState
	net      netState
	disk     diskState
	temp     tempSource
	freq     []hostPath
	thr      throttleState
	fan      fanSource
	wifi     []contract.StatsWiFi
	selfPrev struct {
		prev  SelfUsage
		at    time.Time
		valid bool
	}
}

// NewSampler discovers what the host offers and reads the static facts.
func NewSampler(cfg SamplerConfig) *Sampler {
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.ThrottleSource == "" {
		cfg.ThrottleSource = ThrottleAuto
	}
	s := &Sampler{cfg: cfg, log: cfg.Log, now: cfg.Now, self: cfg.Self, statfs: cfg.Statfs}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.self == nil {
		s.self = newSelfReader(&s.selfRd)
	}
	if s.statfs == nil {
		s.statfs = syscall.Statfs
	}
	s.enabled = map[string]bool{}
	if cfg.Metrics == nil {
		for _, m := range contract.StatsMetrics {
			s.enabled[m] = true
		}
	} else {
		for _, m := range cfg.Metrics {
			s.enabled[m] = true
		}
	}
	root := cfg.Root
	s.pStat = newHostPath(root, "/proc/stat")
	s.pUptime = newHostPath(root, "/proc/uptime")
	s.pLoadavg = newHostPath(root, "/proc/loadavg")
	s.pMeminfo = newHostPath(root, "/proc/meminfo")
	s.pNetDev = newHostPath(root, "/proc/net/dev")
	s.pWireless = newHostPath(root, "/proc/net/wireless")
	s.pMounts = newHostPath(root, "/proc/mounts")
	s.unav = map[string]string{}
	s.reasons = map[reasonKey]string{}
	s.net.entries = map[string]*netEntry{}

	if s.enabled[contract.MetricSystem] {
		s.sys = hostinfo.Read(root)
	}
	if s.enabled[contract.MetricDisks] {
		s.disk = s.discoverMounts()
	}
	if s.enabled[contract.MetricTemperature] {
		s.temp = discoverThermal(root)
	}
	if s.enabled[contract.MetricCPUFreq] {
		s.freq = discoverCPUFreq(root)
	}
	if s.enabled[contract.MetricThrottle] {
		s.thr = s.discoverThrottle()
	}
	if s.enabled[contract.MetricFan] {
		s.fan = discoverFan(root)
	}
	return s
}

type reasonKey struct {
	op, path, suffix string
	err              error
}

// reason is reasonFor(err)+suffix, memoized per file and error, so a metric
// that stays unavailable does not allocate a new reason every sample.
func (s *Sampler) reason(err error, suffix string) string {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return reasonFor(err) + suffix
	}
	k := reasonKey{op: pe.Op, path: pe.Path, suffix: suffix, err: pe.Err}
	if r, ok := s.reasons[k]; ok {
		return r
	}
	r := reasonFor(err) + suffix
	if len(s.reasons) < 256 {
		s.reasons[k] = r
	}
	return r
}

// Close releases the files the Sampler keeps open.
func (s *Sampler) Close() {
	s.rd.close()
	s.selfRd.close()
}

// Prime reads the counters (CPU times, network bytes, own CPU time) so that
// the next Sample can report rates; it produces no snapshot.
func (s *Sampler) Prime() {
	s.Sample()
	s.seq = 0
}

// Sample takes one snapshot. The returned value and everything it points to
// belong to the Sampler and are overwritten by the next Sample: encode it
// before sampling again.
func (s *Sampler) Sample() *contract.Stats {
	now := s.now()
	s.seq++
	st := &s.out
	*st = contract.Stats{TS: now.UTC().Round(time.Millisecond), Seq: s.seq, IntervalS: s.cfg.Interval.Seconds(), Unavailable: s.unav}
	clear(s.unav)
	const disabled = "disabled in config (stats.metrics)"
	for _, m := range contract.StatsMetrics {
		if !s.enabled[m] {
			s.unav[m] = disabled
		}
	}

	if s.enabled[contract.MetricSystem] {
		s.sampleSystem()
	}
	if s.enabled[contract.MetricCPU] || s.enabled[contract.MetricUptime] {
		s.sampleProcStat(now)
	}
	if s.enabled[contract.MetricLoad] {
		s.sampleLoad()
	}
	if s.enabled[contract.MetricMemory] || s.enabled[contract.MetricSwap] {
		s.sampleMeminfo()
	}
	if s.enabled[contract.MetricDisks] {
		s.sampleDisks()
	}
	if s.enabled[contract.MetricNet] {
		s.sampleNet(now)
	}
	if s.enabled[contract.MetricTemperature] {
		s.sampleTemperature()
	}
	if s.enabled[contract.MetricCPUFreq] {
		s.sampleCPUFreq()
	}
	if s.enabled[contract.MetricThrottle] {
		s.sampleThrottle()
	}
	if s.enabled[contract.MetricWiFi] {
		s.sampleWiFi()
	}
	if s.enabled[contract.MetricFan] {
		s.sampleFan()
	}
	if s.enabled[contract.MetricAgent] {
		s.sampleAgent(now)
	}
	return st
}

// --- load average ---

func (s *Sampler) sampleLoad() {
	b, err := s.rd.read(s.pLoadavg)
	if err != nil {
		s.unav[contract.MetricLoad] = s.reason(err, "")
		return
	}
	var v [3]float64
	i := 0
	for k := range v {
		var f []byte
		f, i = nextField(b, i)
		x, ok := parseDecimal(f)
		if !ok || x < 0 {
			s.unav[contract.MetricLoad] = "/proc/loadavg: unexpected format"
			return
		}
		v[k] = x
	}
	s.store.load = contract.StatsLoad{Load1: v[0], Load5: v[1], Load15: v[2]}
	s.out.Load = &s.store.load
}

// --- uptime + /proc/stat (CPU times and btime) ---

type cpuTimes struct {
	busy, total uint64
	valid       bool
}

type cpuState struct {
	prevTotal cpuTimes
	prevCores []cpuTimes
	curCores  []cpuTimes
	prevAt    time.Time
	havePrev  bool
}

// markUnavailable records reason for those of metrics that are enabled
// (one file feeds several metrics).
func (s *Sampler) markUnavailable(reason string, metrics ...string) {
	for _, m := range metrics {
		if s.enabled[m] {
			s.unav[m] = reason
		}
	}
}

func (s *Sampler) sampleProcStat(now time.Time) {
	b, err := s.rd.read(s.pStat)
	if err != nil {
		r := s.reason(err, "")
		s.markUnavailable(r, contract.MetricCPU, contract.MetricUptime)
		return
	}
	var total cpuTimes
	cores := s.cpu.curCores[:0]
	var btime uint64
	haveBtime := false
	for i := 0; ; {
		line, next, ok := nextLine(b, i)
		if !ok {
			break
		}
		i = next
		switch {
		case bytes.HasPrefix(line, []byte("cpu ")):
			total = parseCPULine(line[4:])
		case bytes.HasPrefix(line, []byte("cpu")):
			f, j := nextField(line, 0)
			n, ok := parseUint(f[3:])
			if !ok || n > 4096 {
				continue
			}
			for uint64(len(cores)) <= n {
				cores = append(cores, cpuTimes{})
			}
			cores[n] = parseCPULine(line[j:])
		case bytes.HasPrefix(line, []byte("btime ")):
			f, _ := nextField(line, 6)
			btime, haveBtime = parseUint(f)
		}
	}
	s.cpu.curCores = cores

	if s.enabled[contract.MetricUptime] {
		s.sampleUptime(btime, haveBtime)
	}
	if !s.enabled[contract.MetricCPU] {
		return
	}
	defer func() {
		s.cpu.prevTotal = total
		s.cpu.prevCores, s.cpu.curCores = s.cpu.curCores, s.cpu.prevCores
		s.cpu.prevAt = now
		s.cpu.havePrev = total.valid
	}()
	if !total.valid {
		s.unav[contract.MetricCPU] = "/proc/stat: no cpu line"
		return
	}
	if !s.cpu.havePrev {
		s.unav[contract.MetricCPU] = "first sample: CPU use needs two readings"
		return
	}
	pct, ok := busyPercent(s.cpu.prevTotal, total)
	if !ok {
		s.unav[contract.MetricCPU] = "no CPU time elapsed since the previous reading"
		return
	}
	c := &s.store.cpu
	c.Percent = pct
	c.PerCorePercent = c.PerCorePercent[:0]
	c.Cores = 0
	for n, cur := range cores {
		if !cur.valid {
			continue
		}
		c.Cores++
		if n < len(s.cpu.prevCores) && s.cpu.prevCores[n].valid {
			if p, ok := busyPercent(s.cpu.prevCores[n], cur); ok {
				c.PerCorePercent = append(c.PerCorePercent, p)
				continue
			}
		}
		// A core that just came online has no window yet.
		c.PerCorePercent = append(c.PerCorePercent, 0)
	}
	if c.PerCorePercent == nil {
		c.PerCorePercent = []float64{}
	}
	c.WindowS = round(now.Sub(s.cpu.prevAt).Seconds(), 3)
	s.out.CPU = c
}

// parseCPULine parses the counters after "cpuN": user nice system idle iowait
// irq softirq steal guest guest_nice (USER_HZ ticks). Guest time is already
// part of user time and is not added again.
func parseCPULine(b []byte) cpuTimes {
	var v [8]uint64
	i, n := 0, 0
	for n < len(v) {
		var f []byte
		f, i = nextField(b, i)
		if f == nil {
			break
		}
		x, ok := parseUint(f)
		if !ok {
			return cpuTimes{}
		}
		v[n] = x
		n++
	}
	if n < 4 {
		return cpuTimes{}
	}
	var t cpuTimes
	for _, x := range v {
		t.total += x
	}
	idle := v[3] + v[4]
	t.busy = t.total - idle
	t.valid = true
	return t
}

// busyPercent is the busy share between two readings. Counters that went
// backwards (iowait may) count as no time.
func busyPercent(prev, cur cpuTimes) (float64, bool) {
	if cur.total <= prev.total {
		return 0, false
	}
	dt := cur.total - prev.total
	var db uint64
	if cur.busy > prev.busy {
		db = cur.busy - prev.busy
	}
	if db > dt {
		db = dt
	}
	return round(float64(db)/float64(dt)*100, 2), true
}

func (s *Sampler) sampleUptime(btime uint64, haveBtime bool) {
	b, err := s.rd.read(s.pUptime)
	if err != nil {
		s.unav[contract.MetricUptime] = s.reason(err, "")
		return
	}
	f, _ := nextField(b, 0)
	up, ok := parseDecimal(f)
	if !ok || up < 0 {
		s.unav[contract.MetricUptime] = "/proc/uptime: unexpected format"
		return
	}
	u := &s.store.uptime
	u.Seconds = up
	u.BootTime = nil
	if haveBtime {
		s.store.bootTime = time.Unix(int64(btime), 0).UTC()
		u.BootTime = &s.store.bootTime
	} else {
		s.unav["uptime.boot_time"] = "/proc/stat: no btime line"
	}
	s.out.Uptime = u
}

// --- memory ---

func (s *Sampler) sampleMeminfo() {
	b, err := s.rd.read(s.pMeminfo)
	if err != nil {
		r := s.reason(err, "")
		s.markUnavailable(r, contract.MetricMemory, contract.MetricSwap)
		return
	}
	const (
		memTotal = iota
		memAvailable
		swapTotal
		swapFree
		nKeys
	)
	keys := [nKeys][]byte{[]byte("MemTotal:"), []byte("MemAvailable:"), []byte("SwapTotal:"), []byte("SwapFree:")}
	var vals [nKeys]uint64
	var have [nKeys]bool
	for i := 0; ; {
		line, next, ok := nextLine(b, i)
		if !ok {
			break
		}
		i = next
		name, j := nextField(line, 0)
		for k := range keys {
			if !have[k] && bytes.Equal(name, keys[k]) {
				f, j2 := nextField(line, j)
				v, ok := parseUint(f)
				if !ok {
					break
				}
				unit, _ := nextField(line, j2)
				if bytes.Equal(unit, []byte("kB")) {
					v *= 1024
				}
				vals[k], have[k] = v, true
				break
			}
		}
	}
	if s.enabled[contract.MetricMemory] {
		switch {
		case !have[memTotal]:
			s.unav[contract.MetricMemory] = "/proc/meminfo: no MemTotal"
		case !have[memAvailable]:
			s.unav[contract.MetricMemory] = "/proc/meminfo: no MemAvailable (kernel older than 3.14)"
		default:
			s.store.mem = memStats(vals[memTotal], vals[memAvailable])
			s.out.Memory = &s.store.mem
		}
	}
	if s.enabled[contract.MetricSwap] {
		if !have[swapTotal] || !have[swapFree] {
			s.unav[contract.MetricSwap] = "/proc/meminfo: no SwapTotal/SwapFree"
		} else {
			s.store.swap = memStats(vals[swapTotal], vals[swapFree])
			s.out.Swap = &s.store.swap
		}
	}
}

func memStats(total, avail uint64) contract.StatsMemory {
	if avail > total {
		avail = total
	}
	m := contract.StatsMemory{TotalBytes: total, AvailableBytes: avail, UsedBytes: total - avail}
	if total > 0 {
		m.UsedPercent = round(float64(m.UsedBytes)/float64(total)*100, 2)
	}
	return m
}

// --- temperature ---

type tempSource struct {
	path   hostPath
	zone   string
	reason string
}

// thermalPreference orders the zone types that stand for the SoC/CPU.
var thermalPreference = []string{"cpu-thermal", "cpu_thermal", "soc-thermal", "soc_thermal", "x86_pkg_temp", "cpu0-thermal"}

func discoverThermal(root string) tempSource {
	dir := filepath.Join(root, "sys/class/thermal")
	names, err := readDirNames(dir)
	if err != nil {
		return tempSource{reason: "no thermal zones (no readable /sys/class/thermal)"}
	}
	best, bestRank := "", len(thermalPreference)
	var bestZone string
	for _, n := range names {
		if len(n) < 12 || n[:12] != "thermal_zone" {
			continue
		}
		typ, err := readSmall(filepath.Join(dir, n, "type"))
		if err != nil {
			continue
		}
		for r, want := range thermalPreference {
			if typ == want && r < bestRank {
				best, bestRank, bestZone = n, r, typ
			}
		}
	}
	if best == "" {
		return tempSource{reason: "no thermal zone of type cpu-thermal (or another SoC/CPU zone)"}
	}
	return tempSource{path: newHostPath(root, "/sys/class/thermal/"+best+"/temp"), zone: bestZone}
}

func (s *Sampler) sampleTemperature() {
	if s.temp.reason != "" {
		s.unav[contract.MetricTemperature] = s.temp.reason
		return
	}
	b, err := s.rd.read(s.temp.path)
	if err != nil {
		s.unav[contract.MetricTemperature] = s.reason(err, "")
		return
	}
	v, ok := parseInt(trimSpace(b))
	if !ok {
		s.unav[contract.MetricTemperature] = s.temp.path.Rel + ": unexpected format"
		return
	}
	s.store.temp = contract.StatsTemperature{SoCCelsius: float64(v) / 1000, Zone: s.temp.zone}
	s.out.Temperature = &s.store.temp
}

// --- CPU frequency ---

func discoverCPUFreq(root string) []hostPath {
	names, err := readDirNames(filepath.Join(root, "sys/devices/system/cpu"))
	if err != nil {
		return nil
	}
	var out []hostPath
	for _, n := range names {
		if len(n) < 4 || n[:3] != "cpu" {
			continue
		}
		if _, err := strconv.Atoi(n[3:]); err != nil {
			continue
		}
		p := newHostPath(root, "/sys/devices/system/cpu/"+n+"/cpufreq/scaling_cur_freq")
		if _, err := readSmall(p.Full()); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func (s *Sampler) sampleCPUFreq() {
	if len(s.freq) == 0 {
		s.unav[contract.MetricCPUFreq] = "no cpufreq (/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq)"
		return
	}
	f := &s.store.freq
	f.PerCoreMHz = f.PerCoreMHz[:0]
	f.MHz = 0
	for _, p := range s.freq {
		b, err := s.rd.read(p)
		if err != nil {
			s.unav[contract.MetricCPUFreq] = s.reason(err, "")
			return
		}
		khz, ok := parseUint(trimSpace(b))
		if !ok {
			s.unav[contract.MetricCPUFreq] = p.Rel + ": unexpected format"
			return
		}
		mhz := float64(khz) / 1000
		f.PerCoreMHz = append(f.PerCoreMHz, mhz)
		f.MHz = math.Max(f.MHz, mhz)
	}
	s.out.CPUFreq = f
}

// --- agent ---

func (s *Sampler) sampleAgent(now time.Time) {
	u, err := s.self()
	if err != nil {
		s.unav[contract.MetricAgent] = s.reason(err, "")
		return
	}
	a := &s.store.agent
	a.RSSBytes = u.RSSBytes
	a.CPUPercent = nil
	if s.selfPrev.valid && now.After(s.selfPrev.at) && u.CPUTime >= s.selfPrev.prev.CPUTime {
		s.store.agentCPU = round(float64(u.CPUTime-s.selfPrev.prev.CPUTime)/float64(now.Sub(s.selfPrev.at))*100, 2)
		a.CPUPercent = &s.store.agentCPU
	} else {
		s.unav["agent.cpu_percent"] = "first sample: CPU use needs two readings"
	}
	s.selfPrev.prev, s.selfPrev.at, s.selfPrev.valid = u, now, true
	s.out.Agent = a
}

var (
	selfStatm = newHostPath("/", "/proc/self/statm")
	pageSize  = uint64(syscall.Getpagesize())
)

// newSelfReader reads the real process's RSS (/proc/self/statm, kept open in
// rd) and CPU time (getrusage).
func newSelfReader(rd *fileReader) SelfReader {
	return func() (SelfUsage, error) {
		var u SelfUsage
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return u, err
		}
		u.CPUTime = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		b, err := rd.read(selfStatm)
		if err != nil {
			return u, err
		}
		_, i := nextField(b, 0)
		f, _ := nextField(b, i)
		pages, ok := parseUint(f)
		if !ok {
			return u, &parseError{path: selfStatm.Rel}
		}
		u.RSSBytes = pages * pageSize
		return u, nil
	}
}

type parseError struct{ path string }

func (e *parseError) Error() string { return e.path + ": unexpected format" }

func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}
