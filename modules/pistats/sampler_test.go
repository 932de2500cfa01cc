package pistats

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/picockpit/picockpit-client/agent/contract"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fixtures are the host trees in testdata/fixtures/<name>/root; <name>/next
// holds the counter files as they are five seconds later.
var fixtures = []string{"pi-zero-2w", "pi4", "pi5", "generic-amd64"}

// t0 is the fake clock's first sample time.
var t0 = time.Date(2026, 1, 15, 11, 3, 20, 0, time.UTC)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeSelf pretends the agent uses 11 MiB and 15 ms of CPU per sample.
type fakeSelf struct{ n int }

func (f *fakeSelf) read() (SelfUsage, error) {
	f.n++
	return SelfUsage{RSSBytes: 11 << 20, CPUTime: time.Duration(f.n) * 15 * time.Millisecond}, nil
}

// fakeDisks are the statfs answers per fixture and mount point (relative to
// the root). Mount points missing here fail like a missing directory.
var fakeDisks = map[string]map[string]syscall.Statfs_t{
	"pi-zero-2w": {
		"/":              {Bsize: 4096, Frsize: 4096, Blocks: 7_563_264, Bfree: 5_120_000, Bavail: 4_736_000},
		"/boot/firmware": {Bsize: 512, Frsize: 512, Blocks: 1_048_576, Bfree: 921_600, Bavail: 921_600},
	},
	"pi4": {
		"/":              {Bsize: 4096, Frsize: 4096, Blocks: 15_157_248, Bfree: 9_876_543, Bavail: 9_100_000},
		"/boot/firmware": {Bsize: 512, Frsize: 512, Blocks: 1_048_576, Bfree: 900_000, Bavail: 900_000},
	},
	"pi5": {
		"/":              {Bsize: 4096, Frsize: 4096, Blocks: 61_000_000, Bfree: 50_000_000, Bavail: 46_900_000},
		"/boot/firmware": {Bsize: 512, Frsize: 512, Blocks: 1_048_576, Bfree: 880_000, Bavail: 880_000},
	},
	"generic-amd64": {
		"/":            {Bsize: 4096, Frsize: 4096, Blocks: 10_000_000, Bfree: 4_000_000, Bavail: 3_500_000},
		"/mnt/my disk": {Bsize: 4096, Frsize: 4096, Blocks: 1_000_000, Bfree: 999_000, Bavail: 949_000},
	},
}

func fakeStatfs(fixture, root string) StatfsFunc {
	return func(path string, st *syscall.Statfs_t) error {
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		v, ok := fakeDisks[fixture]["/"+strings.TrimPrefix(rel, ".")]
		if rel == "." {
			v, ok = fakeDisks[fixture]["/"]
		}
		if !ok {
			return syscall.ENOENT
		}
		*st = v
		return nil
	}
}

// copyTree copies the directory src into dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixtureRoot copies a fixture's root into a temporary directory.
func fixtureRoot(t *testing.T, name string) string {
	t.Helper()
	root := t.TempDir()
	copyTree(t, filepath.Join("testdata", "fixtures", name, "root"), root)
	return root
}

// newTestSampler builds a sampler with the fake clock, self reader and disks.
func newTestSampler(fixture, root string, clk *fakeClock, edit func(*SamplerConfig)) *Sampler {
	self := &fakeSelf{}
	cfg := SamplerConfig{
		Root:     root,
		Interval: 5 * time.Second,
		Now:      clk.now,
		Self:     self.read,
		Statfs:   fakeStatfs(fixture, root),
	}
	if edit != nil {
		edit(&cfg)
	}
	return NewSampler(cfg)
}

// twoSamples samples the fixture, applies <fixture>/next, advances the clock
// by five seconds and samples again; it returns both snapshots as JSON.
func twoSamples(t *testing.T, fixture string, edit func(*SamplerConfig)) (first, second []byte) {
	t.Helper()
	root := fixtureRoot(t, fixture)
	clk := newClock(t0)
	s := newTestSampler(fixture, root, clk, edit)
	first = encode(t, s.Sample())
	copyTree(t, filepath.Join("testdata", "fixtures", fixture, "next"), root)
	clk.add(5 * time.Second)
	second = encode(t, s.Sample())
	return first, second
}

func encode(t *testing.T, st *contract.Stats) []byte {
	t.Helper()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// golden compares got with testdata/golden/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (-want +got):\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

func TestSnapshotGolden(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx, func(t *testing.T) {
			first, second := twoSamples(t, fx, nil)
			golden(t, fx+".json", second)
			golden(t, fx+".first.json", first)
		})
	}
}

// TestFirstSampleHasNoRates checks the rule that values needing two readings
// are null with a reason on the first sample, not zero.
func TestFirstSampleHasNoRates(t *testing.T) {
	first, second := twoSamples(t, "pi4", nil)
	var a, b contract.Stats
	if err := json.Unmarshal(first, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(second, &b); err != nil {
		t.Fatal(err)
	}
	if a.CPU != nil || !strings.HasPrefix(a.Unavailable["cpu"], "first sample") {
		t.Errorf("first sample: cpu = %+v, reason %q; want null with a first-sample reason", a.CPU, a.Unavailable["cpu"])
	}
	if a.Agent == nil || a.Agent.CPUPercent != nil {
		t.Errorf("first sample: agent = %+v; want RSS and a null cpu_percent", a.Agent)
	}
	for _, n := range a.Net {
		if n.RxBytesPerSecond != nil {
			t.Errorf("first sample: %s rx rate = %v, want null", n.Interface, *n.RxBytesPerSecond)
		}
	}
	if b.CPU == nil || len(b.CPU.PerCorePercent) != 4 {
		t.Fatalf("second sample: cpu = %+v, want 4 cores", b.CPU)
	}
	// pi4/next adds 5 s x 100 ticks per core, busy 31%, 12%, 5%, 60%.
	want := []float64{31, 12, 5, 60}
	if diff := cmp.Diff(want, b.CPU.PerCorePercent); diff != "" {
		t.Errorf("per-core percent (-want +got):\n%s", diff)
	}
	if b.CPU.Percent != 27 {
		t.Errorf("total percent = %v, want 27", b.CPU.Percent)
	}
	var eth *contract.StatsNet
	for i := range b.Net {
		if b.Net[i].Interface == "lo" {
			t.Errorf("loopback is reported")
		}
		if b.Net[i].Interface == "eth0" {
			eth = &b.Net[i]
		}
	}
	if eth == nil || eth.RxBytesPerSecond == nil || *eth.RxBytesPerSecond != 250000 || *eth.TxBytesPerSecond != 50000 {
		t.Errorf("eth0 = %+v, want rx 250000 B/s and tx 50000 B/s", eth)
	}
}

// TestThrottleDecode decodes several get_throttled words through the firmware
// sysfs file of the Pi 4 fixture, each on a fresh sampler.
func TestThrottleDecode(t *testing.T) {
	type flags struct{ UV, Capped, Throttled, Soft bool }
	cases := []struct {
		raw       string
		now, boot flags
	}{
		{"0", flags{}, flags{}},
		{"50000", flags{}, flags{UV: true, Throttled: true}},
		{"50005", flags{UV: true, Throttled: true}, flags{UV: true, Throttled: true}},
		{"80008", flags{Soft: true}, flags{Soft: true}},
		{"e000e", flags{Capped: true, Throttled: true, Soft: true}, flags{Capped: true, Throttled: true, Soft: true}},
	}
	all := map[string]*contract.StatsThrottle{}
	for _, c := range cases {
		root := fixtureRoot(t, "pi4")
		writeFile(t, filepath.Join(root, "sys/devices/platform/soc/soc:firmware/get_throttled"), c.raw+"\n")
		s := newTestSampler("pi4", root, newClock(t0), func(c *SamplerConfig) { c.Metrics = []string{contract.MetricThrottle} })
		th := s.Sample().Throttle
		if th == nil {
			t.Fatalf("%s: throttle is null: %v", c.raw, s.out.Unavailable)
		}
		get := func(f contract.ThrottleFlags) flags {
			return flags{*f.UnderVoltage, *f.FreqCapped, *f.Throttled, *f.SoftTempLimit}
		}
		if got := get(th.Now); got != c.now {
			t.Errorf("0x%s now = %+v, want %+v", c.raw, got, c.now)
		}
		if got := get(th.SinceBoot); got != c.boot {
			t.Errorf("0x%s since boot = %+v, want %+v", c.raw, got, c.boot)
		}
		if *th.Raw != "0x"+c.raw {
			t.Errorf("raw = %q, want 0x%s", *th.Raw, c.raw)
		}
		cp := *th
		all["0x"+c.raw] = &cp
	}
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "throttle.json", append(b, '\n'))
}

// TestThrottleHistory checks that "since boot" keeps what the agent saw after
// the kernel cleared the sticky bits, and survives an agent restart within
// the same boot (but not a reboot).
func TestThrottleHistory(t *testing.T) {
	root := fixtureRoot(t, "pi4")
	state := t.TempDir()
	gt := filepath.Join(root, "sys/devices/platform/soc/soc:firmware/get_throttled")
	only := func(c *SamplerConfig) {
		c.Metrics = []string{contract.MetricThrottle}
		c.StateDir = state
	}
	clk := newClock(t0)
	writeFile(t, gt, "50005\n")
	s := newTestSampler("pi4", root, clk, only)
	s.Sample()
	writeFile(t, gt, "0\n")
	th := s.Sample().Throttle
	if *th.Now.UnderVoltage || !*th.SinceBoot.UnderVoltage || !*th.SinceBoot.Throttled {
		t.Errorf("after recovery: now %v, since boot uv %v throttled %v; want false, true, true",
			*th.Now.UnderVoltage, *th.SinceBoot.UnderVoltage, *th.SinceBoot.Throttled)
	}

	// Restart in the same boot: the history is kept, with its start time.
	clk.add(time.Hour)
	th = newTestSampler("pi4", root, clk, only).Sample().Throttle
	if !*th.SinceBoot.UnderVoltage || !th.WatchedSince.Equal(t0) {
		t.Errorf("after restart: since boot uv %v, watched since %v; want true, %v", *th.SinceBoot.UnderVoltage, th.WatchedSince, t0)
	}

	// Reboot: a new boot id starts afresh.
	writeFile(t, filepath.Join(root, "proc/sys/kernel/random/boot_id"), "11111111-2222-3333-4444-555555555555\n")
	th = newTestSampler("pi4", root, clk, only).Sample().Throttle
	if *th.SinceBoot.UnderVoltage || !th.WatchedSince.Equal(clk.now()) {
		t.Errorf("after reboot: since boot uv %v, watched since %v; want false, %v", *th.SinceBoot.UnderVoltage, th.WatchedSince, clk.now())
	}
}

// TestThrottleHwmon reads the rpi_volt alarm when the firmware file is
// absent (the Pi 5 fixture) or when the config asks for it.
func TestThrottleHwmon(t *testing.T) {
	root := fixtureRoot(t, "pi4")
	writeFile(t, filepath.Join(root, "sys/class/hwmon/hwmon0/in0_lcrit_alarm"), "1\n")
	s := newTestSampler("pi4", root, newClock(t0), func(c *SamplerConfig) { c.ThrottleSource = ThrottleHwmon })
	st := s.Sample()
	th := st.Throttle
	if th == nil || th.Source != contract.ThrottleSourceHwmon || th.Raw != nil {
		t.Fatalf("throttle = %+v, want hwmon source without raw", th)
	}
	if !*th.Now.UnderVoltage || !*th.SinceBoot.UnderVoltage || th.Now.Throttled != nil {
		t.Errorf("flags now %+v since %+v; want under-voltage only, true", th.Now, th.SinceBoot)
	}
	if st.Unavailable["throttle.throttled"] == "" {
		t.Errorf("no reason for the null throttled flag: %v", st.Unavailable)
	}
}

// TestMissingDataIsNull removes files a metric needs and expects null with a
// reason, never a number.
func TestMissingDataIsNull(t *testing.T) {
	cases := []struct {
		metric, remove, reason string
	}{
		{"load", "proc/loadavg", "/proc/loadavg does not exist"},
		{"memory", "proc/meminfo", "/proc/meminfo does not exist"},
		{"temperature", "sys/class/thermal/thermal_zone0/temp", "/sys/class/thermal/thermal_zone0/temp does not exist"},
		{"uptime", "proc/uptime", "/proc/uptime does not exist"},
		{"wifi", "proc/net/wireless", "/proc/net/wireless does not exist (no Wi-Fi, or a kernel without wireless extensions)"},
		{"net", "proc/net/dev", "/proc/net/dev does not exist"},
		{"throttle", "sys/devices/platform/soc/soc:firmware/get_throttled", "/sys/devices/platform/soc/soc:firmware/get_throttled does not exist"},
	}
	for _, c := range cases {
		t.Run(c.metric, func(t *testing.T) {
			root := fixtureRoot(t, "pi4")
			s := newTestSampler("pi4", root, newClock(t0), nil)
			if err := os.Remove(filepath.Join(root, c.remove)); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(encode(t, s.Sample()), &m); err != nil {
				t.Fatal(err)
			}
			if v, ok := m[c.metric]; !ok || v != nil {
				t.Errorf("%s = %v, want null", c.metric, v)
			}
			if got := m["unavailable"].(map[string]any)[c.metric]; got != c.reason {
				t.Errorf("reason = %q, want %q", got, c.reason)
			}
		})
	}
}

// TestConfiguredMountsAndInterfaces checks explicit lists: a mount point that
// is not mounted and an interface that does not exist are reported with a
// reason; a mount point with a space is found through /proc/mounts escaping.
func TestConfiguredMountsAndInterfaces(t *testing.T) {
	_, second := twoSamples(t, "generic-amd64", func(c *SamplerConfig) {
		c.Mounts = []string{"/", "/data", "/mnt/my disk"}
		c.Interfaces = []string{"enp1s0", "wlan9"}
		c.Metrics = []string{contract.MetricDisks, contract.MetricNet}
	})
	golden(t, "generic-amd64.configured.json", second)
	var st contract.Stats
	if err := json.Unmarshal(second, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Disks) != 3 || st.Disks[1].UsedBytes != nil || st.Disks[1].Unavailable == "" || st.Disks[2].UsedBytes == nil {
		t.Errorf("disks = %+v", st.Disks)
	}
	if len(st.Net) != 2 || st.Net[1].Unavailable == "" || st.Net[1].RxBytes != nil {
		t.Errorf("net = %+v", st.Net)
	}
	if st.CPU != nil || st.Unavailable["cpu"] != "disabled in config (stats.metrics)" {
		t.Errorf("cpu = %+v, reason %q; want disabled", st.CPU, st.Unavailable["cpu"])
	}
}

func TestInterfaceRecreated(t *testing.T) {
	root := fixtureRoot(t, "pi4")
	clk := newClock(t0)
	s := newTestSampler("pi4", root, clk, func(c *SamplerConfig) { c.Metrics = []string{contract.MetricNet} })
	s.Sample()
	// eth0's counters restart from zero.
	b, err := os.ReadFile(filepath.Join(root, "proc/net/dev"))
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("912345678"), []byte("      100"), 1)
	writeFile(t, filepath.Join(root, "proc/net/dev"), string(b))
	clk.add(5 * time.Second)
	st := s.Sample()
	for _, n := range st.Net {
		if n.Interface == "eth0" && n.RxBytesPerSecond != nil {
			t.Errorf("eth0 rate after counter reset = %v, want null", *n.RxBytesPerSecond)
		}
	}
	if !strings.Contains(st.Unavailable["net[eth0].rates"], "backwards") {
		t.Errorf("reason = %q", st.Unavailable["net[eth0].rates"])
	}
}
