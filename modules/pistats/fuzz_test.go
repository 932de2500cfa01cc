package pistats

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
)

// fuzzFiles are the files the sampler parses on every sample, relative to a
// fixture root.
var fuzzFiles = []string{
	"proc/stat",
	"proc/meminfo",
	"proc/net/dev",
	"proc/loadavg",
	"proc/uptime",
	"proc/net/wireless",
	"proc/mounts",
	"sys/devices/platform/soc/soc:firmware/get_throttled",
	"sys/class/thermal/thermal_zone0/temp",
	"sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
	"sys/class/hwmon/hwmon0/in0_lcrit_alarm",
	"sys/class/hwmon/hwmon2/fan1_input",
	"sys/class/hwmon/hwmon2/pwm1",
}

// FuzzSample puts arbitrary bytes into one file the sampler parses and
// samples twice (the second time with the garbage as the "previous"
// reading): it must not panic, and whatever the kernel says, the snapshot
// must validate against the schema (no negative loads, no percentages above
// 100: unreadable input is null with a reason).
func FuzzSample(f *testing.F) {
	for i, p := range fuzzFiles {
		for _, fx := range []string{"pi4", "pi5"} {
			if b, err := os.ReadFile(filepath.Join("testdata", "fixtures", fx, "root", p)); err == nil {
				f.Add(uint8(i), b)
			}
		}
	}
	f.Add(uint8(0), []byte("cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 99999999999999999999 1 1 1\ncpu\ncpu9999 1 1 1 1\nbtime -5\n"))
	f.Add(uint8(3), []byte("-1.5 2 3 1/2 3\n"))
	f.Add(uint8(5), []byte("a\nb\n wlan0: 0000 -70. -40. -256 0 0 0 0 0 0\n"))
	// One sampler for the whole run: each input also meets the state the
	// previous inputs left behind. The fixture copy lives in f's temp dir,
	// removed when the run ends.
	root := filepath.Join(f.TempDir(), "root")
	copyTree(f, filepath.Join("testdata", "fixtures", "pi5", "root"), root)
	copyTree(f, filepath.Join("testdata", "fixtures", "pi4", "root", "sys/devices/platform"), filepath.Join(root, "sys/devices/platform"))
	schema := agenttest.MustSchema(f, "stats.schema.json")
	clk := newClock(t0)
	s := newTestSampler("pi5", root, clk, nil)
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		rel := fuzzFiles[int(which)%len(fuzzFiles)]
		path := filepath.Join(root, rel)
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(path, orig, 0o644)

		clk.add(5 * time.Second)
		s.Sample()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			clk.add(5 * time.Second)
			b, err := json.Marshal(s.Sample())
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			validate(t, schema, rel, b)
		}
	})
}
