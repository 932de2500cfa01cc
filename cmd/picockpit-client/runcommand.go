package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/modules/picontrol"
)

var runCommandCmd = &subcommand{
	name:    "run-command",
	args:    "MODULE COMMAND [name=value ...]",
	summary: "run one PiControl command here, through the same checks and privilege drop as a request over MQTT",
	help: `Exits with the command's exit code. A command marked "confirm" asks first
when stdin is a terminal and needs --yes otherwise.`,
	flags: func(fs *flag.FlagSet) func(*cli, []string) int {
		cf := newConfigFlags(fs, true)
		yes := fs.Bool("yes", false, `run a command marked "confirm" without asking`)
		return func(c *cli, args []string) int {
			if len(args) < 2 {
				return c.usageError("want MODULE and COMMAND")
			}
			return runCommand(cf.options(c), args, *yes, c)
		}
	},
}

func runCommand(opts agent.Options, args []string, yes bool, c *cli) int {
	params := map[string]string{}
	for _, a := range args[2:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return c.usageError("parameter %q: want name=value", a)
		}
		params[k] = v
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, dev, ok := configAndDevice(opts, c.stderr)
	if !ok {
		return 1
	}
	files, probs := agent.ModuleFiles(opts.ConfigDir, "picontrol")
	for _, p := range probs {
		fmt.Fprintln(c.stderr, "error:", p.Error())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	code, err := picontrol.RunLocal(ctx, agent.ModuleEnv(opts, cfg, dev, log), cfg.Sections["picontrol"], cfg.File, files,
		args[0], args[1], params, c.confirmer(args[0]+"/"+args[1], yes), c.stdout, c.stderr)
	if err != nil {
		fmt.Fprintln(c.stderr, "error:", err)
		if code <= 0 {
			code = 1 // nothing ran, or it failed without an exit status
		}
	}
	return code
}

// confirmer returns how run-command confirms the command what: yes
// confirms; else a terminal on stdin is asked; else it is refused.
func (c *cli) confirmer(what string, yes bool) func(name string) error {
	return func(name string) error {
		if yes {
			return nil
		}
		if !isTerminal(c.stdin) {
			return fmt.Errorf("%s (%s) asks for confirmation: run it on a terminal to be asked, or add --yes", what, name)
		}
		fmt.Fprintf(c.stderr, "%s (%s) asks for confirmation. Run it now? [y/N] ", name, what)
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && line == "" {
			return errors.New("not confirmed")
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return nil
		}
		return errors.New("not confirmed")
	}
}

func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
