package runas_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/picockpit/picockpit-client/agent/runas"
	"github.com/picockpit/picockpit-client/agent/runas/runastest"
)

// The daemon pins its main goroutine to the main thread; so does this test
// binary, so that command goroutines never land on the main thread.
func init() { runtime.LockOSThread() }

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs commands as other users: needs root (CI runs tests as root)")
	}
}

func lookup(t testing.TB, name string) runas.Identity {
	t.Helper()
	id, err := runas.LookupUser(name)
	if err != nil {
		t.Fatalf("LookupUser(%q): %v", name, err)
	}
	return id
}

// status parses a /proc/.../status file into key -> value.
func status(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func readStatus(t testing.TB, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return status(string(b))
}

func fields(s string) []string { return strings.Fields(s) }

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// checkAllThreadsRoot fails unless every thread of this process runs with
// uid and gid 0 and has not had no_new_privs set.
func checkAllThreadsRoot(t testing.TB) {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("list threads: %v (%d found)", err, len(tasks))
	}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended meanwhile
		}
		st := status(string(b))
		if got := fields(st["Uid"]); !slices.Equal(got, repeat("0", 4)) {
			t.Errorf("%s: Uid %v, want 0 x4", p, got)
		}
		if got := fields(st["Gid"]); !slices.Equal(got, repeat("0", 4)) {
			t.Errorf("%s: Gid %v, want 0 x4", p, got)
		}
	}
}

func waitThreadGone(t testing.TB, tid int) {
	t.Helper()
	p := fmt.Sprintf("/proc/self/task/%d", tid)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d that started the command still exists", tid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunAsNobody(t *testing.T) {
	requireRoot(t)
	id := lookup(t, "nobody")
	var tid atomic.Int64
	res, err := runas.Run(context.Background(), runas.Spec{
		Path:              "/bin/cat",
		Args:              []string{"cat", "/proc/self/status"},
		User:              id,
		NoNewPrivs:        true,
		LimitCapabilities: true,
		OnStart:           func(s runas.Started) { tid.Store(int64(s.TID)) },
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d, stderr %q", res.ExitCode, res.Stderr)
	}
	st := status(string(res.Stdout))
	uid, gid := strconv.Itoa(int(id.UID)), strconv.Itoa(int(id.GID))
	if uid != "65534" || gid != "65534" {
		t.Fatalf("nobody is %s:%s here, want 65534:65534", uid, gid)
	}
	if diff := cmp.Diff(repeat(uid, 4), fields(st["Uid"])); diff != "" {
		t.Errorf("Uid (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(repeat(gid, 4), fields(st["Gid"])); diff != "" {
		t.Errorf("Gid (-want +got):\n%s", diff)
	}
	var want []string
	for _, g := range id.Groups {
		want = append(want, strconv.Itoa(int(g)))
	}
	got := fields(st["Groups"])
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Groups (-want +got):\n%s", diff)
	}
	for k, want := range map[string]string{
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapAmb": "0000000000000000",
		"CapBnd": "0000000000000000", "NoNewPrivs": "1",
	} {
		if st[k] != want {
			t.Errorf("%s = %q, want %q", k, st[k], want)
		}
	}

	if tid.Load() == 0 || int(tid.Load()) == os.Getpid() {
		t.Fatalf("OnStart reported thread %d", tid.Load())
	}
	waitThreadGone(t, int(tid.Load()))
	checkAllThreadsRoot(t)
	leader := readStatus(t, "/proc/self/status")
	if got := fields(leader["Uid"]); !slices.Equal(got, repeat("0", 4)) {
		t.Errorf("process Uid %v after the run", got)
	}
	if leader["NoNewPrivs"] != "0" {
		t.Errorf("main thread NoNewPrivs = %q, want 0", leader["NoNewPrivs"])
	}
}

// TestLeaderStaysRoot runs 1000 commands as nobody, 50 at a time, in a fresh
// copy of the test binary (the child half of this test), then checks there
// that the process leader and every thread are still root.
func TestLeaderStaysRoot(t *testing.T) {
	requireRoot(t)
	if os.Getenv("RUNAS_TEST_CHILD") == "leader" {
		leaderChild(t)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestLeaderStaysRoot$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "RUNAS_TEST_CHILD=leader")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("leader child: ok")) {
		t.Fatalf("child test binary: %v\n%s", err, out)
	}
}

func leaderChild(t *testing.T) {
	id := lookup(t, "nobody")
	const runs, parallel = 300, 50
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var failed atomic.Int64
	tids := make([]int, runs)
	for i := range runs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := runas.Run(context.Background(), runas.Spec{
				Path: "/bin/true", Args: []string{"true"}, User: id,
				NoNewPrivs: true, LimitCapabilities: true,
			})
			if err != nil || res.ExitCode != 0 {
				failed.Add(1)
				t.Errorf("run %d: exit %d, %v", i, res.ExitCode, err)
			}
			tids[i] = res.TID
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d runs failed", failed.Load(), runs)
	}
	pid := os.Getpid()
	for _, p := range []string{"/proc/self/status", fmt.Sprintf("/proc/self/task/%d/status", pid)} {
		st := readStatus(t, p)
		if got := fields(st["Uid"]); !slices.Equal(got, repeat("0", 4)) {
			t.Errorf("%s: Uid %v, want 0 x4", p, got)
		}
		if got := fields(st["Gid"]); !slices.Equal(got, repeat("0", 4)) {
			t.Errorf("%s: Gid %v, want 0 x4", p, got)
		}
		if st["NoNewPrivs"] != "0" {
			t.Errorf("%s: NoNewPrivs %q, want 0", p, st["NoNewPrivs"])
		}
	}
	for _, tid := range tids {
		if tid == pid {
			t.Errorf("a command was started from the main thread")
		}
		waitThreadGone(t, tid)
	}
	checkAllThreadsRoot(t)
	// No surviving thread inherited the narrowed state of a command thread
	// (the runtime creates threads from a clean template thread).
	bnd := readStatus(t, "/proc/self/status")["CapBnd"]
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if st := status(string(b)); st["NoNewPrivs"] != "0" || st["CapBnd"] != bnd {
			t.Errorf("%s: NoNewPrivs %s CapBnd %s, want 0 and %s", p, st["NoNewPrivs"], st["CapBnd"], bnd)
		}
	}
	t.Logf("%d threads checked", len(tasks))
	if !t.Failed() {
		t.Log("leader child: ok")
	}
}

func waitGroupGone(t testing.TB, pgid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := runastest.GroupMembers(pgid)
		if len(m) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has live members %v", pgid, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runGroupScript runs a shell script that starts background children, and
// records how many live members its process group had once it was ready.
func runGroupScript(t *testing.T, ctx context.Context, script string, s runas.Spec, onReady func()) (runas.Result, int) {
	t.Helper()
	var pid atomic.Int64
	var members atomic.Int64
	s.Path, s.Args = "/bin/sh", []string{"sh", "-c", script}
	s.OnStart = func(st runas.Started) { pid.Store(int64(st.PID)) }
	s.OnOutput = func(stream string, chunk []byte) {
		if bytes.Contains(chunk, []byte("ready")) {
			members.Store(int64(len(runastest.GroupMembers(int(pid.Load())))))
			if onReady != nil {
				onReady()
			}
		}
	}
	res, err := runas.Run(ctx, s)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res, int(members.Load())
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	requireRoot(t)
	res, members := runGroupScript(t, context.Background(), "sleep 100 & echo ready; sleep 100",
		runas.Spec{User: lookup(t, "nobody"), NoNewPrivs: true, Timeout: time.Second, KillGrace: 2 * time.Second}, nil)
	if members < 2 {
		t.Fatalf("process group had %d live members when ready, want the shell and its background sleep", members)
	}
	if res.Reason != runas.ReasonTimeout {
		t.Errorf("Reason = %q, want %q", res.Reason, runas.ReasonTimeout)
	}
	if res.Signal != "SIGTERM" || res.ExitCode != 128+int(unix.SIGTERM) {
		t.Errorf("Signal %q exit %d, want SIGTERM and %d", res.Signal, res.ExitCode, 128+int(unix.SIGTERM))
	}
	waitGroupGone(t, res.PID)
}

func TestCancelKillsProcessGroup(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := runas.Spec{User: lookup(t, "nobody"), NoNewPrivs: true, KillGrace: 2 * time.Second}
	res, members := runGroupScript(t, ctx, "sleep 100 & echo ready; sleep 100", s, cancel)
	if members < 2 {
		t.Fatalf("process group had %d live members when ready", members)
	}
	if res.Reason != runas.ReasonCanceled {
		t.Errorf("Reason = %q, want %q", res.Reason, runas.ReasonCanceled)
	}
	waitGroupGone(t, res.PID)
}

func TestKillAfterGrace(t *testing.T) {
	requireRoot(t)
	// SIGTERM is ignored by the shell and, inherited, by sleep: only SIGKILL ends it.
	res, members := runGroupScript(t, context.Background(), "trap '' TERM; sleep 100 & echo ready; sleep 100",
		runas.Spec{User: lookup(t, "nobody"), Timeout: time.Second, KillGrace: 300 * time.Millisecond}, nil)
	if members < 2 {
		t.Fatalf("process group had %d live members when ready", members)
	}
	if res.Signal != "SIGKILL" || res.Reason != runas.ReasonTimeout {
		t.Errorf("Signal %q Reason %q, want SIGKILL after timeout", res.Signal, res.Reason)
	}
	waitGroupGone(t, res.PID)
}

func TestLeftoversKilledAfterExit(t *testing.T) {
	requireRoot(t)
	// The script waits for a go-ahead file so the group can be counted first.
	dir, err := os.MkdirTemp("", "runas-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	goAhead := filepath.Join(dir, "go")
	script := "sleep 100 & echo ready; while [ ! -e " + goAhead + " ]; do sleep 0.05; done"
	res, members := runGroupScript(t, context.Background(), script,
		runas.Spec{User: lookup(t, "nobody"), KillGrace: 2 * time.Second},
		func() { _ = os.WriteFile(goAhead, nil, 0o644) })
	if members < 2 {
		t.Fatalf("process group had %d live members when ready", members)
	}
	if res.ExitCode != 0 || res.Reason != "" {
		t.Errorf("exit %d reason %q, want 0 and none", res.ExitCode, res.Reason)
	}
	waitGroupGone(t, res.PID)
}

func TestOutputStreamedAndCapped(t *testing.T) {
	requireRoot(t)
	var mu sync.Mutex
	streamed := map[string]int{}
	res, err := runas.Run(context.Background(), runas.Spec{
		Path: "/bin/sh", Args: []string{"sh", "-c", "head -c 100000 /dev/zero; echo oops >&2; exit 3"},
		User: lookup(t, "nobody"), NoNewPrivs: true, OutputLimit: 1024,
		OnOutput: func(stream string, chunk []byte) {
			mu.Lock()
			streamed[stream] += len(chunk)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 {
		t.Errorf("exit code %d, want 3", res.ExitCode)
	}
	if len(res.Stdout) != 1024 || !res.StdoutTruncated {
		t.Errorf("stdout kept %d truncated %v, want 1024 true", len(res.Stdout), res.StdoutTruncated)
	}
	if string(res.Stderr) != "oops\n" || res.StderrTruncated {
		t.Errorf("stderr %q truncated %v", res.Stderr, res.StderrTruncated)
	}
	if diff := cmp.Diff(map[string]int{runas.Stdout: 100000, runas.Stderr: 5}, streamed); diff != "" {
		t.Errorf("streamed bytes (-want +got):\n%s", diff)
	}
}

func TestEnvironmentAndWorkdir(t *testing.T) {
	requireRoot(t)
	t.Setenv("PICOCKPIT_SECRET", "must-not-leak")
	id := lookup(t, "nobody")
	res, err := runas.Run(context.Background(), runas.Spec{
		Path: "/usr/bin/env", Args: []string{"env"}, User: id, NoNewPrivs: true,
		Env: []string{"FOO=bar", "LANG=de_DE.UTF-8"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	slices.Sort(got)
	want := []string{"FOO=bar", "HOME=" + id.Home, "LANG=de_DE.UTF-8", "LOGNAME=nobody", "PATH=" + runas.DefaultPath, "USER=nobody"}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("environment (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		dir, want string
	}{{"", "/"}, {"/tmp", "/tmp"}} {
		res, err := runas.Run(context.Background(), runas.Spec{Path: "/bin/pwd", Args: []string{"pwd"}, User: id, Dir: tc.dir})
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(res.Stdout)) != tc.want {
			t.Errorf("Dir %q: pwd = %q, want %q (home %q)", tc.dir, res.Stdout, tc.want, id.Home)
		}
	}
}

func TestRootCapabilities(t *testing.T) {
	requireRoot(t)
	root := lookup(t, "root")
	parent := readStatus(t, "/proc/self/status")["CapBnd"]
	for _, tc := range []struct {
		name  string
		limit bool
		keep  []runas.Capability
		want  string
	}{
		{"unlimited", false, nil, parent},
		{"none", true, nil, "0000000000000000"},
		{"net_bind_service", true, []runas.Capability{10}, fmt.Sprintf("%016x", 1<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := runas.Run(context.Background(), runas.Spec{
				Path: "/bin/cat", Args: []string{"cat", "/proc/self/status"}, User: root,
				NoNewPrivs: true, LimitCapabilities: tc.limit, Capabilities: tc.keep,
			})
			if err != nil {
				t.Fatal(err)
			}
			st := status(string(res.Stdout))
			if st["CapBnd"] != tc.want {
				t.Errorf("CapBnd %s, want %s", st["CapBnd"], tc.want)
			}
			if tc.limit && st["CapEff"] != tc.want {
				t.Errorf("CapEff %s, want %s", st["CapEff"], tc.want)
			}
		})
	}
	if got := readStatus(t, "/proc/self/status")["CapBnd"]; got != parent {
		t.Errorf("daemon CapBnd changed from %s to %s", parent, got)
	}
	checkAllThreadsRoot(t)
}

func TestStartErrors(t *testing.T) {
	requireRoot(t)
	id := lookup(t, "nobody")
	for _, s := range []runas.Spec{
		{Path: "/nonexistent/program", Args: []string{"x"}, User: id},
		{Path: "bin/true", Args: []string{"true"}, User: id},
		{Path: "/bin/true", User: id},
		{Path: "/bin/true", Args: []string{"true"}, User: id, Dir: "/nonexistent"},
		{Path: "/bin/true", Args: []string{"true"}},
	} {
		if _, err := runas.Run(context.Background(), s); !errors.Is(err, runas.ErrStart) {
			t.Errorf("Run(%q in %q) = %v, want ErrStart", s.Path, s.Dir, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var started bool
	_, err := runas.Run(ctx, runas.Spec{Path: "/bin/true", Args: []string{"true"}, User: id, OnStart: func(runas.Started) { started = true }})
	if !errors.Is(err, runas.ErrStart) || started {
		t.Errorf("Run with a cancelled context = %v, started %v; want ErrStart and nothing started", err, started)
	}
}

func TestParseCapability(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want runas.Capability
		ok   bool
	}{
		{"CAP_CHOWN", 0, true}, {"net_admin", 12, true}, {"Cap_Sys_Boot", 22, true},
		{"CAP_CHECKPOINT_RESTORE", 40, true}, {"CAP_NOPE", 0, false}, {"", 0, false},
	} {
		got, err := runas.ParseCapability(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseCapability(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func BenchmarkRunTrue(b *testing.B) {
	requireRoot(b)
	id := lookup(b, "nobody")
	s := runas.Spec{Path: "/bin/true", Args: []string{"true"}, User: id, NoNewPrivs: true, LimitCapabilities: true}
	for b.Loop() {
		if _, err := runas.Run(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
}
