package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/modules"
)

// TestStatusFileWritesOnChangesOnly: the status file follows the connection
// state and is rewritten only when something a user would see changes.
func TestStatusFileWritesOnChangesOnly(t *testing.T) {
	dir := t.TempDir()
	clock := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	f := newStatusFile(dir, Status{PID: 42, Version: "v1", Device: "pi1", StartedAt: clock})
	f.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	steps := []struct {
		ev     ConnEvent
		writes int
		state  string
	}{
		{ConnEvent{Kind: ConnConnecting}, 1, "connecting"},
		{ConnEvent{Kind: ConnFailed, URL: "mqtt://a:1", Err: "connection refused"}, 2, "connecting"},
		{ConnEvent{Kind: ConnFailed, URL: "mqtt://a:1", Err: "connection refused"}, 2, "connecting"}, // a repeat
		{ConnEvent{Kind: ConnFailed, URL: "mqtt://a:1", Err: "timed out"}, 3, "connecting"},
		{ConnEvent{Kind: ConnUp, URL: "mqtt://b:2"}, 4, "connected"},
		{ConnEvent{Kind: ConnDown}, 5, "disconnected"},
		{ConnEvent{Kind: ConnFailed, Err: "timed out"}, 5, "disconnected"}, // same error as before
		{ConnEvent{Kind: ConnUp, URL: "mqtt://b:2"}, 6, "connected"},
	}
	for i, s := range steps {
		if err := f.observe(s.ev); err != nil {
			t.Fatal(err)
		}
		st, err := ReadStatus(dir)
		if err != nil {
			t.Fatal(err)
		}
		if f.writes != s.writes || st.State != s.state {
			t.Fatalf("step %d: %d writes, state %q; want %d, %q", i, f.writes, st.State, s.writes, s.state)
		}
	}
	st, _ := ReadStatus(dir)
	if !st.Connected || st.BrokerURL != "mqtt://b:2" || st.Connects != 2 || st.LastReconnect == nil ||
		st.LastError != "timed out" || st.PID != 42 || !st.Since.Equal(*st.LastReconnect) {
		t.Errorf("status %+v", st)
	}
	if err := f.stopped(); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadStatus(dir); st.State != "stopped" || st.Connected {
		t.Errorf("after stop: %+v", st)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestStatusFileFailover: a running agent whose first broker URL refuses
// records the one it actually uses and the error of the other, and writes
// nothing while it publishes in steady state.
func TestStatusFileFailover(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	dead := fmt.Sprintf("mqtt://127.0.0.1:%d", brokertest.FreePort(t))
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"broker":{"url":[%q,%q]},"device":{"id":"pi1"}}`, dead, b.URL)
	if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	a, res, err := New(Options{ConfigDir: dir, StateDir: state, Version: "v-test", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, res.Modules, res.Problems) }()
	select {
	case <-a.Session().Online():
	case <-time.After(15 * time.Second):
		t.Fatal("not online")
	}
	st, err := ReadStatus(state)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "connected" || st.BrokerURL != b.URL || st.PID != os.Getpid() || st.Version != "v-test" ||
		!strings.Contains(st.LastError, "refused") || st.ClientID != "picockpit-pi1" {
		t.Errorf("status %+v", st)
	}
	a.status.mu.Lock()
	writes := a.status.writes
	a.status.mu.Unlock()
	for i := 0; i < 50; i++ {
		a.Session().PublishRetained(fmt.Sprintf("test/%d", i), []byte("x"), modules.PublishOptions{QoS: 1})
		_ = a.Session().Publish(context.Background(), "test/plain", []byte("y"), modules.PublishOptions{QoS: 1})
	}
	a.status.mu.Lock()
	after := a.status.writes
	a.status.mu.Unlock()
	if after != writes {
		t.Errorf("status file written %d times while publishing", after-writes)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(state, StatusFileName))
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m["state"] != "stopped" {
		t.Errorf("after stop: %v %s", err, raw)
	}
}

// TestCredentialsDirectory: the password systemd provides in
// $CREDENTIALS_DIRECTORY is used when the config names none; the unit's
// empty fallback means no password; a configured password wins.
func TestCredentialsDirectory(t *testing.T) {
	creds := t.TempDir()
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, CredentialName), []byte("s3cret\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(empty, CredentialName), []byte("\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		config  string
		environ []string
		want    string
	}{
		{`{}`, []string{"CREDENTIALS_DIRECTORY=" + creds}, filepath.Join(creds, CredentialName)},
		{`{}`, []string{"CREDENTIALS_DIRECTORY=" + empty}, ""},
		{`{}`, nil, ""},
		{`{"broker":{"password_file":"/etc/own"}}`, []string{"CREDENTIALS_DIRECTORY=" + creds}, "/etc/own"},
		{`{"broker":{"password":"x"}}`, []string{"CREDENTIALS_DIRECTORY=" + creds}, ""},
	}
	for _, c := range cases {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(c.config), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(dir, c.environ, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Broker.PasswordFile != c.want {
			t.Errorf("%s %v: password_file %q, want %q", c.config, c.environ, cfg.Broker.PasswordFile, c.want)
		}
	}
}
