package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/picockpit/picockpit-client/agent"
)

var runCmd = &subcommand{
	name:    "run",
	summary: "run the agent in the foreground (what the systemd unit starts); SIGHUP reloads",
	flags: func(fs *flag.FlagSet) func(*cli, []string) int {
		cf := newConfigFlags(fs, true)
		level := fs.String("log-level", "", "override log.level: debug, info, warn or error")
		return func(c *cli, args []string) int {
			if len(args) > 0 {
				return c.usageError("unexpected argument %q", args[0])
			}
			return run(cf.options(c), *level, c)
		}
	},
}

func run(opts agent.Options, level string, c *cli) int {
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
	log := slog.New(slog.NewTextHandler(c.stderr, hopts))
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
