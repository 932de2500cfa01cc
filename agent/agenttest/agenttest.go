// Package agenttest runs a whole picockpit-client agent for tests against a
// real broker (see package brokertest): in-process with Start, or as the
// real binary in a child process with StartProcess (for signals and the
// Will). Each gets its own temp config dir and state dir.
package agenttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// Options describe the agent to run.
type Options struct {
	// BrokerURL is broker.url (one or several, comma separated).
	BrokerURL string
	// Config is merged into the main config (module sections too), e.g.
	// {"broker": {"ca_file": ...}, "stats": {"interval": "1s"}}.
	Config map[string]any
	// Files are extra files relative to the config dir, e.g.
	// "apps/com.picockpit/picontrol/modules/test.json".
	Files map[string]string
	// Kinds are the module kinds of the in-process agent.
	Kinds []modules.Kind
	// DeviceID defaults to a unique id per agent.
	DeviceID string
	// Prefix defaults to "picockpit".
	Prefix string
	// NoWait skips waiting for the first "online" in Start.
	NoWait bool
	// Env is extra environment for StartProcess ("K=V").
	Env []string
	// ReadyTimeout is agent.Options.ReadyTimeout of the in-process agent.
	ReadyTimeout time.Duration
	// EventWindow is agent.Options.EventWindow of the in-process agent.
	EventWindow time.Duration
}

var seq atomic.Int64

// WriteConfig writes the config dir for o and returns it with the root.
func WriteConfig(t testing.TB, o *Options) (dir string, root contract.Root) {
	t.Helper()
	if o.DeviceID == "" {
		o.DeviceID = fmt.Sprintf("t%d-%d", os.Getpid(), seq.Add(1))
	}
	if o.Prefix == "" {
		o.Prefix = "picockpit"
	}
	dir = t.TempDir()
	if os.Geteuid() != 0 {
		if err := agent.TrustOwnFiles(); err != nil { // the test tree is ours, not root's
			t.Fatal(err)
		}
	}
	cfg := map[string]any{
		"broker": map[string]any{"url": strings.Split(o.BrokerURL, ","), "reconnect_max": "2s"},
		"device": map[string]any{"id": o.DeviceID},
		"topics": map[string]any{"prefix": o.Prefix},
		"log":    map[string]any{"level": "debug"},
	}
	merge(cfg, o.Config)
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, agent.ConfigFileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for rel, content := range o.Files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, contract.Root{Prefix: o.Prefix, Device: o.DeviceID}
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				merge(dv, sv)
				continue
			}
		}
		dst[k] = v
	}
}

// Agent is an in-process agent.
type Agent struct {
	Root      contract.Root
	ConfigDir string
	StateDir  string
	Logs      *Buffer
	A         *agent.Agent

	t      testing.TB
	cancel context.CancelFunc
	done   chan error
	reload chan struct{}
	once   sync.Once
}

// Start runs an agent in this process and waits until it published online
// (unless o.NoWait). It stops at the end of the test.
func Start(t testing.TB, o Options) *Agent {
	t.Helper()
	dir, root := WriteConfig(t, &o)
	logs := &Buffer{}
	a := &Agent{Root: root, ConfigDir: dir, StateDir: t.TempDir(), Logs: logs, t: t, done: make(chan error, 1), reload: make(chan struct{}, 1)}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ag, res, err := agent.New(agent.Options{ConfigDir: dir, StateDir: a.StateDir, Version: "test", Kinds: o.Kinds, Log: log, Reload: a.reload,
		ReadyTimeout: o.ReadyTimeout, EventWindow: o.EventWindow})
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	a.A = ag
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { a.done <- ag.Run(ctx, res.Modules, res.Problems) }()
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	if !o.NoWait {
		select {
		case <-ag.Session().Online():
		case <-time.After(15 * time.Second):
			t.Fatalf("agent not online after 15s; log:\n%s", logs.String())
		}
	}
	return a
}

// Reload asks the agent to reload, as SIGHUP does.
func (a *Agent) Reload() { a.reload <- struct{}{} }

// Stop stops the agent (idempotent) and returns Run's error.
func (a *Agent) Stop() error {
	var err error
	a.once.Do(func() {
		a.cancel()
		select {
		case err = <-a.done:
		case <-time.After(20 * time.Second):
			err = fmt.Errorf("agent did not stop within 20s")
		}
	})
	return err
}

// Topic returns the full topic of a relative one.
func (a *Agent) Topic(rel string) string { return a.Root.Topic(rel) }

// Buffer is a goroutine-safe log buffer.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Count counts lines containing s.
func (b *Buffer) Count(s string) int {
	n := 0
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// execEnv tells a test binary started by StartProcess to be the agent (see
// Main).
const execEnv = "PICOCKPIT_AGENTTEST_EXEC"

var (
	mainRan   bool // Main runs the tests
	selfExec  bool // the test binary is the agent
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// Main is TestMain for a package that calls Binary or StartProcess:
//
//	func TestMain(m *testing.M) { agenttest.Main(m, nil) }
//
// It runs the tests, removes the binary Binary built and exits. The main
// package's own tests pass its main function as run: the test binary is then
// the agent itself (StartProcess re-executes it and Main calls run with the
// arguments), so nothing is built.
func Main(m *testing.M, run func(args []string) int) {
	if run != nil && os.Getenv(execEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	mainRan, selfExec = true, run != nil
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Command returns an exec.Cmd that runs the agent binary (Binary) with args,
// with the environment that makes a self-exec'd test binary be the agent
// rather than run its tests again.
func Command(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	return cmd
}

// Binary returns the agent binary for StartProcess: the test binary itself
// under Main with a run function, else cmd/picockpit-client built once per
// test process (with -race when the tests run with it) into a temp dir that
// Main removes.
func Binary(t testing.TB) string {
	t.Helper()
	if !mainRan {
		t.Fatal("agenttest.Binary: the package needs func TestMain(m *testing.M) { agenttest.Main(m, nil) } so the built binary is removed")
	}
	if selfExec {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		return exe
	}
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		repo := filepath.Join(filepath.Dir(file), "..", "..")
		buildDir, buildErr = os.MkdirTemp("", "picockpit-bin-")
		if buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "picockpit-client")
		// The same build flags as this test binary (race detector, cgo
		// default), so go build links the packages go test just compiled
		// instead of compiling everything again.
		args := []string{"build", "-o", buildPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/picockpit-client")...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Process is the agent binary running as a child process.
type Process struct {
	Root      contract.Root
	ConfigDir string
	StateDir  string
	Cmd       *exec.Cmd
	Logs      *Buffer
	Started   time.Time
	done      chan struct{}
}

// StartProcess runs `picockpit-client run` with o's config in a child
// process. It is killed at the end of the test if still running.
func StartProcess(t testing.TB, o Options) *Process {
	t.Helper()
	bin := Binary(t)
	dir, root := WriteConfig(t, &o)
	p := &Process{Root: root, ConfigDir: dir, StateDir: t.TempDir(), Logs: &Buffer{}, done: make(chan struct{})}
	p.Cmd = exec.Command(bin, "run", "--config-dir", dir, "--state-dir", p.StateDir)
	if os.Geteuid() != 0 {
		p.Cmd.Args = append(p.Cmd.Args, "--trust-own-files") // the test tree is ours, not root's
	}
	p.Cmd.Env = append(os.Environ(), o.Env...)
	if selfExec {
		p.Cmd.Env = append(p.Cmd.Env, execEnv+"=1")
	}
	p.Cmd.Stdout = p.Logs
	p.Cmd.Stderr = p.Logs
	p.Started = time.Now()
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("agent process log:\n%s", p.Logs.String())
		}
	})
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit and reports whether it did.
func (p *Process) Wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// ExitCode is the exit code after Wait (-1 if killed by a signal).
func (p *Process) ExitCode() int { return p.Cmd.ProcessState.ExitCode() }
