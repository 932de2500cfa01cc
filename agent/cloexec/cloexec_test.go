package cloexec

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary plays three parts, chosen by the environment: the test,
// the "agent" that inherited fd 10 (and maybe calls All), and the command the
// agent starts, which reports whether it has fd 10.
func TestMain(m *testing.M) {
	switch os.Getenv("CLOEXEC_TEST_ROLE") {
	case "agent":
		if os.Getenv("CLOEXEC_TEST_MODE") != "" {
			mark := All
			if os.Getenv("CLOEXEC_TEST_MODE") == "each" {
				mark = each
			}
			if err := mark(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "CLOEXEC_TEST_ROLE=command")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		os.Exit(0)
	case "command":
		var fds []string
		for _, fd := range []int{10, 251} {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
				fds = append(fds, fmt.Sprint(fd))
			}
		}
		fmt.Printf("open: %s\n", strings.Join(fds, ","))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childOpenFDs starts the "agent" with fds 10 and 251 open (not
// close-on-exec, like a shell's) and returns what its command reports.
func childOpenFDs(t *testing.T, mode string) string {
	t.Helper()
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CLOEXEC_TEST_ROLE=agent", "CLOEXEC_TEST_MODE="+mode)
	// ExtraFiles[i] becomes fd 3+i in the child, without close-on-exec.
	cmd.ExtraFiles = make([]*os.File, 251-3+1)
	cmd.ExtraFiles[10-3] = f
	cmd.ExtraFiles[251-3] = f
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestChildrenInheritNoFDs(t *testing.T) {
	// Without All the command inherits them: the test can see a leak.
	if got := childOpenFDs(t, ""); got != "open: 10,251" {
		t.Fatalf("control: command reports %q, want fds 10 and 251 open", got)
	}
	for _, mode := range []string{"all", "each"} {
		if got := childOpenFDs(t, mode); got != "open:" {
			t.Errorf("%s: command reports %q, want no inherited fds", mode, got)
		}
	}
}
