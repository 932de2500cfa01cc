package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/connect"
	"github.com/picockpit/picockpit-client/modules/kinds"
)

const disconnectUsage = `usage: picockpit-client disconnect [flags]

Stops and disables the service, clears this device's retained topics on the
broker (status, info, catalogues, states, results, Home Assistant
discovery) so no ghost is left on dashboards, removes the broker account
that connect --provision created (asks for the administrator password),
then removes the stored password and login from the config.

flags:
`

func disconnectMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("picockpit-client disconnect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, disconnectUsage); fs.PrintDefaults() }
	var o connect.Options
	fs.StringVar(&o.ConfigDir, "config-dir", "/etc/picockpit-client", "directory with picockpit-client.config.json")
	fs.StringVar(&o.StateDir, "state-dir", "/var/lib/picockpit-client", "the agent's state directory")
	adminUser := fs.String("admin-username", "admin", "the dynamic security administrator (for a provisioned account)")
	adminPasswordFile := fs.String("admin-password-file", "", "read the administrator password from this file (default: prompt)")
	noStop := fs.Bool("no-stop", false, "do not stop and disable the service (it must not be running)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "timeout of each network step")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "picockpit-client disconnect: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.Sections = agent.SectionKeys(kinds.All())
	o.HADiscoveryPrefixes = haPrefixes(o.ConfigDir, o.Sections)
	o.Secrets = connect.Secrets{ConfigDir: o.ConfigDir}
	acc, err := connect.Provisioned(o.StateDir)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	if acc.Username != "" {
		pw, err := secret(bufio.NewReader(stdin), *adminPasswordFile, false,
			fmt.Sprintf("administrator password for %s (to remove the account %s): ", *adminUser, acc.Username), stderr)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 2
		}
		o.Admin = &connect.Target{Username: *adminUser, Password: pw}
	}
	if !*noStop {
		// First: a running agent would publish its state again.
		if err := systemctl("disable", "--now", unitName); err != nil {
			fmt.Fprintln(stderr, "error:", err)
			fmt.Fprintln(stderr, "the service must be stopped before its topics are cleared (or use --no-stop if it is not running)")
			return 1
		}
		fmt.Fprintf(stdout, "stopped and disabled %s\n", unitName)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	res, err := connect.Disconnect(ctx, o)
	for _, t := range res.Cleared {
		fmt.Fprintf(stdout, "cleared %s\n", t)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	if res.RemovedAccount != "" {
		fmt.Fprintf(stdout, "removed the broker account %s and its role\n", res.RemovedAccount)
	}
	fmt.Fprintln(stdout, "removed the stored broker login; the device is disconnected")
	return 0
}

// haPrefixes returns the Home Assistant discovery prefixes whose device
// config disconnect clears: the default, and the configured one when the
// config names another.
func haPrefixes(configDir string, sections []string) []string {
	prefixes := []string{connect.DefaultHADiscoveryPrefix}
	cfg, _ := agent.LoadConfig(configDir, nil, nil, sections)
	var ha struct {
		DiscoveryPrefix string `json:"discovery_prefix"`
	}
	if raw := cfg.Sections["homeassistant"]; raw != nil && json.Unmarshal(raw, &ha) == nil &&
		ha.DiscoveryPrefix != "" && ha.DiscoveryPrefix != connect.DefaultHADiscoveryPrefix {
		prefixes = append(prefixes, ha.DiscoveryPrefix)
	}
	return prefixes
}
