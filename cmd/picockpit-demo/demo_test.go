package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// The fake host's counters move between ticks, so the agent sees CPU use,
// network rates and a running uptime instead of frozen fixture files.
func TestFakeHostCountersMove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "host")
	h, err := newFakeHost(filepath.Join("..", "..", "modules", "pistats", "testdata", "fixtures", "pi4", "root"), dir)
	if err != nil {
		t.Fatal(err)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	files := []string{"proc/stat", "proc/uptime", "proc/net/dev", "sys/class/thermal/thermal_zone0/temp"}
	before := map[string]string{}
	for _, f := range files {
		before[f] = read(f)
	}
	if err := h.tick(h.lastTick.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, f := range files[:3] {
		if read(f) == before[f] {
			t.Errorf("%s did not change after a tick", f)
		}
	}
	if m := read("proc/mounts"); strings.Count(m, "\n") != 1 || !strings.Contains(m, " / ") {
		t.Errorf("mounts = %q, want only /", m)
	}
}

// The view turns the device's messages into the compact screen.
func TestViewRender(t *testing.T) {
	root := contract.Root{Prefix: "picockpit", Device: "demo-pi"}
	v := newView(root)
	msgs := []struct{ rel, payload string }{
		{"status", "online"},
		{"gpio/pins", `{"pins":[{"pin":"17","name":"relay"}]}`},
		{"gpio/17/state", `{"pin":"17","mode":"out","value":1,"seq":2}`},
		{"picontrol/result/demo/hello", `{"status":"done","exit_code":0,"stdout":"hello Ada\n","ts":"2026-11-29T21:14:00Z"}`},
		{"events", `{"kind":"command","message":"demo/hello as nobody: done","ts":"2026-11-29T21:14:00Z"}`},
		{"stats", `{"seq":3,"cpu":{"percent":37},"temperature":{"soc_c":48.7}}`},
	}
	for _, m := range msgs {
		v.Update(root.Topic(m.rel), []byte(m.payload))
	}
	var b strings.Builder
	v.Render(&b, "BANNER\n")
	out := b.String()
	for _, want := range []string{"status: online", "cpu 37%", "48.7°C", "17 relay out=1", "demo/hello", "done exit 0  hello Ada", "command", "BANNER"} {
		if !strings.Contains(out, want) {
			t.Errorf("view lacks %q:\n%s", want, out)
		}
	}
	v.Update(root.Topic("status"), []byte("offline"))
	if v.Status() != "offline" {
		t.Errorf("status %q after offline", v.Status())
	}
}
