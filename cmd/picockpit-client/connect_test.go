package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/brokertest"
)

// fakeSystemctl records systemctl calls for the test.
func fakeSystemctl(t *testing.T) *[]string {
	t.Helper()
	var calls []string
	old := systemctl
	systemctl = func(args ...string) error { calls = append(calls, strings.Join(args, " ")); return nil }
	t.Cleanup(func() { systemctl = old })
	return &calls
}

func withStdin(t *testing.T, s string) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(s)
	t.Cleanup(func() { stdin = old })
}

// TestConnectDisconnectCommands: connect with --password-stdin saves the
// login and restarts the service; a wrong password changes nothing and
// restarts nothing; disconnect stops the service and clears the device.
func TestConnectDisconnectCommands(t *testing.T) {
	// systemd-creds (if installed) must not touch this machine's host key.
	t.Setenv("SYSTEMD_CREDENTIAL_SECRET", filepath.Join(t.TempDir(), "host.secret"))
	b := brokertest.Mosquitto(t, brokertest.Options{Users: map[string]string{"pi1": "pw1"}})
	const old = `{"device":{"id":"pi1"}}`
	dir := writeTree(t, map[string]string{"picockpit-client.config.json": old})
	state := t.TempDir()
	base := []string{"--config-dir", dir, "--state-dir", state, "--timeout", "15s"}

	calls := fakeSystemctl(t)
	withStdin(t, "wrong\n")
	var out, errb bytes.Buffer
	code := realMain(append([]string{"connect", "--broker", b.URL, "--username", "pi1", "--password-stdin"}, base...), &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "bad credentials") || !strings.Contains(errb.String(), "nothing was changed") {
		t.Errorf("wrong password: exit %d\n%s", code, errb.String())
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "picockpit-client.config.json")); string(got) != old || len(*calls) != 0 {
		t.Errorf("config %s, systemctl %v", got, *calls)
	}

	withStdin(t, "pw1\n")
	out.Reset()
	errb.Reset()
	code = realMain(append([]string{"connect", "--broker", b.URL, "--username", "pi1", "--password-stdin"}, base...), &out, &errb)
	if code != 0 {
		t.Fatalf("connect: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"ok: connected to " + b.URL, "password stored", "saved ", "restarted picockpit-client.service"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	if want := []string{"enable picockpit-client.service", "restart picockpit-client.service"}; fmt.Sprint(*calls) != fmt.Sprint(want) {
		t.Errorf("systemctl calls %v, want %v", *calls, want)
	}
	cfg, err := agent.LoadConfig(dir, nil, nil, nil)
	if err != nil || cfg.Broker.Username != "pi1" || cfg.Broker.URL[0] != b.URL {
		t.Errorf("saved config: %v %+v", err, cfg.Broker)
	}

	*calls = nil
	out.Reset()
	errb.Reset()
	if code := realMain(append([]string{"disconnect"}, base...), &out, &errb); code != 0 {
		t.Fatalf("disconnect: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if fmt.Sprint(*calls) != "[disable --now picockpit-client.service]" {
		t.Errorf("systemctl calls %v", *calls)
	}
	if cfg, _ := agent.LoadConfig(dir, nil, nil, nil); cfg.Broker.Username != "" || cfg.Broker.PasswordFile != "" {
		t.Errorf("login kept after disconnect: %+v", cfg.Broker)
	}
}

// TestStatusCommand: status reads the daemon's status file; --json too.
func TestStatusCommand(t *testing.T) {
	state := t.TempDir()
	now := time.Now().UTC().Add(-time.Minute)
	st := agent.Status{PID: os.Getpid(), Version: "v9", Device: "pi1", StartedAt: now, State: "connected", Connected: true,
		BrokerURL: "mqtts://b2:8883", Since: now, LastError: "connection refused", LastErrorAt: &now, LastReconnect: &now, Connects: 2}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(state, agent.StatusFileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	oldState := serviceState
	serviceState = func() string { return "active" }
	t.Cleanup(func() { serviceState = oldState })

	var out, errb bytes.Buffer
	if code := realMain([]string{"status", "--state-dir", state}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, w := range []string{"service:        active", "connected to mqtts://b2:8883 since", "last error:     connection refused", "last reconnect:", "version v9"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("status lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	if code := realMain([]string{"status", "--state-dir", state, "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep["broker_url"] != "mqtts://b2:8883" || rep["running"] != true || rep["connected"] != true {
		t.Errorf("json: %v %s", err, out.String())
	}

	// Stopped service: not running, not connected, exit 1.
	serviceState = func() string { return "inactive" }
	out.Reset()
	if code := realMain([]string{"status", "--state-dir", state}, &out, &errb); code != 1 || !strings.Contains(out.String(), "service:        inactive") ||
		!strings.Contains(out.String(), "connection:     none") {
		t.Errorf("inactive: exit %d\n%s", code, out.String())
	}
}

// TestProvisionWithoutDynsec: --provision against a broker without the
// dynamic security plugin says so, changes nothing, and prints the ACL to
// install instead.
func TestProvisionWithoutDynsec(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{Users: map[string]string{"admin": "adminpw"}})
	const old = `{"device":{"id":"pi7"},"topics":{"prefix":"home"}}`
	dir := writeTree(t, map[string]string{"picockpit-client.config.json": old, "admin.pw": "adminpw\n"})
	calls := fakeSystemctl(t)
	var out, errb bytes.Buffer
	code := realMain([]string{"connect", "--config-dir", dir, "--state-dir", t.TempDir(), "--timeout", "2s", "--broker", b.URL,
		"--provision", "--admin-password-file", filepath.Join(dir, "admin.pw")}, &out, &errb)
	if code != 1 || len(*calls) != 0 {
		t.Fatalf("exit %d, systemctl %v\n%s", code, *calls, errb.String())
	}
	for _, w := range []string{"mosquitto_dynamic_security.so", "nothing was changed", "user picockpit-pi7\n", "topic readwrite home/pi7/#\n"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, errb.String())
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "picockpit-client.config.json")); string(got) != old {
		t.Errorf("config changed: %s", got)
	}
}
