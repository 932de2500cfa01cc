package main

import (
	"os"
	"strings"
	"testing"

	"github.com/picockpit/picockpit-client/agent/agenttest"
)

// Issue 12: run-command started from a shell passed the shell's fds 10 and
// 251 to the command. The real binary, holding them, runs ls /proc/self/fd.
func TestRunCommandInheritsNoFDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run-command drops privileges: run as root (CI is root)")
	}
	dir := writeTree(t, map[string]string{
		"picockpit-client.config.json": `{"device":{"id":"x"}}`,
		"apps/com.picockpit/picontrol/modules/fds.json": `{"id":"m","name":"M","commands":[
			{"id":"fds","name":"FDs","argv":["/bin/ls","/proc/self/fd"],"user":"nobody"}]}`,
	})
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := agenttest.Command(t, "run-command", "--config-dir", dir, "m", "fds")
	cmd.ExtraFiles = make([]*os.File, 251-3+1) // entry i is fd 3+i, inheritable
	cmd.ExtraFiles[10-3] = f
	cmd.ExtraFiles[251-3] = f
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run-command: %v\n%s", err, stderr.String())
	}
	// 0, 1, 2 and the directory ls itself opened.
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "0 1 2 3" {
		t.Errorf("the command had fds %v, want only 0 1 2 (and ls's own 3)", got)
	}
}
