// Command picockpit-demo (`make demo`) shows picockpit-client end to end on
// any Linux machine: it starts a throwaway Mosquitto on a free loopback port,
// runs the agent from the repo's etc/ defaults with a temp state dir, fake
// GPIO and (where there is no Pi) a Raspberry Pi 4 fixture tree as host
// root, and prints the live topic tree with mosquitto_sub until Ctrl-C; then
// it stops everything and removes its temp files.
package main

import (
	"encoding/json"
	"errors"
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
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
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
	broker := exec.Command(mosq, "-c", conf)
	broker.Stdout, broker.Stderr = nil, nil
	if err := broker.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	defer stop(broker)
	if err := waitPort(port); err != nil {
		return err
	}

	// The agent, built from this checkout.
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
	hostRoot := "/"
	if !isPi() {
		hostRoot = filepath.Join(repo, "modules", "pistats", "testdata", "fixtures", "pi4", "root")
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
	agent := exec.Command(bin, "run", "--config-dir", cfgDir, "--state-dir", filepath.Join(tmp, "state"))
	if os.Geteuid() != 0 {
		// The demo tree is ours, not root's: the documented StrictModes escape.
		agent.Args = append(agent.Args, "--trust-own-files")
	}
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		return err
	}
	defer stop(agent)

	root := "picockpit/" + device
	fmt.Printf(`
picockpit-client demo
  broker      %s (throwaway Mosquitto, stopped on Ctrl-C)
  config dir  %s (copy of etc/picockpit-client + a demo module)
  host root   %s
  agent log   %s
Try, in another terminal:
  mosquitto_pub -p %d -V mqttv5 -t %s/gpio/17/set -m on
  mosquitto_pub -p %d -V mqttv5 -t %s/gpio/18/set -m '{"pwm":{"frequency":100,"duty":0.25}}'
  mosquitto_rr  -p %d -V mqttv5 -t %s/picontrol/run/demo/hello -e %s/reply/me -m '{"name":"Ada"}' -W 5
  mosquitto_pub -p %d -V mqttv5 -t %s/stats/refresh -n
  kill -HUP %d   # reload the modules without reconnecting
Live topic tree (Ctrl-C to stop):

`, brokerURL, cfgDir, hostRoot, agentLog.Name(), port, root, port, root, port, root, root, port, root, agent.Process.Pid)

	sub := exec.Command("mosquitto_sub", "-p", fmt.Sprint(port), "-V", "mqttv5", "-v", "-t", "picockpit/#")
	sub.Stdout, sub.Stderr = os.Stdout, os.Stderr
	if err := sub.Start(); err != nil {
		return fmt.Errorf("mosquitto_sub (apt-get install mosquitto-clients): %w", err)
	}
	defer stop(sub)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	select {
	case <-sig:
		fmt.Println("\nstopping: the agent publishes offline, then the broker goes")
		_ = agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		time.Sleep(300 * time.Millisecond) // let mosquitto_sub print offline
	case err := <-exited:
		log, _ := os.ReadFile(agentLog.Name())
		return fmt.Errorf("agent exited: %v\n%s", err, log)
	}
	return nil
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
		"backend": "fake",
		"pins": []any{
			map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0, "failsafe": map[string]any{"value": 0, "after": "10s"}},
			map[string]any{"bcm": 27, "name": "button", "mode": "input", "pull": "up", "debounce": "20ms"},
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
