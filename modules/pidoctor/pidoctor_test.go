package pidoctor

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

// TestPeriodicRunVerdictEvents: the periodic run publishes the report each
// time and an event for each verdict change: ok -> fail when the supply
// fails, fail -> warn when it recovers (under-voltage remembered since boot).
func TestPeriodicRunVerdictEvents(t *testing.T) {
	root := t.TempDir()
	thr := filepath.Join(root, "sys/devices/platform/soc/soc:firmware/get_throttled")
	if err := os.MkdirAll(filepath.Dir(thr), 0o755); err != nil {
		t.Fatal(err)
	}
	var m *Module
	write := func(word string) {
		t.Helper()
		// Hold every slot of the runner: no check reads the file while it is
		// rewritten (sysfs changes atomically, a test file does not).
		if m != nil {
			for range cap(m.runner.sem) {
				m.runner.sem <- struct{}{}
			}
			defer func() {
				for range cap(m.runner.sem) {
					<-m.runner.sem
				}
			}()
		}
		if err := os.WriteFile(thr, []byte(word+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0")
	m, probs := load(modules.Env{HostRoot: root, StateDir: t.TempDir()}, []byte(`{"interval":"10s"}`), "c.json", []modules.File{{Path: "p.json",
		Data: []byte(`{"id":"p","name":"P","checks":[{"id":"uv","name":"Power supply","builtin":"throttling"}]}`)}})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	m.cfg.Interval = 20 * time.Millisecond // below the configurable minimum, to keep the test short
	bus := bustest.New()
	defer bus.Close()
	if err := m.Start(t.Context(), bus); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	reportWith := func(verdict string) bool {
		return bus.WaitFor(30*time.Second, func(msgs []bustest.Message) bool {
			for _, msg := range slices.Backward(msgs) {
				if msg.Topic == contract.TopicPiDoctorReport {
					return msg.Opts.Retain && bytes.Contains(msg.Payload, []byte(`"verdict":"`+verdict+`"`))
				}
			}
			return false
		})
	}
	if !reportWith("ok") {
		t.Fatal("no report with ok")
	}
	write("50005")
	if !reportWith("fail") {
		t.Fatal("no report with fail")
	}
	write("0")
	if !reportWith("warn") {
		t.Fatal("no report with warn (under-voltage since boot)")
	}
	var changes []string
	for _, ev := range bus.Events() {
		if ev.Kind == contract.EventVerdict {
			changes = append(changes, ev.Message)
		}
	}
	if want := []string{"Power supply: ok -> fail", "Power supply: fail -> warn"}; !slices.Equal(changes, want) {
		t.Errorf("verdict events %q, want %q", changes, want)
	}
}
