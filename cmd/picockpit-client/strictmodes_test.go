package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/picontrol"
)

// The bad trees of issue 12 through the real entry points: check names
// each refused file with its reason and returns (no FIFO or /dev/zero hang),
// and the good module beside them still runs.
func TestCheckRefusesUntrustedFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chowns files: run as root (CI is root)")
	}
	const pc = "apps/com.picockpit/picontrol/modules/"
	dir := writeTree(t, map[string]string{
		"picockpit-client.config.json": `{"device":{"id":"x"}}`,
		pc + "tools.json":              goodModule,
		pc + "loose.json":              goodModule,
		pc + "theirs.json":             goodModule,
	})
	mods := filepath.Join(dir, pc)
	if err := os.Chmod(filepath.Join(mods, "loose.json"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(mods, "theirs.json"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(mods, "zz.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(mods, "z.json")); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := realMain([]string{"check", "--config-dir", dir}, &out, &errb); code != 1 {
		t.Fatalf("check exit %d, want 1; %s%s", code, out.String(), errb.String())
	}
	text := errb.String()
	for _, want := range []string{
		"warning: " + filepath.Join(dir, "picockpit-client.config.json") + " is readable by group or others (mode 0644)",
		"loose.json: refused: writable by group or others (mode 0666)",
		"theirs.json: refused: owned by uid 65534, not root",
		"zz.json: refused: not a regular file (a FIFO)",
		"z.json: refused: " + filepath.Join(mods, "z.json") + " (-> /dev/zero): not a regular file (a character device)",
		"4 problem(s) found",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("check output lacks %q:\n%s", want, text)
		}
	}
	out.Reset()
	errb.Reset()
	if code := realMain([]string{"run-command", "--config-dir", dir, "tools", "hello"}, &out, &errb); code != 0 || out.String() != "hello\n" {
		t.Fatalf("the good module beside them: exit %d, stdout %q, stderr %s", code, out.String(), errb.String())
	}
}

// The SIGHUP case: files that turn untrusted are refused at the
// reload, each named with its reason on events, and the good module still
// serves.
func TestReloadReportsUntrustedFilesOnEvents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chowns files: run as root (CI is root)")
	}
	const pc = "apps/com.picockpit/picontrol/modules/"
	b := brokertest.Mosquitto(t, brokertest.Options{})
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{picontrol.Kind()},
		Files: map[string]string{pc + "tools.json": goodModule}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("events"), a.Topic("picontrol/commands"))
	mods := filepath.Join(a.ConfigDir, pc)
	evil := strings.Replace(goodModule, `"tools"`, `"evil"`, 1)
	if err := os.WriteFile(filepath.Join(mods, "loose.json"), []byte(evil), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(mods, "loose.json"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(mods, "zz.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Reset()
	a.Reload()
	for _, want := range []struct{ file, reason string }{
		{"loose.json", "refused: writable by group or others (mode 0666)"},
		{"zz.json", "refused: not a regular file (a FIFO)"},
	} {
		c.WaitFor(30*time.Second, "event "+want.file, func(m brokertest.Message) bool {
			var ev contract.Event
			return m.Topic == a.Topic("events") && json.Unmarshal(m.Payload, &ev) == nil && ev.Kind == contract.EventError &&
				ev.Fields["file"] == filepath.Join(mods, want.file) && strings.Contains(ev.Message, want.reason)
		})
	}
	m := c.WaitFor(30*time.Second, "catalogue after the reload", brokertest.Topic(a.Topic("picontrol/commands")))
	if !strings.Contains(string(m.Payload), `"tools"`) || strings.Contains(string(m.Payload), `"evil"`) {
		t.Errorf("catalogue after the reload: %s", m.Payload)
	}
}
