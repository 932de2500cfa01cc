package pidoctor

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// fakeStatfs reports freePercent of 32 GiB free on every path.
func fakeStatfs(freePercent uint64) func(string, *syscall.Statfs_t) error {
	return func(_ string, st *syscall.Statfs_t) error {
		const blocks = 8 << 20 // 4 KiB blocks: 32 GiB
		*st = syscall.Statfs_t{Bsize: 4096, Frsize: 4096, Blocks: blocks, Bfree: blocks * freePercent / 100, Bavail: blocks * freePercent / 100}
		return nil
	}
}

// shippedFiles reads the shipped check files.
func shippedFiles(t *testing.T) []modules.File {
	t.Helper()
	paths, _ := filepath.Glob("../../etc/picockpit-client/apps/com.picockpit/pidoctor/modules/*.json")
	var files []modules.File
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, modules.File{Path: p, Data: b})
	}
	return files
}

// runBuiltins runs the shipped built-in checks against the host tree root
// and returns the results by "module/check".
func runBuiltins(t *testing.T, m *Module) map[string]contract.PiDoctorResult {
	t.Helper()
	var builtins []*check
	for _, c := range m.order {
		if c.Builtin != "" {
			builtins = append(builtins, c)
		}
	}
	out := map[string]contract.PiDoctorResult{}
	for _, r := range m.runner.run(t.Context(), builtins) {
		out[r.Module+"/"+r.ID] = r
	}
	return out
}

func loadShipped(t *testing.T, root string, freePercent uint64) *Module {
	t.Helper()
	m, probs := load(modules.Env{HostRoot: root}, nil, "", shippedFiles(t))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	m.host.statfs = fakeStatfs(freePercent)
	m.host.adjtimex = func() (bool, error) { t.Error("adjtimex called for a fixture tree"); return false, nil }
	t.Cleanup(m.host.Close)
	return m
}

type want struct {
	verdict string
	message string // substring
	remedy  string // substring; "-" for none
}

// TestBuiltinsOnFixtureTrees evaluates the shipped built-in checks on the Pi
// fixture trees of pistats and pidoctor.
func TestBuiltinsOnFixtureTrees(t *testing.T) {
	pistats := "../pistats/testdata/fixtures/"
	for _, tc := range []struct {
		root string
		free uint64
		want map[string]want
	}{
		{pistats + "pi-zero-2w/root", 40, map[string]want{
			"hardware/under-voltage":   {"fail", "under-voltage now (get_throttled 0x50005)", "supply voltage is too low right now"},
			"hardware/throttled":       {"fail", "throttling now", "Improve cooling"},
			"hardware/soc-temperature": {"ok", "SoC at 61.22 °C", "-"},
			"hardware/wifi-signal":     {"ok", "wlan0 signal -62 dBm", "-"},
			"system/disk-root":         {"ok", "40% free on /", "-"},
			"system/disk-boot":         {"ok", "40% free on /boot/firmware", "-"},
			"system/read-only-root":    {"ok", "/ is mounted read-write (ext4 on /dev/mmcblk0p2)", "-"},
		}},
		{pistats + "pi4/root", 40, map[string]want{
			"hardware/under-voltage": {"ok", "no under-voltage since boot (get_throttled 0x0)", "-"},
			"hardware/throttled":     {"ok", "no throttling since boot", "-"},
			"hardware/wifi-signal":   {"ok", "no Wi-Fi interface is associated", "-"},
		}},
		{pistats + "pi5/root", 40, map[string]want{
			"hardware/under-voltage": {"ok", "no under-voltage since boot (rpi_volt alarm)", "-"},
			"hardware/throttled":     {"error", "could not check: the hwmon source cannot tell throttling", "-"},
		}},
		{pistats + "generic-amd64/root", 40, map[string]want{
			"hardware/under-voltage":   {"error", "not a Raspberry Pi kernel?", "-"},
			"hardware/soc-temperature": {"error", "no thermal zone of type cpu-thermal", "-"},
			"system/disk-boot":         {"error", "/boot/firmware: not mounted", "-"},
			"system/memory-pressure":   {"error", "/proc/pressure/memory does not exist", "-"},
		}},
		{"testdata/hosts/troubled", 3, map[string]want{
			"hardware/under-voltage":    {"fail", "under-voltage now (get_throttled 0x50005)", "official Raspberry Pi power supply"},
			"hardware/soc-temperature":  {"fail", "SoC at 83.5 °C: overheating", "throttles from 80 °C"},
			"hardware/wifi-signal":      {"fail", "very weak Wi-Fi: wlan0 signal -82 dBm", "closer"},
			"system/disk-root":          {"fail", "3% free on / (983.0 MiB of 32.0 GiB)", "apt clean"},
			"system/read-only-root":     {"fail", "/ is mounted read-only (ext4 on /dev/mmcblk0p2)", "fsck"},
			"system/memory-available":   {"fail", "3.9% of memory available", "zram"},
			"system/memory-pressure":    {"fail", "tasks waited for memory 38.5% of the last minute", "thrashing"},
			"system/reboot-required":    {"warn", "a reboot is required by linux-image-rpi-v8, libc6", "sudo reboot"},
			"system/clock-synchronized": {"warn", "not synchronized (no /run/systemd/timesync/synchronized)", "timedatectl"},
		}},
		{"testdata/hosts/healthy", 60, map[string]want{
			"hardware/under-voltage":    {"ok", "no under-voltage since boot", "-"},
			"hardware/soc-temperature":  {"ok", "SoC at 47.24 °C", "-"},
			"hardware/wifi-signal":      {"ok", "wlan0 signal -54 dBm", "-"},
			"system/disk-root":          {"ok", "60% free on /", "-"},
			"system/read-only-root":     {"ok", "read-write", "-"},
			"system/memory-available":   {"ok", "68.61% of memory available", "-"},
			"system/memory-pressure":    {"ok", "0.12%", "-"},
			"system/reboot-required":    {"ok", "no reboot required (running kernel 6.6.51+rpt-rpi-v8)", "-"},
			"system/clock-synchronized": {"ok", "synchronized (systemd-timesyncd)", "-"},
		}},
	} {
		t.Run(filepath.Base(filepath.Dir(tc.root))+"/"+filepath.Base(tc.root), func(t *testing.T) {
			got := runBuiltins(t, loadShipped(t, tc.root, tc.free))
			for id, w := range tc.want {
				r, ok := got[id]
				switch {
				case !ok:
					t.Errorf("%s: no result", id)
				case r.Verdict != w.verdict || !strings.Contains(r.Message, w.message):
					t.Errorf("%s: %s %q; want %s %q", id, r.Verdict, r.Message, w.verdict, w.message)
				case w.remedy == "-" && r.Remedy != "":
					t.Errorf("%s: remedy %q, want none", id, r.Remedy)
				case w.remedy != "-" && !strings.Contains(r.Remedy, w.remedy):
					t.Errorf("%s: remedy %q, want ...%s...", id, r.Remedy, w.remedy)
				}
			}
		})
	}
}

// TestThrottlingWords: the throttling check on get_throttled words, and the
// history of one host: under-voltage seen in one run is "since boot" in the
// next even after the firmware's sticky bits were cleared.
func TestThrottlingWords(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "sys/devices/platform/soc/soc:firmware/get_throttled")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	c := decodeOne(t, `{"id":"uv","name":"Power","builtin":"throttling"}`)
	c.Module = "m"
	for _, tc := range []struct {
		word, verdict, message string
		value                  float64
	}{
		{"0", "ok", "no under-voltage since boot (get_throttled 0x0)", 0},
		{"4", "ok", "no under-voltage since boot", 0},
		{"10000", "warn", "under-voltage occurred since boot, not now (get_throttled 0x10000)", 1},
		{"50005", "fail", "under-voltage now (get_throttled 0x50005)", 2},
		{"x", "error", "unexpected format", -1},
	} {
		// A fresh host per word: no history.
		if err := os.WriteFile(file, []byte(tc.word+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		h := &host{root: root}
		r := newRunner(1, h, time.Now).run(t.Context(), []*check{c})[0]
		h.Close()
		if r.Verdict != tc.verdict || !strings.Contains(r.Message, tc.message) || (tc.value >= 0 && r.Value != tc.value) {
			t.Errorf("%s: %s %v %q; want %s %v %q", tc.word, r.Verdict, r.Value, r.Message, tc.verdict, tc.value, tc.message)
		}
	}
	// One host, two runs: the history stays.
	h := &host{root: root}
	defer h.Close()
	run := newRunner(1, h, time.Now)
	for i, word := range []string{"5", "0"} {
		if err := os.WriteFile(file, []byte(word+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := run.run(t.Context(), []*check{c})[0]
		if want := []string{"fail", "warn"}[i]; r.Verdict != want {
			t.Errorf("run %d (word %s): %s %q, want %s", i, word, r.Verdict, r.Message, want)
		}
	}
}

// TestRebootRequiredKernelImage: a kernel image newer than the boot means a
// reboot is pending; an older one does not.
func TestRebootRequiredKernelImage(t *testing.T) {
	root := t.TempDir()
	img := filepath.Join(root, "boot/firmware/kernel8.img")
	for p, data := range map[string]string{"proc/stat": "cpu 1 2 3 4\nbtime 1764400000\n", "boot/firmware/kernel8.img": "kernel"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	boot := time.Unix(1764400000, 0)
	for _, tc := range []struct {
		mtime time.Time
		value float64
	}{{boot.Add(-time.Hour), 0}, {boot.Add(time.Hour), 1}} {
		if err := os.Chtimes(img, tc.mtime, tc.mtime); err != nil {
			t.Fatal(err)
		}
		o := probeRebootRequired(root)
		if o.err != "" || o.value == nil || *o.value != tc.value {
			t.Errorf("image at %v: %+v", tc.mtime, o)
		}
	}
}

// TestClockOnRealRoot: on "/" the kernel's flag decides.
func TestClockOnRealRoot(t *testing.T) {
	for _, synced := range []bool{true, false} {
		o := probeClock("/", func() (bool, error) { return synced, nil })
		if o.value == nil || (*o.value == 1) != synced {
			t.Errorf("synced=%v: %+v", synced, o)
		}
	}
	if _, err := kernelClockSynced(); err != nil {
		t.Errorf("adjtimex on this machine: %v", err)
	}
}

func TestParsers(t *testing.T) {
	some, full, ok := parsePSI([]byte("some avg10=1.00 avg60=2.50 avg300=3.00 total=5\nfull avg10=0.10 avg60=0.20 avg300=0.30 total=1\n"))
	if !ok || some != 2.5 || full != 0.2 {
		t.Errorf("parsePSI = %v %v %v", some, full, ok)
	}
	if _, _, ok := parsePSI([]byte("garbage")); ok {
		t.Error("parsePSI accepts garbage")
	}
	mounts := []byte("/dev/root / ext4 rw 0 0\n/dev/sda1 /mnt/my\\040disk vfat ro,relatime 0 0\noverlay / overlay ro,noatime 0 0\n")
	if _, fstype, ro, found := parseMountRO(mounts, "/"); !found || !ro || fstype != "overlay" {
		t.Errorf("the topmost / mount is the overlay, read-only: %v %v %v", fstype, ro, found)
	}
	if _, _, ro, found := parseMountRO(mounts, "/mnt/my disk"); !found || !ro {
		t.Errorf("escaped mount point: %v %v", ro, found)
	}
	if _, _, _, found := parseMountRO(mounts, "/data"); found {
		t.Error("found a mount that is not there")
	}
}

// TestShippedExternalRules judges what the shipped external checks' scripts
// print with the shipped rules.
func TestShippedExternalRules(t *testing.T) {
	m := loadShipped(t, t.TempDir(), 50)
	for _, tc := range []struct {
		check, stdout, verdict, message string
		value                           any
	}{
		{"hardware/sd-card-errors", "0\n", "ok", "no SD card errors in the kernel log since boot", 0.0},
		{"hardware/sd-card-errors", "3\n", "warn", "3 SD card or file system errors in the kernel log since boot", 3.0},
		{"hardware/sd-card-errors", "12\n", "fail", "12 SD card or file system errors", 12.0},
		{"system/failed-units", "0 failed: \n", "ok", "no failed systemd units", 0.0},
		{"system/failed-units", "2 failed: nginx.service wg-quick@wg0.service\n", "fail", "2 failed: nginx.service wg-quick@wg0.service", 2.0},
		{"system/pending-updates", "0 package updates pending\n", "ok", "the system is up to date", 0.0},
		{"system/pending-updates", "17 package updates pending\n", "warn", "17 package updates pending", 17.0},
		{"system/default-password", "no login user has the default password\n", "ok", "no login user has the default password", nil},
		{"system/default-password", "default password for pi; ssh password login disabled\n", "warn", "default password for pi; ssh password login disabled", "pi"},
		{"system/default-password", "default password for pi admin; ssh password login enabled\n", "fail", "ssh password login enabled", "pi admin"},
	} {
		c := m.checks[tc.check]
		if c == nil {
			t.Fatalf("no shipped check %s", tc.check)
		}
		o := c.evaluate(exited(0, tc.stdout, ""))
		if o.verdict != tc.verdict || !strings.Contains(o.message, tc.message) || o.value != tc.value || (o.verdict != "ok") != (o.remedy != "") {
			t.Errorf("%s on %q: %s %v %q remedy %q; want %s %v %q", tc.check, tc.stdout, o.verdict, o.value, o.message, o.remedy, tc.verdict, tc.value, tc.message)
		}
	}
	// A script that could not do its job exits non-zero: error, with its reason.
	o := m.checks["system/failed-units"].evaluate(exited(3, "", "System has not been booted with systemd as init system (PID 1). Can't operate.\n"))
	if o.verdict != "error" || !strings.Contains(o.message, "System has not been booted with systemd") {
		t.Errorf("failed-units without systemd: %+v", o)
	}
	o = m.checks["system/default-password"].evaluate(exited(127, "", "perl not found\n"))
	if o.verdict != "error" || !strings.Contains(o.message, "perl not found") {
		t.Errorf("default-password without perl: %+v", o)
	}
}
