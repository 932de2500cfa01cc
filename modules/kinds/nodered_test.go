//go:build nodered

package kinds_test

// The Node-RED flow shipped in docs/node-red against a real Node-RED 4.1
// with FlowFuse Dashboard 2, a real Mosquitto, two whole agents and a real
// browser (headless Chromium driven with chromedp). Run with
// `make test-nodered`, which installs Node-RED into a cache directory, sets
// NODE_RED_DIR and installs Chromium; without them this test fails (it
// never skips). PICOCKPIT_SCREENSHOT_DIR=docs/node-red saves the
// screenshots shown in the README.

import (
	"context"
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

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/gpio"
	"github.com/picockpit/picockpit-client/modules/picontrol"
	"github.com/picockpit/picockpit-client/modules/pistats"
)

// chromiumPath is Debian's chromium package.
const chromiumPath = "/usr/bin/chromium"

const demoCommands = `{"id":"demo","name":"Demo","commands":[
 {"id":"hello","name":"Say hello","argv":["/bin/echo","hello from the Pi"],"user":"nobody"},
 {"id":"restart-app","name":"Restart the app","description":"restarts the demo app","argv":["/bin/echo","app restarted"],"user":"nobody","confirm":true}]}`

func startNodeRedAgent(t *testing.T, b *brokertest.Broker, id string, fake *gpio.Fake, pins ...any) *agenttest.Agent {
	stats := pistats.Kind()
	stats.Section = pistats.SectionKey
	return agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, DeviceID: id,
		Kinds: []modules.Kind{gpio.KindWith(fake), stats, picontrol.Kind()},
		Files: map[string]string{"apps/com.picockpit/picontrol/modules/demo.json": demoCommands},
		Config: map[string]any{"host": map[string]any{"root": pi4Root(t)}, "stats": map[string]any{"interval": "1s"},
			"gpio": map[string]any{"backend": "fake", "pins": pins}}})
}

// startNodeRed runs Node-RED with the shipped flow and returns its base URL.
func startNodeRed(t *testing.T, brokerURL string) string {
	nrDir := os.Getenv("NODE_RED_DIR")
	bin := filepath.Join(nrDir, "node_modules", "node-red", "red.js")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Node-RED not found (NODE_RED_DIR=%q): run make test-nodered: %v", nrDir, err)
	}
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
	cmd.Env = append(os.Environ(), "PICOCKPIT_MQTT_HOST=127.0.0.1", fmt.Sprintf("PICOCKPIT_MQTT_PORT=%d", portOf(t, brokerURL)))
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
	for _, want := range []string{"mqtt in", "mqtt out", "ui-template", "function"} {
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
	t.Cleanup(func() {
		if strings.Contains(logs.String(), "[error]") {
			t.Errorf("Node-RED logged errors:\n%s", logs.String())
		}
	})
	return base
}

// browser starts headless Chromium at the given window size.
func browser(t *testing.T, w, h int) context.Context {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium not found at %s (apt-get install chromium chromium-driver; make test-nodered does): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(w, h),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*cdpruntime.EventConsoleAPICalled); ok && (e.Type == "error" || e.Type == "warning") {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			t.Logf("browser console %s: %s", e.Type, strings.Join(parts, " "))
		}
		if e, ok := ev.(*cdpruntime.EventExceptionThrown); ok {
			t.Logf("browser exception: %s %v", e.ExceptionDetails.Text, e.ExceptionDetails.Exception)
		}
	}))
	t.Cleanup(cancel2)
	// The first run starts the browser for the life of ctx (no timeout).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	runWithin(t, ctx, 30*time.Second, what, steps...)
}

// runWithin is run with its own time limit (the first page load on a busy
// two-core machine takes a while: the dashboard is a large Vue app).
func runWithin(t *testing.T, ctx context.Context, limit time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		h, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		html, _ := chromedp.Run(h, chromedp.Evaluate[string](`(document.querySelector("main") || document.body).innerHTML.slice(0, 6000)`))
		t.Fatalf("browser: %s: %v\npage: %s", what, err, html)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: %s: %v", expr, err)
	}
	return v
}

// waitText waits until the text of sel contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string) string {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got = eval[string](t, ctx, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : "" })()`, sel))
		if strings.Contains(got, want) {
			return got
		}
		time.Sleep(150 * time.Millisecond)
	}
	t.Fatalf("browser: %s never showed %q (last %q)", sel, want, got)
	return ""
}

func count(t *testing.T, ctx context.Context, sel string) int {
	return eval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("PICOCKPIT_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNodeRedFlow drives the shipped dashboard in a real browser: two Pis
// listed and switching between them, a null metric shown as unavailable, a
// GPIO switch that changes that Pi's pin (checked on MQTT) and shows the
// confirmed state, a set the agent refuses shown as refused, a command's
// result, a confirm command that asks before it runs, and an offline Pi
// whose controls are disabled and whose stats turn stale.
func TestNodeRedFlow(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	fakeA, fakeB := gpio.NewFake(), gpio.NewFake()
	pia := startNodeRedAgent(t, b, "pia", fakeA,
		map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0},
		map[string]any{"bcm": 27, "name": "door", "mode": "input"},
		map[string]any{"bcm": 18, "name": "fan", "mode": "pwm", "modes": []any{"pwm", "output"}, "pwm": map[string]any{"frequency": 20, "duty": 0.25}})
	pib := startNodeRedAgent(t, b, "pib", fakeB, map[string]any{"bcm": 22, "name": "lamp", "mode": "output", "initial": 0})
	watch := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	watch.Subscribe(pia.Topic("gpio/+/state"), pib.Topic("gpio/+/state"), pia.Topic("stats"), pia.Topic("events"))
	// The fixture has no CPU time progress: cpu is null with a reason.
	st := watch.WaitFor(wait, "stats of pia", brokertest.Topic(pia.Topic("stats")))
	var stats contract.Stats
	if err := json.Unmarshal(st.Payload, &stats); err != nil || stats.CPU != nil || stats.Unavailable["cpu"] == "" {
		t.Fatalf("the test needs a null cpu metric: %s", st.Payload)
	}

	base := startNodeRed(t, b.URL)
	ctx := browser(t, 1280, 900)
	runWithin(t, ctx, 2*time.Minute, "open the dashboard", chromedp.Navigate(base+"/dashboard/pi"),
		chromedp.WaitVisible(chromedp.CSS(`[data-pi="pia"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-pi="pib"]`)))

	// Two Pis, switching between them.
	run(t, ctx, "select pib", chromedp.Click(chromedp.CSS(`[data-pi="pib"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-selected="pib"] [data-pin="22"]`)))
	if count(t, ctx, `[data-pin="17"]`) != 0 {
		t.Error("pib's page shows pia's pin 17")
	}
	run(t, ctx, "select pia", chromedp.Click(chromedp.CSS(`[data-pi="pia"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-selected="pia"] [data-pin="17"]`)))

	// A null metric is "unavailable", never 0 %.
	waitText(t, ctx, `[data-metric="cpu"] .pc-value`, "unavailable")
	waitText(t, ctx, `[data-metric="temperature"] .pc-value`, "°C")

	// The relay switch: the click changes pia's pin, and the switch shows the
	// state the Pi confirmed.
	watch.Reset()
	run(t, ctx, "click the relay", chromedp.WaitEnabled(chromedp.CSS(`[data-pin="17"] button.pc-switch`)),
		chromedp.Click(chromedp.CSS(`[data-pin="17"] button.pc-switch`)))
	watch.WaitFor(wait, "relay on via the dashboard", func(m brokertest.Message) bool {
		var s contract.GPIOState
		return m.Topic == pia.Topic("gpio/17/state") && json.Unmarshal(m.Payload, &s) == nil && s.Value == 1 && s.Requester == "node-red"
	})
	if fakeA.Level("GPIO17") != 1 || fakeB.Level("GPIO22") != 0 {
		t.Errorf("pin levels: pia 17 = %d (want 1), pib 22 = %d (want 0)", fakeA.Level("GPIO17"), fakeB.Level("GPIO22"))
	}
	run(t, ctx, "relay shows on", chromedp.WaitVisible(chromedp.CSS(`[data-pin="17"] button.pc-switch[aria-checked="true"]`)))

	// A set the Pi refuses: another client switched the fan to output mode,
	// so the dashboard's PWM change is refused, and it says so.
	watch.Publish(pia.Topic("gpio/18/set"), []byte(`{"mode":"out","value":0}`), brokertest.PublishOptions{QoS: 1})
	watch.WaitFor(wait, "fan in out mode", func(m brokertest.Message) bool {
		return m.Topic == pia.Topic("gpio/18/state") && strings.Contains(string(m.Payload), `"mode":"out"`)
	})
	run(t, ctx, "move the fan slider", chromedp.WaitEnabled(chromedp.CSS(`[data-pin="18"] input.pc-range`)))
	eval[bool](t, ctx, `(() => { const e = document.querySelector('[data-pin="18"] input.pc-range'); e.value = 40; e.dispatchEvent(new Event('change')); return true })()`)
	waitText(t, ctx, `[data-pin="18"] [data-refused]`, "pwm needs mode pwm")

	// A command and its result.
	run(t, ctx, "run hello", chromedp.Click(chromedp.CSS(`[data-cmd="demo/hello"] button`)))
	waitText(t, ctx, `[data-cmd="demo/hello"] [data-result]`, "done (exit 0)")
	waitText(t, ctx, `[data-cmd="demo/hello"] [data-result]`, "hello from the Pi")

	// A confirm command asks first and runs only after "Run".
	run(t, ctx, "ask before restart-app", chromedp.Click(chromedp.CSS(`[data-cmd="demo/restart-app"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-confirm]`)))
	if n := count(t, ctx, `[data-cmd="demo/restart-app"] [data-result]`); n != 0 {
		t.Fatal("the confirm command ran before it was confirmed")
	}
	for _, m := range watch.Messages() {
		if m.Topic == pia.Topic("events") && strings.Contains(string(m.Payload), "restart-app") {
			t.Fatalf("restart-app ran before confirmation: %s", m.Payload)
		}
	}
	screenshotAt(t, ctx, "dashboard-confirm.png")
	run(t, ctx, "confirm", chromedp.Click(chromedp.CSS(`[data-confirm-run]`)), chromedp.WaitNotPresent(chromedp.CSS(`[data-confirm]`)))
	waitText(t, ctx, `[data-cmd="demo/restart-app"] [data-result]`, "app restarted")

	// The PiDoctor report as the pidoctor module publishes it (retained):
	// the worst verdict first, checks sorted worst first with remedies. This
	// agent has no pidoctor module, so nothing answers "Run diagnostics"
	// (the agent does not subscribe pidoctor/run): the request expires and
	// the page says that no answer came instead of waiting forever.
	report := `{"summary":{"worst":"fail","counts":{"ok":1,"fail":1}},"ts":"2026-11-29T12:00:00Z","checks":[
	 {"module":"system","id":"ntp","name":"Clock synchronized","category":"time","verdict":"ok","value":"yes","message":"NTP synchronized","remedy":"","duration_ms":3},
	 {"module":"system","id":"disk","name":"Root file system space","category":"storage","verdict":"fail","value":"97 %","message":"the root file system is almost full","remedy":"remove old logs: journalctl --vacuum-size=100M","duration_ms":2}]}`
	watch.Publish(pia.Topic("pidoctor/report"), []byte(report), brokertest.PublishOptions{QoS: 1, Retain: true})
	waitText(t, ctx, `[data-doctor] [data-worst]`, "fail")
	first := waitText(t, ctx, `[data-doctor] .pc-row:nth-child(2)`, "Root file system space")
	if !strings.Contains(first, "Remedy: remove old logs") {
		t.Errorf("the failed check does not come first with its remedy: %q", first)
	}
	run(t, ctx, "run diagnostics", chromedp.Click(chromedp.CSS(`[data-run-doctor]`)))
	waitText(t, ctx, `[data-doctor] .pc-row:first-child`, "no answer from the Pi")
	screenshot(t, ctx, "dashboard.png")

	// Offline: pib stops; its controls are disabled and its stats stale.
	if err := pib.Stop(); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "select offline pib", chromedp.Click(chromedp.CSS(`[data-pi="pib"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-selected="pib"] [data-offline]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-selected="pib"] [data-pin="22"] button.pc-switch[disabled]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-selected="pib"] [data-stale]`)))

	// The phone layout.
	runWithin(t, ctx, 2*time.Minute, "phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/dashboard/pi"),
		chromedp.WaitVisible(chromedp.CSS(`[data-selected="pia"] [data-pin="17"]`)))
	screenshot(t, ctx, "dashboard-phone.png")
}

// screenshotAt saves the current viewport (the confirmation dialog is
// fixed to it).
func screenshotAt(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("PICOCKPIT_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Fatal(err)
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
