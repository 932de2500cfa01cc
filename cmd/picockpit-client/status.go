package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/picockpit/picockpit-client/agent"
)

// serviceState asks systemd whether the unit runs ("" when systemctl
// cannot tell, e.g. without systemd).
var serviceState = func() string {
	out, _ := exec.Command("systemctl", "is-active", unitName).Output()
	return strings.TrimSpace(string(out))
}

// statusReport is what `status --json` prints.
type statusReport struct {
	Service string `json:"service"` // systemd's active state, or "running"/"not running" from the pid
	Running bool   `json:"running"`
	agent.Status
}

func statusMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("picockpit-client status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "/var/lib/picockpit-client", "the agent's state directory")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	st, err := agent.ReadStatus(*stateDir)
	rep := statusReport{Status: st, Service: serviceState()}
	alive := err == nil && st.State != "stopped" && pidAlive(st.PID)
	switch rep.Service {
	case "active", "reloading":
		rep.Running = true
	case "":
		rep.Running = alive
		rep.Service = map[bool]string{true: "running", false: "not running"}[alive]
	}
	if rep.Running && !alive {
		// systemd says it runs, but the file is not this process's.
		rep.Connected, rep.State = false, "unknown"
	}
	if !rep.Running {
		rep.Connected = false
	}
	code := 0
	if !rep.Running || !rep.Connected {
		code = 1
	}
	if *asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return code
	}
	fmt.Fprintf(stdout, "service:        %s\n", rep.Service)
	if err != nil {
		fmt.Fprintf(stdout, "connection:     unknown (%v)\n", err)
		return 1
	}
	since := func(t time.Time) string {
		return fmt.Sprintf("%s (%s ago)", t.Local().Format(time.DateTime), time.Since(t).Round(time.Second))
	}
	fmt.Fprintf(stdout, "agent:          pid %d, version %s, device %s, started %s\n", st.PID, st.Version, st.Device, since(st.StartedAt))
	switch {
	case rep.Connected:
		fmt.Fprintf(stdout, "connection:     connected to %s since %s\n", st.BrokerURL, since(st.Since))
	case !rep.Running:
		fmt.Fprintf(stdout, "connection:     none (agent %s since %s)\n", st.State, since(st.Since))
	default:
		fmt.Fprintf(stdout, "connection:     %s since %s\n", st.State, since(st.Since))
		if st.BrokerURL != "" {
			fmt.Fprintf(stdout, "last broker:    %s\n", st.BrokerURL)
		}
	}
	if st.LastError != "" && st.LastErrorAt != nil {
		fmt.Fprintf(stdout, "last error:     %s (%s)\n", st.LastError, since(*st.LastErrorAt))
	}
	if st.LastReconnect != nil {
		fmt.Fprintf(stdout, "last reconnect: %s, %d connects since start\n", since(*st.LastReconnect), st.Connects)
	}
	return code
}

// pidAlive reports whether pid is a running picockpit-client.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return false
	}
	self, _ := os.Executable()
	return strings.Contains(exe, "picockpit-client") || exe == self
}
