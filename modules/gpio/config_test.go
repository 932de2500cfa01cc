package gpio

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestLoadProblems(t *testing.T) {
	for _, c := range []struct {
		name    string
		section string
		files   []string
		// want: one "file|field|error part" per problem
		want []string
		pins []string
	}{
		{
			name:    "unknown field names its path",
			section: `{"pins":[{"bcm":17,"mode":"output","colour":"red"}]}`,
			want:    []string{"config.json|gpio.pins[0].colour|unknown field"},
		},
		{
			name:    "jumpers need the fake backend",
			section: `{"fake_jumpers":[{"from":17,"to":27}],"pins":[{"bcm":17,"mode":"output"}]}`,
			want:    []string{`config.json|gpio.fake_jumpers[0]|fake backend only`},
		},
		{
			name:    "a jumper joins two pins",
			section: `{"backend":"fake","fake_jumpers":[{"from":17,"to":17}],"pins":[{"bcm":17,"mode":"output"}]}`,
			want:    []string{`config.json|gpio.fake_jumpers[0]|the same pin`},
		},
		{
			name:    "bad backend",
			section: `{"backend":"wiringpi","pins":[{"bcm":17,"mode":"output"}]}`,
			want:    []string{`config.json|gpio.backend|"wiringpi" is not one of gpiocdev, fake`},
		},
		{
			name:  "missing bcm",
			files: []string{`{"pins":[{"mode":"output"}]}`},
			want:  []string{"m0.json|pins[0].bcm|missing"},
		},
		{
			name:  "bcm out of range",
			files: []string{`{"pins":[{"bcm":99,"mode":"output"}]}`},
			want:  []string{"m0.json|pins[0].bcm|99 is outside 0..57"},
		},
		{
			name:  "bad mode, bad pull, bad modes",
			files: []string{`{"pins":[{"bcm":1,"mode":"blink"}]}`, `{"pins":[{"bcm":2,"mode":"input","pull":"sideways"}]}`, `{"pins":[{"bcm":3,"mode":"output","modes":["pwm"]}]}`},
			want:  []string{`m0.json|pins[0].mode|"blink" is not one of`, `m1.json|pins[0].pull|"sideways"`, `m2.json|pins[0].modes|does not contain the start mode`},
		},
		{
			name: "input-only misuse",
			files: []string{
				`{"pins":[{"bcm":1,"mode":"input","failsafe":{"value":0,"after":"1s"}}]}`,
				`{"pins":[{"bcm":2,"mode":"input","initial":1}]}`,
				`{"pins":[{"bcm":3,"mode":"output","debounce":"10ms"}]}`,
			},
			want: []string{"m0.json|pins[0].failsafe|input-only", "m1.json|pins[0].initial|an input has no initial", "m2.json|pins[0].debounce|only inputs"},
		},
		{
			name: "failsafe and durations",
			files: []string{
				`{"pins":[{"bcm":1,"mode":"output","failsafe":{"value":2,"after":"1s"}}]}`,
				`{"pins":[{"bcm":2,"mode":"output","failsafe":{"value":1}}]}`,
				`{"pins":[{"bcm":3,"mode":"output","failsafe":{"value":1,"after":30}}]}`,
				`{"pins":[{"bcm":4,"mode":"output","failsafe":{"value":1,"after":"soon"}}]}`,
			},
			want: []string{"m0.json|pins[0].failsafe.value|not 0 or 1", "m1.json|pins[0].failsafe.after|missing", "m2.json|pins[0].failsafe.after|got the number 30 (write \"30s\"", `m3.json|pins[0].failsafe.after|"soon" is not a duration`},
		},
		{
			name: "pwm limits",
			files: []string{
				`{"pins":[{"bcm":1,"mode":"output","pwm":{"frequency":10}}]}`,
				`{"pins":[{"bcm":2,"mode":"pwm","pwm":{"frequency":9000}}]}`,
				`{"pins":[{"bcm":3,"mode":"pwm","pwm":{"duty":2}}]}`,
				`{"pins":[{"bcm":4,"mode":"pwm","modes":["pwm","output"],"pwm":{"hardware":{"chip":0,"channel":1}}}]}`,
				`{"pins":[{"bcm":5,"mode":"pwm","pwm":{"max_frequency":6000}}]}`,
			},
			want: []string{"m0.json|pins[0].pwm|modes do not include pwm", "m1.json|pins[0].pwm.frequency|9000 is outside 0.1..1000", "m2.json|pins[0].pwm.duty|2 is outside", "m3.json|pins[0].pwm.hardware|cannot switch", "m4.json|pins[0].pwm.max_frequency|6000 is outside 0.1..5000"},
		},
		{
			name:    "a pin twice: the later file is skipped, the others load",
			section: `{"pins":[{"bcm":17,"mode":"output"}]}`,
			files:   []string{`{"pins":[{"bcm":22,"mode":"input"},{"bcm":17,"mode":"input"}]}`, `{"pins":[{"bcm":23,"mode":"input"},{"bcm":23,"mode":"output"}]}`, `{"pins":[{"bcm":27,"mode":"pwm"}]}`},
			want:    []string{"m0.json|pins[1].bcm|pin 17 is already configured in config.json", "m1.json|pins[1].bcm|pin 23 is configured twice in this file"},
			pins:    []string{"17", "27"},
		},
		{
			name:  "not JSON",
			files: []string{`{"pins":[`, ``},
			want:  []string{"m0.json||ends early", "m1.json||empty document"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			var section []byte
			if c.section != "" {
				section = []byte(c.section)
			}
			var files []modules.File
			for i, f := range c.files {
				files = append(files, modules.File{Path: filepath.Join("/etc/apps/com.picockpit/gpio/modules", "m"+string(rune('0'+i))+".json"), Data: []byte(f)})
			}
			mod, probs := KindWith(NewFake()).Load(modules.Env{}, section, "/etc/picockpit-client/config.json", files)
			if len(probs) != len(c.want) {
				t.Fatalf("problems %v, want %d: %v", probs, len(c.want), c.want)
			}
			for i, p := range probs {
				parts := strings.SplitN(c.want[i], "|", 3)
				if filepath.Base(p.File) != parts[0] || p.Field != parts[1] || !strings.Contains(p.Err.Error(), parts[2]) {
					t.Errorf("problem %d = {%s %q %v}, want %s", i, filepath.Base(p.File), p.Field, p.Err, c.want[i])
				}
			}
			var ids []string
			if mod != nil {
				for _, s := range mod.(*module).specs {
					ids = append(ids, s.id)
				}
			}
			if d := cmp.Diff(c.pins, ids); d != "" {
				t.Errorf("loaded pins (-want +got):\n%s", d)
			}
		})
	}
}

// fakePWMChip builds <root>/sys/class/pwm/pwmchip<n>/pwm<ch> as the kernel
// shows an exported channel.
func fakePWMChip(t *testing.T, root string, chip, ch int) string {
	t.Helper()
	dir := filepath.Join(root, "sys", "class", "pwm", "pwmchip"+string(rune('0'+chip)), "pwm"+string(rune('0'+ch)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"period", "duty_cycle", "enable"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestCatalogueGolden loads the testdata config (main section plus module
// files, two of them bad) and compares the gpio/pins catalogue.
func TestCatalogueGolden(t *testing.T) {
	root := t.TempDir()
	pwmDir := fakePWMChip(t, root, 0, 0)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "config", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var files []modules.File
	for _, n := range []string{"bad-mode.json", "dup.json", "led.json"} {
		files = append(files, modules.File{Path: "testdata/config/" + n, Data: read(n)})
	}
	mod, probs := KindWith(NewFake()).Load(modules.Env{HostRoot: root}, read("main.json"), "testdata/config/main.json", files)
	var got []string
	for _, p := range probs {
		got = append(got, p.Error())
	}
	want := []string{
		`testdata/config/bad-mode.json: pins[0].mode: "blink" is not one of input, output, pwm`,
		`testdata/config/dup.json: pins[1].bcm: pin 17 is already configured in main.json`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	bus := bustest.New()
	defer bus.Close()
	m := mod.(*module)
	m.clock = newFakeClock()
	if err := m.Start(context.Background(), bus); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	msg, ok := bus.Retained(contract.TopicGPIOPins)
	if !ok {
		t.Fatal("no catalogue")
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, msg.Payload, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	golden := filepath.Join("testdata", "pins.golden.json")
	if *update {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantB, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if d := cmp.Diff(string(wantB), pretty.String()); d != "" {
		t.Errorf("catalogue (-golden +got):\n%s", d)
	}

	// The hardware PWM pin runs on the sysfs channel: 25 kHz, duty 0.
	if p, d, e := readTrim(t, pwmDir+"/period"), readTrim(t, pwmDir+"/duty_cycle"), readTrim(t, pwmDir+"/enable"); p != "40000" || d != "0" || e != "1" {
		t.Errorf("sysfs period %s duty %s enable %s", p, d, e)
	}
}

func TestHardwarePWMSets(t *testing.T) {
	root := t.TempDir()
	dir := fakePWMChip(t, root, 0, 1)
	mod, probs := KindWith(NewFake()).Load(modules.Env{HostRoot: root},
		[]byte(`{"pins":[{"bcm":13,"mode":"pwm","pwm":{"frequency":1000,"max_frequency":100000,"hardware":{"chip":0,"channel":1}},"failsafe":{"value":1,"after":"1s"}}]}`), "c.json", nil)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	h := &harness{t: t, m: mod.(*module), bus: bustest.New(), clock: newFakeClock()}
	h.m.clock = h.clock
	defer h.bus.Close()
	if err := h.m.Start(context.Background(), h.bus); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		set                   string
		period, duty, enabled string
	}{
		{`{"pwm":{"duty":0.25}}`, "1000000", "250000", "1"},
		{`{"pwm":{"frequency":50000}}`, "20000", "5000", "1"},
		{`off`, "20000", "0", "1"},
		{`on`, "20000", "5000", "1"},
	} {
		h.mustSet("13", c.set)
		if p, d, e := readTrim(t, dir+"/period"), readTrim(t, dir+"/duty_cycle"), readTrim(t, dir+"/enable"); p != c.period || d != c.duty || e != c.enabled {
			t.Errorf("%s: period %s duty %s enable %s, want %s %s %s", c.set, p, d, e, c.period, c.duty, c.enabled)
		}
	}
	// Failsafe 1 holds the output high: duty = period.
	h.bus.SetConnected(false)
	h.clock.waitUntil(t, "failsafe timer", func(pending, _ int) bool { return pending == 1 })
	h.clock.Advance(time.Second)
	h.waitState("13", "failsafe", func(s contract.GPIOState) bool { return s.Failsafe })
	if d := readTrim(t, dir+"/duty_cycle"); d != "20000" {
		t.Errorf("failsafe duty %s, want the full period", d)
	}
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	if e := readTrim(t, dir+"/enable"); e != "0" {
		t.Errorf("enable %s after Close, want 0", e)
	}
}
