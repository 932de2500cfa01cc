// Command picockpit-demo (`make demo`) shows picockpit-client end to end on
// any Linux machine: it starts a throwaway Mosquitto on a free loopback port,
// runs the agent from the repo's etc/ defaults with a temp state dir, fake
// GPIO (an output pin wired to an input pin by a fake jumper) and, where
// there is no Pi, a Raspberry Pi 4 fixture tree whose counters move, and
// shows a compact live view of the device (status, stats, pins, command
// results, events) with the commands to try kept on screen. `-raw` prints
// the raw topic tree instead. q or Ctrl-C stops the agent (the view shows
// its offline), then the broker, and removes the temp files.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/contract"
)

func main() {
	raw := flag.Bool("raw", false, "print the raw topic tree (topic and payload of every message) instead of the live view")
	flag.Parse()
	if err := run(*raw); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(raw bool) error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(repo, "etc", "picockpit-client")); err != nil {
		return errors.New("run me from the repository root (make demo)")
	}
	mosq, err := findMosquitto()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "picockpit-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	port, err := freePort()
	if err != nil {
		return err
	}
	brokerURL := fmt.Sprintf("mqtt://127.0.0.1:%d", port)
	conf := filepath.Join(tmp, "mosquitto.conf")
	user := ""
	if os.Geteuid() == 0 {
		user = "user root\n"
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("%spersistence false\nallow_anonymous true\nset_tcp_nodelay true\nlistener %d 127.0.0.1\n", user, port)), 0o600); err != nil {
		return err
	}
	broker := background(exec.Command(mosq, "-c", conf))
	if err := broker.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	defer stop(broker)
	if err := waitPort(port); err != nil {
		return err
	}

	// The agent, built from this checkout.
	fmt.Println("building the agent ...")
	bin := filepath.Join(tmp, "picockpit-client")
	build := exec.Command("go", "build", "-o", bin, "./cmd/picockpit-client")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	cfgDir := filepath.Join(tmp, "etc")
	if err := copyTree(filepath.Join(repo, "etc", "picockpit-client"), cfgDir); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hostRoot, hostNote := "/", "this Raspberry Pi"
	if !isPi() {
		hostRoot = filepath.Join(tmp, "host")
		host, err := newFakeHost(filepath.Join(repo, "modules", "pistats", "testdata", "fixtures", "pi4", "root"), hostRoot)
		if err != nil {
			return fmt.Errorf("fake host: %w", err)
		}
		hostNote = "a fake Pi 4 whose counters move (disk: the temp dir's filesystem)"
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					_ = host.tick(now)
				}
			}
		}()
	}
	device := "demo-pi"
	if err := patchConfig(filepath.Join(cfgDir, "picockpit-client.config.json"), brokerURL, hostRoot, device); err != nil {
		return err
	}
	if err := writeDemoModule(cfgDir); err != nil {
		return err
	}

	agentLog, err := os.Create(filepath.Join(tmp, "agent.log"))
	if err != nil {
		return err
	}
	agent := background(exec.Command(bin, "run", "--config-dir", cfgDir, "--state-dir", filepath.Join(tmp, "state")))
	if os.Geteuid() != 0 {
		// The demo tree is ours, not root's: the documented StrictModes escape.
		agent.Args = append(agent.Args, "--trust-own-files")
	}
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		return err
	}
	defer stop(agent)
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()

	root := contract.Root{Prefix: "picockpit", Device: device}
	v := newView(root)
	rawOut := make(chan string, 256)
	client, err := watch(ctx, port, root, func(topic string, payload []byte) {
		v.Update(topic, payload)
		if raw {
			select {
			case rawOut <- fmt.Sprintf("%s %s", topic, oneLine(string(payload), 300)):
			default:
			}
		}
	})
	if err != nil {
		return err
	}
	defer client.Disconnect(&paho.Disconnect{ReasonCode: 0})

	r := root.Base()
	banner := fmt.Sprintf(`picockpit-client demo: broker %s (throwaway), host %s
config %s, agent log %s
Try, in another terminal:
  mosquitto_pub -p %d -V mqttv5 -t %s/gpio/17/set -m on       # relay on; a jumper wires it to input 27
  mosquitto_pub -p %d -V mqttv5 -t %s/gpio/18/set -m '{"pwm":{"frequency":100,"duty":0.25}}'
  mosquitto_rr  -p %d -V mqttv5 -t %s/picontrol/run/demo/hello -e %s/reply/me -m '{"name":"Ada"}' -W 5
  mosquitto_sub -p %d -V mqttv5 -v -t '%s/#'                # the raw topic tree (or: make demo DEMO_FLAGS=-raw)
  kill -HUP %d                                                       # reload the modules without reconnecting
`, brokerURL, hostNote, cfgDir, agentLog.Name(), port, r, port, r, port, r, r, port, r, agent.Process.Pid)

	kb := (*keyboard)(nil)
	if !raw {
		kb = openKeyboard()
	}
	defer kb.Restore()
	var keys <-chan byte
	quitHint := "Ctrl-C stops the demo"
	if kb != nil {
		keys = kb.keys
		quitHint = "keys: space toggles the relay (pin 17), q or Ctrl-C stops the demo"
	}
	draw := func() {
		if raw {
			return
		}
		if kb != nil {
			fmt.Print("\x1b[H\x1b[2J")
		}
		var b strings.Builder
		v.Render(&b, banner+quitHint+"\n")
		// The terminal is in raw mode: lines need a carriage return.
		fmt.Print(strings.ReplaceAll(b.String(), "\n", "\r\n"))
	}
	if raw {
		fmt.Print(banner + quitHint + "\nLive topic tree:\n")
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	redraw := time.NewTicker(time.Second)
	defer redraw.Stop()
	relay := 0
	for quit := false; !quit; {
		select {
		case <-sig:
			quit = true
		case k, ok := <-keys:
			switch {
			case !ok || k == 'q' || k == 3:
				quit = true
			case k == ' ':
				relay ^= 1
				_, _ = client.Publish(ctx, &paho.Publish{Topic: root.Topic(contract.TopicGPIOSet("17")), QoS: 1, Payload: []byte(fmt.Sprint(relay))})
			}
		case line := <-rawOut:
			fmt.Println(line)
		case <-v.Changed():
			if kb == nil && !raw {
				continue // not a terminal: draw once a second, not per message
			}
			draw()
		case <-redraw.C:
			draw()
		case err := <-exited:
			kb.Restore()
			log, _ := os.ReadFile(agentLog.Name())
			return fmt.Errorf("agent exited: %v\n%s", err, log)
		}
	}
	// A clean stop: the agent publishes offline itself, and the view shows it.
	_ = agent.Process.Signal(syscall.SIGTERM)
	deadline := time.After(10 * time.Second)
	for v.Status() != "offline" {
		select {
		case <-v.Changed():
		case line := <-rawOut:
			fmt.Println(line)
		case <-deadline:
			kb.Restore()
			return errors.New("the agent did not publish offline within 10 s")
		}
	}
	for len(rawOut) > 0 {
		fmt.Println(<-rawOut)
	}
	draw()
	kb.Restore()
	fmt.Println("\nstopped: the agent published offline; broker and temp files removed")
	return nil
}

// background makes c its own process group, so a Ctrl-C typed at the
// terminal reaches only the demo, which stops its children in order.
func background(c *exec.Cmd) *exec.Cmd {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return c
}

// watch subscribes to the device's tree and hands every message to f.
func watch(ctx context.Context, port int, root contract.Root, f func(topic string, payload []byte)) (*paho.Client, error) {
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			f(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}}})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "picockpit-demo-view", CleanStart: true, KeepAlive: 30}); err != nil {
		return nil, fmt.Errorf("demo view: connect: %w", err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: root.Base() + "/#", QoS: 1}}}); err != nil {
		return nil, fmt.Errorf("demo view: subscribe: %w", err)
	}
	return c, nil
}

func findMosquitto() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mosquitto not found: apt-get install mosquitto mosquitto-clients (make demo does this)")
}

func isPi() bool {
	b, err := os.ReadFile("/sys/firmware/devicetree/base/model")
	return err == nil && strings.Contains(string(b), "Raspberry Pi")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(port int) error {
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("mosquitto did not listen on %d", port)
}

func stop(c *exec.Cmd) {
	if c.Process == nil || c.ProcessState != nil {
		return
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _, _ = c.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = c.Process.Kill()
	}
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
}

// patchConfig points the shipped config at the demo broker, host root and
// fake GPIO pins.
func patchConfig(path, brokerURL, hostRoot, device string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	set := func(section, key string, v any) {
		m, _ := cfg[section].(map[string]any)
		if m == nil {
			m = map[string]any{}
			cfg[section] = m
		}
		m[key] = v
	}
	set("broker", "url", []string{brokerURL})
	set("host", "root", hostRoot)
	set("device", "id", device)
	cfg["gpio"] = map[string]any{
		"backend":      "fake",
		"fake_jumpers": []any{map[string]any{"from": 17, "to": 27}},
		"pins": []any{
			map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0, "failsafe": map[string]any{"value": 0, "after": "10s"}},
			map[string]any{"bcm": 27, "name": "button", "mode": "input", "debounce": "20ms"},
			map[string]any{"bcm": 18, "name": "led", "mode": "pwm", "pwm": map[string]any{"frequency": 100, "duty": 0}},
		},
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

func writeDemoModule(cfgDir string) error {
	dir := filepath.Join(cfgDir, "apps", "com.picockpit", "picontrol", "modules")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	user := "nobody"
	if os.Geteuid() != 0 {
		// Without root there is no privilege drop: run as ourselves.
		user = os.Getenv("USER")
	}
	mod := map[string]any{
		"id": "demo", "name": "Demo", "description": "Harmless commands for the demo",
		"commands": []any{
			map[string]any{"id": "hello", "name": "Say hello", "argv": []string{"/bin/echo", "hello", "{name}"}, "user": user,
				"parameters": []any{map[string]any{"name": "name", "type": "string", "pattern": "^[A-Za-z ]{1,32}$", "default": "world"}}},
			map[string]any{"id": "uptime", "name": "Uptime", "argv": []string{"/usr/bin/uptime"}, "user": user},
		},
	}
	b, err := json.MarshalIndent(mod, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "demo.json"), b, 0o644)
}
