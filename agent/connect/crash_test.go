package connect

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/picockpit/picockpit-client/agent"
)

// crashEnv makes the test binary a helper that edits the config named by
// it and is killed between the write of the temporary file and the rename.
const crashEnv = "PICOCKPIT_TEST_CRASH_BEFORE_RENAME"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		beforeRename = func(string) { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
		err := EditConfig(path, func(d *Doc) error { d.Set("broker.username", "new-user"); return nil })
		os.Stderr.WriteString("helper was not killed: " + errString(err) + "\n")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestInterruptedWriteKeepsConfig: a process killed after writing and
// syncing the new config but before the rename leaves the old config
// intact and loadable; the next write succeeds and removes the leftover.
func TestInterruptedWriteKeepsConfig(t *testing.T) {
	o := setup(t)
	path := filepath.Join(o.ConfigDir, agent.ConfigFileName)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v: %s", err, out)
	}
	unchangedExcept(t, o, 1)
	left, _ := filepath.Glob(filepath.Join(o.ConfigDir, tempPrefix(path)+"*"))
	if len(left) != 1 {
		t.Fatalf("leftover temporary files %v, want the one the crash left", left)
	}
	if b, _ := os.ReadFile(left[0]); !strings.Contains(string(b), `"new-user"`) {
		t.Fatalf("the killed write had not written the new content yet:\n%s", b)
	}
	if _, err := agent.LoadConfig(o.ConfigDir, nil, nil, nil); err != nil {
		t.Fatalf("config after the crash: %v", err)
	}
	if err := EditConfig(path, func(d *Doc) error { d.Set("broker.username", "next"); return nil }); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadConfig(o.ConfigDir, nil, nil, nil)
	if err != nil || cfg.Broker.Username != "next" {
		t.Fatalf("after the next write: %v %q", err, cfg.Broker.Username)
	}
	if left, _ := filepath.Glob(filepath.Join(o.ConfigDir, tempPrefix(path)+"*")); len(left) != 0 {
		t.Errorf("leftovers not removed: %v", left)
	}
}

// unchangedExcept checks the config is the old one and the directory holds
// it plus extra files.
func unchangedExcept(t *testing.T, o Options, extra int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(o.ConfigDir, agent.ConfigFileName))
	if err != nil || string(b) != oldConfig {
		t.Errorf("the config changed (%v):\n%s", err, b)
	}
	if entries, _ := os.ReadDir(o.ConfigDir); len(entries) != 1+extra {
		t.Errorf("config dir has %d entries, want %d", len(entries), 1+extra)
	}
}
