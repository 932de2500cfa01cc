// Command picockpit-client is the picockpit agent. Subcommands: run (the
// daemon), check (validate config and modules), version. The logic lives in
// package agent and the module packages; this file only wires them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules/kinds"
	"github.com/picockpit/picockpit-client/modules/picontrol"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	// Keep the main goroutine on the main thread, so that no goroutine that
	// changed its thread's credentials can ever land on the process leader.
	runtime.LockOSThread()
}

const usage = `usage: picockpit-client <command> [flags]

commands:
  run      run the agent in the foreground (what the systemd unit starts)
  check    validate the config and every module file; exit 1 on any problem
  run-command MODULE COMMAND [name=value ...]
           run one PiControl command here, through the same checks and
           privilege drop as a request over MQTT; exits with its exit code
  acl      print a least-privilege Mosquitto ACL for this device (and a frontend user)
  version  print the version

flags of run and check:
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "picockpit-client", version)
		return 0
	case "run", "check", "run-command", "acl":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		newFlags(stdout, new(agent.Options), new(string), new(stringList)).PrintDefaults()
		return 0
	default:
		fmt.Fprintf(stderr, "picockpit-client: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var opts agent.Options
	var level string
	var sets stringList
	fs := newFlags(stderr, &opts, &level, &sets)
	var frontend *string
	var pattern *bool
	if cmd == "acl" {
		frontend = fs.String("frontend-user", "dashboard", "acl: broker user of the frontends (empty: none)")
		pattern = fs.Bool("pattern", false, "acl: write the device rules as patterns for every device (user name = device id)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cmd == "acl" {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "picockpit-client acl: unexpected argument %q\n", fs.Arg(0))
			return 2
		}
		opts.Environ, opts.Sets, opts.Kinds = os.Environ(), sets, kinds.All()
		return acl(opts, *frontend, *pattern, stdout, stderr)
	}
	if cmd == "run-command" {
		opts.Version, opts.Environ, opts.Sets, opts.Kinds = version, os.Environ(), sets, kinds.All()
		return runCommand(opts, fs.Args(), stdout, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "picockpit-client %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	opts.Version = version
	opts.Environ = os.Environ()
	opts.Sets = sets
	opts.Kinds = kinds.All()
	if cmd == "check" {
		return check(opts, stdout, stderr)
	}
	return run(opts, level, stderr)
}

func newFlags(out io.Writer, opts *agent.Options, level *string, sets *stringList) *flag.FlagSet {
	fs := flag.NewFlagSet("picockpit-client", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&opts.ConfigDir, "config-dir", "/etc/picockpit-client", "directory with picockpit-client.config.json and apps/")
	fs.StringVar(&opts.StateDir, "state-dir", "/var/lib/picockpit-client", "directory for module state kept across restarts")
	fs.StringVar(level, "log-level", "", "override log.level (debug, info, warn, error)")
	fs.Var(sets, "set", "override a config key, key=value (repeatable), e.g. --set broker.url=mqtts://broker:8883")
	return fs
}

func check(opts agent.Options, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := agent.Load(opts, log)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	for _, p := range res.Problems {
		fmt.Fprintln(stderr, "error:", p.Error())
	}
	if len(res.Problems) > 0 {
		fmt.Fprintf(stderr, "%d problem(s) found\n", len(res.Problems))
		return 1
	}
	where := res.Config.File
	if where == "" {
		where = "built-in defaults (no " + agent.ConfigFileName + ")"
	}
	fmt.Fprintf(stdout, "ok: config %s, device %s, topic root %s/%s, modules: %d\n", where, res.Device.ID,
		res.Config.Topics.Prefix, res.Device.ID, len(res.Modules))
	return 0
}

func run(opts agent.Options, level string, stderr io.Writer) int {
	lv := new(slog.LevelVar)
	hopts := &slog.HandlerOptions{Level: lv}
	if os.Getenv("JOURNAL_STREAM") != "" {
		// journald stamps every line itself.
		hopts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, hopts))
	opts.Log = log

	reload := make(chan struct{}, 1)
	opts.Reload = reload
	a, res, err := agent.New(opts)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if level == "" {
		level = res.Config.Log.Level
	}
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		log.Error("bad --log-level", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	if err := a.Run(ctx, res.Modules, res.Problems); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with error", "err", err)
		return 1
	}
	return 0
}

func runCommand(opts agent.Options, args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, "usage: picockpit-client run-command [flags] MODULE COMMAND [name=value ...]")
		return 2
	}
	params := map[string]string{}
	for _, a := range args[2:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(stderr, "error: parameter %q: want name=value\n", a)
			return 2
		}
		params[k] = v
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, dev, ok := configAndDevice(opts, stderr)
	if !ok {
		return 1
	}
	files, probs := agent.ModuleFiles(opts.ConfigDir, "picontrol")
	for _, p := range probs {
		fmt.Fprintln(stderr, "error:", p.Error())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	code, err := picontrol.RunLocal(ctx, agent.ModuleEnv(opts, cfg, dev, log), cfg.Sections["picontrol"], cfg.File, files,
		args[0], args[1], params, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		if code <= 0 {
			code = 1 // nothing ran, or it failed without an exit status
		}
	}
	return code
}

// configAndDevice loads the config and the device identity, printing any
// error; ok is false then.
func configAndDevice(opts agent.Options, stderr io.Writer) (cfg agent.Config, dev contract.Device, ok bool) {
	cfg, err := agent.LoadConfig(opts.ConfigDir, opts.Environ, opts.Sets, agent.SectionKeys(opts.Kinds))
	if err == nil {
		dev, err = agent.ReadDevice(cfg.Host.Root, cfg.Device.ID)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return cfg, dev, false
	}
	return cfg, dev, true
}

func acl(opts agent.Options, frontend string, pattern bool, stdout, stderr io.Writer) int {
	cfg, dev, ok := configAndDevice(opts, stderr)
	if !ok {
		return 1
	}
	user := cfg.Broker.Username
	if user == "" {
		user = dev.ID
	}
	fmt.Fprint(stdout, contract.MosquittoACL(cfg.Topics.Prefix, dev.ID, user, frontend, pattern))
	return 0
}
