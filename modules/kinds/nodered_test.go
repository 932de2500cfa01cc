//go:build nodered

package kinds_test

// The Node-RED flow shipped in docs/node-red against a real Node-RED with
// FlowFuse Dashboard 2, a real Mosquitto and a whole agent. Run with
// `make test-nodered`, which installs Node-RED into a cache directory and
// sets NODE_RED_DIR; without it this test fails (it never skips).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/gpio"
	"github.com/picockpit/picockpit-client/modules/picontrol"
	"github.com/picockpit/picockpit-client/modules/pistats"
)

func TestNodeRedFlow(t *testing.T) {
	nrDir := os.Getenv("NODE_RED_DIR")
	bin := filepath.Join(nrDir, "node_modules", "node-red", "red.js")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Node-RED not found (NODE_RED_DIR=%q): run make test-nodered: %v", nrDir, err)
	}
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fake := gpio.NewFake()
	stats := pistats.Kind()
	stats.Section = pistats.SectionKey
	hello := `{"id":"demo","name":"Demo","commands":[{"id":"hello","name":"Say hello","argv":["/bin/echo","hello from the Pi"],"user":"nobody"}]}`
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{gpio.KindWith(fake), stats, picontrol.Kind()},
		Files: map[string]string{"apps/com.picockpit/picontrol/modules/demo.json": hello},
		Config: map[string]any{"host": map[string]any{"root": pi4Root(t)}, "stats": map[string]any{"interval": "1s"},
			"gpio": map[string]any{"backend": "fake", "pins": []any{map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0}}}}})
	watch := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	watch.Subscribe(a.Topic("gpio/17/state"), a.Topic("events"))

	// Node-RED with the shipped flow.
	user := t.TempDir()
	flow, err := filepath.Abs(filepath.Join("..", "..", "docs", "node-red", "picockpit-flow.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := copyFile(flow, filepath.Join(user, "flows.json")); err != nil {
		t.Fatal(err)
	}
	port := brokertest.FreePort(t)
	settings := fmt.Sprintf(`module.exports = { uiHost: "127.0.0.1", uiPort: %d, flowFile: "flows.json", credentialSecret: false,
  nodesDir: %q, logging: { console: { level: "info" } }, editorTheme: { tours: false } };`, port, filepath.Join(nrDir, "node_modules"))
	if err := os.WriteFile(filepath.Join(user, "settings.js"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	// Node-RED finds the dashboard next to itself in NODE_RED_DIR/node_modules.
	if err := os.Symlink(filepath.Join(nrDir, "node_modules"), filepath.Join(user, "node_modules")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(user, "package.json"), []byte(`{"name":"nr-test","dependencies":{"@flowfuse/node-red-dashboard":"*"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &agenttest.Buffer{}
	cmd := exec.Command("node", bin, "--userDir", user, "--settings", filepath.Join(user, "settings.js"))
	cmd.Env = append(os.Environ(), "PICOCKPIT_MQTT_HOST=127.0.0.1", fmt.Sprintf("PICOCKPIT_MQTT_PORT=%d", portOf(t, b.URL)))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			t.Logf("node-red log:\n%s", logs.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, base+"/flows", 60*time.Second)
	var deployed []map[string]any
	getJSON(t, base+"/flows", &deployed)
	types := map[string]bool{}
	for _, n := range deployed {
		types[fmt.Sprint(n["type"])] = true
	}
	for _, want := range []string{"mqtt in", "mqtt out", "ui-gauge", "ui-switch", "ui-button", "ui-text"} {
		if !types[want] {
			t.Errorf("deployed flow has no %s node", want)
		}
	}
	// Every node type of the flow is installed: Node-RED reports the
	// missing ones as "Waiting for missing types".
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "Started flows") {
		if strings.Contains(logs.String(), "Waiting for missing types") || time.Now().After(deadline) {
			t.Fatalf("flows not started:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, err := http.Get(base + "/dashboard/pi"); err != nil || resp.StatusCode != 200 {
		t.Errorf("dashboard page: %v %v", err, resp)
	}

	// The flow saw the Pi (retained status) and the stats.
	waitContext(t, base, "device", func(v any) bool { return v == a.Root.Device })
	waitContext(t, base, "stats", func(v any) bool { m, ok := v.(map[string]any); return ok && m["memory"] != nil })

	// The relay: Node-RED's set changes the pin, and the switch's source of
	// truth (flow context gpio17) follows the retained state.
	post(t, base+"/inject/pc_inject_relay")
	watch.WaitFor(10*time.Second, "relay on via Node-RED", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("gpio/17/state") && strings.Contains(string(m.Payload), `"value":1`) && strings.Contains(string(m.Payload), `"node-red"`)
	})
	if fake.Level("GPIO17") != 1 {
		t.Error("relay line not on")
	}
	waitContext(t, base, "gpio17", func(v any) bool { m, ok := v.(map[string]any); return ok && m["value"] == float64(1) })

	// PiControl through Node-RED's MQTT 5 request properties.
	post(t, base+"/inject/pc_inject_hello")
	watch.WaitFor(10*time.Second, "audit of the Node-RED run", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("events") && strings.Contains(string(m.Payload), `"requester":"node-red"`) && strings.Contains(string(m.Payload), "hello")
	})
	waitContext(t, base, "lastReply", func(v any) bool {
		m, ok := v.(map[string]any)
		return ok && m["status"] == "done" && m["exit_code"] == float64(0) && m["correlation"] != ""
	})
	if strings.Contains(logs.String(), "[error]") {
		t.Errorf("Node-RED logged errors:\n%s", logs.String())
	}
}

func portOf(t *testing.T, u string) int {
	var p int
	if _, err := fmt.Sscanf(u[strings.LastIndex(u, ":")+1:], "%d", &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func waitHTTP(t *testing.T, url string, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not up after %s: %v", url, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, v any) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v: %s", url, err, body)
	}
}

func post(t *testing.T, url string) {
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

// waitContext polls Node-RED's context API for a key of the flow's context.
func waitContext(t *testing.T, base, key string, ok func(any) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last any
	for time.Now().Before(deadline) {
		var c map[string]any
		resp, err := http.Get(base + "/context/flow/pc_tab/" + key)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if json.Unmarshal(body, &c) == nil {
				if m, okm := c["default"].(map[string]any); okm {
					c = m
				}
				if msg, has := c["msg"]; has {
					var v any
					if s, isStr := msg.(string); isStr && json.Unmarshal([]byte(s), &v) == nil {
						last = v
					} else {
						last = msg
					}
					if ok(last) {
						return
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("flow context %q never matched; last %v", key, last)
}
