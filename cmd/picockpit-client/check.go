package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/modules"
)

var checkCmd = &subcommand{
	name:    "check",
	summary: "validate the config and every module file, list what loads; exit 1 on any problem",
	help: `Reports every problem, each naming the file (or environment variable, or
--set) and the key, and lists each module file with the commands or pins it
defines, so that a file in the wrong place shows by its absence.`,
	flags: func(fs *flag.FlagSet) func(*cli, []string) int {
		cf := newConfigFlags(fs, false)
		return func(c *cli, args []string) int {
			if len(args) > 0 {
				return c.usageError("unexpected argument %q", args[0])
			}
			return check(cf.options(c), c.stdout, c.stderr)
		}
	},
}

func check(opts agent.Options, stdout, stderr io.Writer) int {
	log := slog.New(slog.DiscardHandler)
	res, err := agent.Load(opts, log)
	problems := 0
	if errors.Is(err, agent.ErrNoConfigDir) {
		printConfigError(stderr, err)
		return 1
	}
	if err != nil {
		printConfigError(stderr, err)
		var errs agent.ConfigErrors
		if errors.As(err, &errs) {
			problems += len(errs)
		} else {
			problems++
		}
	}
	for _, w := range res.Config.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	where := res.Config.File
	if where == "" {
		where = "none (built-in defaults; no " + agent.ConfigFileName + " in " + opts.ConfigDir + ")"
	}
	fmt.Fprintf(stdout, "config: %s\n", where)
	if res.Device.ID != "" {
		fmt.Fprintf(stdout, "device: %s, topic root %s/%s\n", res.Device.ID, res.Config.Topics.Prefix, res.Device.ID)
	}
	for _, k := range opts.Kinds {
		m := res.Modules[k.Name]
		if m == nil {
			fmt.Fprintf(stdout, "%s: nothing loaded\n", k.Name)
			continue
		}
		fmt.Fprintf(stdout, "%s:\n", k.Name)
		d, ok := m.(modules.Describer)
		if !ok {
			continue
		}
		loaded := d.Describe()
		if len(loaded) == 0 {
			fmt.Fprintln(stdout, "  no module files")
		}
		for _, l := range loaded {
			indent := "  "
			if l.File != "" {
				fmt.Fprintf(stdout, "  %s\n", l.File)
				indent = "    "
			}
			for _, it := range l.Items {
				fmt.Fprintf(stdout, "%s%s\n", indent, it)
			}
		}
	}
	probs := slices.Clone(res.Problems)
	slices.SortStableFunc(probs, func(a, b modules.Problem) int { return strings.Compare(a.File, b.File) })
	for _, p := range probs {
		fmt.Fprintln(stderr, "error:", p.Error())
	}
	problems += len(probs)
	if problems > 0 {
		fmt.Fprintf(stderr, "%d problem(s) found\n", problems)
		return 1
	}
	fmt.Fprintf(stdout, "ok: config %s, device %s, topic root %s/%s, modules: %d\n", where, res.Device.ID,
		res.Config.Topics.Prefix, res.Device.ID, len(res.Modules))
	return 0
}
