package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
)

const goodModule = `{"id":"tools","name":"Tools","commands":[{"id":"hello","name":"Hello","argv":["/bin/echo","hello"],"user":"nobody"}]}`
const badModule = `{"id":"broken","name":"Broken","commands":[{"id":"x","name":"X","argv":["/bin/true"],"usr":"nobody"}]}`

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, body := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCheck(t *testing.T) {
	const cfg = "picockpit-client.config.json"
	const pc = "apps/com.picockpit/picontrol/modules/"
	for _, tc := range []struct {
		name     string
		files    map[string]string
		wantCode int
		want     []string // in stderr (or stdout when ok)
	}{
		{name: "ok", files: map[string]string{cfg: `{"device":{"id":"x"}}`, pc + "tools.json": goodModule}, want: []string{"ok:", "device x"}},
		{name: "misspelled key", files: map[string]string{cfg: `{"device":{"id":"x"},"broker":{"pasword":"s"}}`},
			wantCode: 1, want: []string{cfg, "broker.pasword", `did you mean "broker.password"`}},
		{name: "broken module file", files: map[string]string{cfg: `{"device":{"id":"x"}}`, pc + "tools.json": goodModule, pc + "broken.json": badModule},
			wantCode: 1, want: []string{"broken.json", "usr", "1 problem(s)"}},
		{name: "unknown app directory", files: map[string]string{cfg: `{"device":{"id":"x"}}`, "apps/com.picockpit/picontol/modules/a.json": goodModule},
			wantCode: 1, want: []string{"picontol", "no module kind"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			var out, errb bytes.Buffer
			code := realMain([]string{"check", "--config-dir", dir, "--state-dir", t.TempDir()}, &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.wantCode, out.String(), errb.String())
			}
			text := out.String() + errb.String()
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("output does not mention %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"run", "--no-such-flag"}, {"check", "extra"}} {
		var out, errb bytes.Buffer
		if code := realMain(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if errb.Len() == 0 {
			t.Errorf("%v: no message on stderr", args)
		}
	}
}

// TestRunStartsDespiteBrokenModule: the same broken file that check
// rejects does not stop run: it is reported on events and the good module
// still serves.
func TestRunStartsDespiteBrokenModule(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	const pc = "apps/com.picockpit/picontrol/modules/"
	o := agenttest.Options{BrokerURL: b.URL, DeviceID: "runbroken", Files: map[string]string{pc + "tools.json": goodModule, pc + "broken.json": badModule}}
	c.Subscribe("picockpit/runbroken/#")
	p := agenttest.StartProcess(t, o)
	c.WaitFor(10*time.Second, "online", brokertest.Topic(p.Root.Topic("status"), "online"))
	ev := c.WaitFor(10*time.Second, "problem event", func(m brokertest.Message) bool {
		return m.Topic == p.Root.Topic("events") && strings.Contains(string(m.Payload), "broken.json")
	})
	if !strings.Contains(string(ev.Payload), "usr") {
		t.Errorf("event does not name the field: %s", ev.Payload)
	}
	cat := c.WaitFor(10*time.Second, "catalogue", brokertest.Topic(p.Root.Topic("picontrol/commands")))
	if !strings.Contains(string(cat.Payload), `"hello"`) || strings.Contains(string(cat.Payload), "broken") {
		t.Errorf("catalogue = %s", cat.Payload)
	}
	if !strings.Contains(p.Logs.String(), "broken.json") {
		t.Error("the problem is not in the log")
	}
}

func TestACL(t *testing.T) {
	dir := writeTree(t, map[string]string{"picockpit-client.config.json": `{"device":{"id":"kitchen"},"broker":{"username":"kpi"},"topics":{"prefix":"home/pis"}}`})
	var out, errb bytes.Buffer
	if code := realMain([]string{"acl", "--config-dir", dir, "--frontend-user", "nodered"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"user kpi\n", "topic readwrite home/pis/kitchen/#\n",
		"user nodered\n", "topic read home/pis/#\n", "topic write home/pis/+/picontrol/run/+/+\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("acl output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "topic write home/pis/+/status") || strings.Contains(out.String(), "topic write home/pis/#") {
		t.Errorf("frontend may write device topics:\n%s", out.String())
	}
}
