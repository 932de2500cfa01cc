package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/connect"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules/kinds"
)

// unitName is the systemd unit connect restarts and disconnect stops.
const unitName = "picockpit-client.service"

// systemctl runs systemctl (a variable for tests).
var systemctl = func(args ...string) error {
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// stdin is what connect and disconnect read passwords from (tests swap it).
var stdin io.Reader = os.Stdin

const connectUsage = `usage: picockpit-client connect [flags]

Tests the broker login for real (connect, publish to this device's own
topics, read it back), then saves it in the config (atomically, mode 0600)
and restarts the service. Nothing is saved when the test fails. The
password is stored encrypted with systemd-creds where it works.

With --provision and an administrator login of a Mosquitto broker running
the dynamic security plugin, it creates this device's own broker account
(random password, a role allowing exactly this device's topics) and stores
only that; the administrator password is never stored.

flags:
`

// connectCmd, disconnectCmd and statusCmd parse their own flags
// (connect.go, disconnect.go, status.go).
var (
	connectCmd = &subcommand{name: "connect", args: "[--broker URL]... [--username U] [--password-file F | --password-stdin] [--provision] [--no-restart]",
		summary: "test a broker login, save it (password encrypted) and restart the service",
		raw:     func(c *cli, args []string) int { return connectMain(args, c.stdout, c.stderr) }}
	disconnectCmd = &subcommand{name: "disconnect", args: "[--admin-username U] [--admin-password-file F] [--no-stop]",
		summary: "clear this device's retained topics, remove its login, stop the service",
		raw:     func(c *cli, args []string) int { return disconnectMain(args, c.stdout, c.stderr) }}
	statusCmd = &subcommand{name: "status", args: "[--json]",
		summary: "whether the service runs and is connected, to which broker, since when",
		raw:     func(c *cli, args []string) int { return statusMain(args, c.stdout, c.stderr) }}
)

func connectMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("picockpit-client connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, connectUsage); fs.PrintDefaults() }
	var o connect.Options
	var brokers stringList
	var passwordFile, adminPasswordFile string
	fs.StringVar(&o.ConfigDir, "config-dir", "/etc/picockpit-client", "directory with picockpit-client.config.json")
	fs.StringVar(&o.StateDir, "state-dir", "/var/lib/picockpit-client", "the agent's state directory")
	fs.Var(&brokers, "broker", "broker URL, mqtt://, mqtts://, ws:// or wss:// (repeatable: failover order; default: the config's)")
	fs.StringVar(&o.Username, "username", "", "broker user name")
	fs.StringVar(&passwordFile, "password-file", "", "read the broker password from this file")
	passwordStdin := fs.Bool("password-stdin", false, "read the broker password from standard input")
	fs.StringVar(&o.CAFile, "ca-file", "", "PEM file of the CA that signed the broker's certificate")
	fs.StringVar(&o.CertFile, "cert-file", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&o.KeyFile, "key-file", "", "client key (PEM) for mutual TLS")
	fs.StringVar(&o.DeviceID, "device-id", "", "device id (default: the config's, else the Pi's serial number)")
	fs.StringVar(&o.Prefix, "prefix", "", "topic prefix (default: the config's)")
	noRestart := fs.Bool("no-restart", false, "do not enable and restart the service")
	provision := fs.Bool("provision", false, "create this device's own account with Mosquitto's dynamic security plugin")
	adminUser := fs.String("admin-username", "admin", "--provision: the dynamic security administrator")
	fs.StringVar(&adminPasswordFile, "admin-password-file", "", "--provision: read the administrator password from this file (default: prompt)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "timeout of each network step")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "picockpit-client connect: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.URLs = brokers
	o.Sections = agent.SectionKeys(kinds.All())
	o.Secrets = connect.Secrets{ConfigDir: o.ConfigDir}

	in := bufio.NewReader(stdin)
	var err error
	if *provision {
		if o.Username != "" || passwordFile != "" || *passwordStdin {
			fmt.Fprintln(stderr, "error: --provision creates the device's login: do not give --username or a password")
			return 2
		}
		pw, err := secret(in, adminPasswordFile, false, fmt.Sprintf("administrator password for %s: ", *adminUser), stderr)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 2
		}
		o.Admin = &connect.Target{Username: *adminUser, Password: pw}
	} else {
		if len(o.URLs) == 0 && isTerminal(os.Stdin) {
			if u := prompt(in, "broker URL (e.g. mqtts://broker.example:8883): ", stderr); u != "" {
				o.URLs = []string{u}
			}
		}
		if o.Username == "" && isTerminal(os.Stdin) && passwordFile == "" && !*passwordStdin {
			o.Username = prompt(in, "broker user name (empty: none): ", stderr)
		}
		if o.Username != "" || passwordFile != "" || *passwordStdin {
			o.Password, err = secret(in, passwordFile, *passwordStdin, "broker password: ", stderr)
			if err != nil {
				fmt.Fprintln(stderr, "error:", err)
				return 2
			}
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintln(stdout, "testing the connection...")
	res, err := connect.Connect(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		fmt.Fprintln(stderr, "nothing was changed")
		if *provision && res.Root.Device != "" {
			// Brokers without the dynamic security plugin: the rules to install.
			fmt.Fprintf(stderr, "\nfor a broker without Mosquitto's dynamic security plugin, give the device a user with these rules\n"+
				"(Mosquitto acl_file; other brokers take the same topics) and run connect with --username:\n\n%s",
				contract.MosquittoACL(res.Root.Prefix, res.Root.Device, "picockpit-"+res.Root.Device, "", false))
		}
		return 1
	}
	fmt.Fprintf(stdout, "ok: connected to %s, published and read back on %s\n", res.URL, res.Root.Base())
	if res.Account != nil {
		fmt.Fprintf(stdout, "provisioned broker account %q with role %q (only this device's topics)\n", res.Account.Username, res.Account.Role)
	}
	switch {
	case res.Stored.Encrypted:
		fmt.Fprintf(stdout, "password stored encrypted with systemd-creds in %s\n", res.Stored.Path)
	case res.Stored.Path != "":
		fmt.Fprintf(stdout, "password stored in %s (mode 0600, not encrypted: %s)\n", res.Stored.Path, res.Stored.Why)
	}
	fmt.Fprintf(stdout, "saved %s\n", res.ConfigFile)
	if *noRestart {
		fmt.Fprintf(stdout, "not restarting (--no-restart): run systemctl restart %s\n", unitName)
		return 0
	}
	if err := systemctl("enable", unitName); err == nil {
		err = systemctl("restart", unitName)
		if err == nil {
			fmt.Fprintf(stdout, "restarted %s\n", unitName)
			return 0
		}
		fmt.Fprintln(stderr, "error:", err)
	} else {
		fmt.Fprintln(stderr, "error:", err)
	}
	fmt.Fprintf(stderr, "the config was saved; start the agent yourself (systemctl restart %s)\n", unitName)
	return 1
}

// secret reads a password from file, from in (the first line, with
// fromStdin) or, on a terminal, from a prompt without echo.
func secret(in *bufio.Reader, file string, fromStdin bool, ask string, stderr io.Writer) ([]byte, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return bytes.TrimRight(b, "\r\n"), nil
	case fromStdin:
		line, err := in.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return bytes.TrimRight(line, "\r\n"), nil
	case isTerminal(os.Stdin):
		return readNoEcho(int(os.Stdin.Fd()), in, ask, stderr)
	}
	return nil, errors.New("no password: give --password-file or --password-stdin (or run on a terminal to be asked)")
}

func prompt(in *bufio.Reader, ask string, stderr io.Writer) string {
	fmt.Fprint(stderr, ask)
	line, _ := in.ReadString('\n')
	return strings.TrimSpace(line)
}

// readNoEcho reads a line from the terminal with echo switched off.
func readNoEcho(fd int, in *bufio.Reader, ask string, stderr io.Writer) ([]byte, error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ECHONL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(stderr, ask)
	line, err := in.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}
