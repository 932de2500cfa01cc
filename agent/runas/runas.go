// Package runas runs one command as a given user, from a root daemon,
// without ever changing the daemon's own credentials. It is the privilege
// drop of picockpit-client and nothing else.
//
// How: every run gets a fresh goroutine that calls runtime.LockOSThread and
// never unlocks, so the Go runtime destroys its OS thread when the goroutine
// returns and no other Go code ever runs on it. On that thread Run narrows
// what a child can inherit (PR_SET_NO_NEW_PRIVS, capability bounding set via
// PR_CAPBSET_DROP; both are per thread), then starts the command with
// exec.Cmd and SysProcAttr.Credential, so the uid, gid and groups change only
// in the child, between fork and exec. The goroutine stays on the thread
// until the child has been waited for, because Pdeathsig follows the thread
// that created the child.
//
// syscall.Setuid, Setgid, Setgroups and friends (and their x/sys/unix
// equivalents) change every thread of the process since Go 1.16: this
// package never calls them, and a test in this package fails when any Go
// file of the repository does.
//
// Programs using this package must pin their main goroutine to the main
// thread (func init() { runtime.LockOSThread() } in package main): a locked
// goroutine that ends on the main thread cannot take the thread with it.
// Run detects that case and moves to another thread before it changes
// anything.
package runas

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults used when a Spec leaves the field zero.
const (
	DefaultKillGrace   = 5 * time.Second
	DefaultOutputLimit = 64 << 10
	DefaultPath        = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	DefaultLang        = "C.UTF-8"
)

// Spec is one command to run. Path and Args are used as they are: no shell,
// no PATH lookup.
type Spec struct {
	// Path is the absolute path of the program.
	Path string
	// Args is the complete argv, Args[0] included.
	Args []string
	// User is who the command runs as.
	User Identity
	// Env is added after the base environment HOME, USER, LOGNAME, PATH and
	// LANG ("KEY=value"; a later key replaces an earlier one, so Env may
	// override PATH or LANG). Nothing of the daemon's environment is passed.
	Env []string
	// Dir is the working directory; empty means the user's home, or "/" when
	// the home directory does not exist.
	Dir string
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS: setuid binaries and file
	// capabilities give the command nothing.
	NoNewPrivs bool
	// LimitCapabilities reduces the capability bounding set to exactly
	// Capabilities; false leaves the bounding set as it is.
	LimitCapabilities bool
	Capabilities      []Capability
	// Timeout kills the command's process group when it passes; zero means no
	// timeout (the context still applies).
	Timeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL to the process group.
	KillGrace time.Duration
	// OutputLimit is how many bytes of each of stdout and stderr Result
	// keeps: zero means DefaultOutputLimit, negative means none. Everything
	// is still streamed to OnOutput.
	OutputLimit int
	// OnOutput, if set, receives each chunk of output as it is read, from
	// one goroutine per stream (so calls for stdout and stderr may overlap).
	// chunk is the callee's to keep.
	OnOutput func(stream string, chunk []byte)
	// OnStart, if set, is called once the command has started, on the locked
	// thread that started it (tests record its thread id).
	OnStart func(Started)
}

// Started describes a command that has just started.
type Started struct {
	PID int // the command's pid, also its process group id
	TID int // the thread that started it (gone once Run has returned and the thread exited)
}

// Stream names passed to Spec.OnOutput.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Why a run ended early.
const (
	ReasonTimeout  = "timeout"
	ReasonCanceled = "canceled"
)

// Result is how a run ended.
type Result struct {
	// ExitCode is the exit status; for a command killed by a signal it is
	// 128 + the signal number, as in a shell.
	ExitCode int
	// Signal names the signal that killed the command ("SIGKILL"), or "".
	Signal string
	// Reason is ReasonTimeout or ReasonCanceled when Run killed the command,
	// else "".
	Reason   string
	Duration time.Duration
	// Stdout and Stderr hold the first OutputLimit bytes of each stream.
	Stdout, Stderr []byte
	// StdoutTruncated and StderrTruncated say whether more was written.
	StdoutTruncated, StderrTruncated bool
	PID, TID                         int
}

// ErrStart wraps every error that happened before the command ran.
var ErrStart = errors.New("command not started")

type outcome struct {
	res        Result
	err        error
	mainThread bool
}

// Run runs the command and waits for it, its output and its process group.
// It returns an error wrapping ErrStart when the command could not be started
// (nothing ran then); a command that ran returns a Result whatever its exit
// status. When ctx is cancelled or the timeout passes, the whole process
// group gets SIGTERM, then SIGKILL after KillGrace. When the command's main
// process exits, whatever is left in its process group is killed. Run is safe
// for concurrent use.
func Run(ctx context.Context, s Spec) (Result, error) {
	if err := s.check(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	// Two attempts: if the first goroutine lands on the main thread it refuses
	// before touching it and stays locked there, so the second cannot.
	for range 2 {
		ch := make(chan outcome, 1)
		go runLocked(ctx, &s, ch)
		o := <-ch
		if !o.mainThread {
			return o.res, o.err
		}
	}
	return Result{}, fmt.Errorf("%w: only the main thread is available; lock the main goroutine to it in package main's init", ErrStart)
}

func (s *Spec) check() error {
	switch {
	case s.Path == "" || s.Path[0] != '/':
		return fmt.Errorf("program path %q is not absolute", s.Path)
	case len(s.Args) == 0:
		return errors.New("empty argv")
	case s.User.Name == "":
		// A zero Identity would mean root: refuse instead of guessing.
		return errors.New("no user: resolve one with LookupUser")
	case s.Dir != "" && s.Dir[0] != '/':
		return fmt.Errorf("working directory %q is not absolute", s.Dir)
	case s.Timeout < 0:
		return fmt.Errorf("negative timeout %v", s.Timeout)
	}
	return nil
}

// runLocked runs on its own goroutine, locked to its OS thread for good.
func runLocked(ctx context.Context, s *Spec, ch chan<- outcome) {
	// Never unlocked: when this goroutine returns, the runtime ends the
	// thread together with the changes made to it below.
	runtime.LockOSThread()
	tid := unix.Gettid()
	if tid == unix.Getpid() {
		// The main thread cannot be destroyed. Nothing has been changed on it;
		// stay locked so the runtime parks it, and let Run try again.
		ch <- outcome{mainThread: true}
		return
	}
	res, err := runOnThread(ctx, s, tid)
	ch <- outcome{res: res, err: err}
}

func runOnThread(ctx context.Context, s *Spec, tid int) (Result, error) {
	if s.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return Result{}, fmt.Errorf("%w: prctl(PR_SET_NO_NEW_PRIVS): %w", ErrStart, err)
		}
	}
	if s.LimitCapabilities {
		if err := dropBounding(s.Capabilities); err != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
		}
	}

	limit := s.OutputLimit
	switch {
	case limit == 0:
		limit = DefaultOutputLimit
	case limit < 0:
		limit = 0
	}
	grace := s.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("%w: stdout pipe: %w", ErrStart, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return Result{}, fmt.Errorf("%w: stderr pipe: %w", ErrStart, err)
	}

	cmd := &exec.Cmd{
		Path:   s.Path,
		Args:   s.Args,
		Env:    s.environ(),
		Dir:    s.workdir(),
		Stdout: outW,
		Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: s.User.UID, Gid: s.User.GID, Groups: s.User.Groups},
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		closeAll(outR, outW, errR, errW)
		return Result{}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	// The child has its own copies; ours must go so the readers see EOF.
	closeAll(outW, errW)
	pid := cmd.Process.Pid
	res := Result{PID: pid, TID: tid}
	if s.OnStart != nil {
		s.OnStart(Started{PID: pid, TID: tid})
	}

	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		res.Stdout, res.StdoutTruncated = drain(outR, Stdout, limit, s.OnOutput)
	}()
	go func() {
		defer readers.Done()
		res.Stderr, res.StderrTruncated = drain(errR, Stderr, limit, s.OnOutput)
	}()

	// The killer: SIGTERM to the group on timeout or cancel, SIGKILL after
	// the grace period. It ends when the main process has been waited for.
	exited := make(chan struct{})
	reason := make(chan string, 1)
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		var timeout <-chan time.Time
		if s.Timeout > 0 {
			t := time.NewTimer(s.Timeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-exited:
			return
		case <-ctx.Done():
			reason <- ReasonCanceled
		case <-timeout:
			reason <- ReasonTimeout
		}
		_ = unix.Kill(-pid, unix.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = unix.Kill(-pid, unix.SIGKILL)
		}
	}()

	waitErr := cmd.Wait()
	res.Duration = time.Since(start)
	close(exited)
	killer.Wait()
	// The main process is gone: whatever it left in its group goes too.
	_ = unix.Kill(-pid, unix.SIGKILL)

	// Readers end at EOF once every holder of the pipes is gone. A process
	// that left the group (setsid) may keep them open: stop waiting then.
	readersDone := make(chan struct{})
	go func() { readers.Wait(); close(readersDone) }()
	select {
	case <-readersDone:
	case <-time.After(grace):
		closeAll(outR, errR)
		<-readersDone
	}
	closeAll(outR, errR)

	select {
	case r := <-reason:
		res.Reason = r
	default:
	}
	if st := cmd.ProcessState; st != nil {
		res.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = unix.SignalName(ws.Signal())
			res.ExitCode = 128 + int(ws.Signal())
		}
	} else if waitErr != nil {
		return res, fmt.Errorf("wait for %s: %w", s.Path, waitErr)
	}
	return res, nil
}

// dropBounding removes every capability not in keep from this thread's
// bounding set.
func dropBounding(keep []Capability) error {
	k := map[Capability]bool{}
	for _, c := range keep {
		k[c] = true
	}
	last := lastCap()
	for c := 0; c <= last; c++ {
		if k[Capability(c)] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			return fmt.Errorf("prctl(PR_CAPBSET_DROP, %v): %w", Capability(c), err)
		}
	}
	return nil
}

func (s *Spec) environ() []string {
	env := []string{
		"HOME=" + s.User.Home,
		"USER=" + s.User.Name,
		"LOGNAME=" + s.User.Name,
		"PATH=" + DefaultPath,
		"LANG=" + DefaultLang,
	}
	return append(env, s.Env...)
}

func (s *Spec) workdir() string {
	if s.Dir != "" {
		return s.Dir
	}
	if s.User.Home != "" {
		if fi, err := os.Stat(s.User.Home); err == nil && fi.IsDir() {
			return s.User.Home
		}
	}
	return "/"
}

func drain(r *os.File, stream string, limit int, cb func(string, []byte)) (kept []byte, truncated bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if cb != nil {
				cb(stream, append([]byte(nil), buf[:n]...))
			}
			room := limit - len(kept)
			switch {
			case room >= n:
				kept = append(kept, buf[:n]...)
			default:
				if room > 0 {
					kept = append(kept, buf[:room]...)
				}
				truncated = true
			}
		}
		if err != nil {
			return kept, truncated
		}
	}
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}
