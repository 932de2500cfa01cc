package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules/pidoctor"
)

var doctorCmd = &subcommand{
	name:    "doctor",
	summary: "run every PiDoctor check here; print verdict, check, message and remedy (or --json)",
	help: `Runs the same checks and rules as a pidoctor/run request and prints a table,
worst first, with remedies (colour on a terminal), or the report as JSON.
Exit code: 0 all ok, 1 any warn or fail, 2 any error (a check could not
run) or a configuration problem.`,
	flags: func(fs *flag.FlagSet) func(*cli, []string) int {
		cf := newConfigFlags(fs, true)
		asJSON := fs.Bool("json", false, "print the report as JSON (docs/schemas/pidoctor-report.schema.json)")
		color := fs.String("color", "auto", "colour the table: `auto` (on a terminal, unless NO_COLOR is set), always, never")
		return func(c *cli, args []string) int {
			if len(args) > 0 {
				return c.usageError("unexpected argument %q", args[0])
			}
			useColor := false
			switch *color {
			case "always":
				useColor = true
			case "never":
			case "auto":
				useColor = isTerminal(c.stdout) && !slices.ContainsFunc(c.environ, func(e string) bool { return strings.HasPrefix(e, "NO_COLOR=") && e != "NO_COLOR=" })
			default:
				return c.usageError("--color %q: want auto, always or never", *color)
			}
			return doctor(cf.options(c), *asJSON, useColor, c)
		}
	},
}

func doctor(opts agent.Options, asJSON, useColor bool, c *cli) int {
	cfg, err := agent.LoadConfig(opts.ConfigDir, opts.Environ, opts.Sets, agent.SectionKeys(opts.Kinds))
	if err != nil {
		printConfigError(c.stderr, err)
		return 2
	}
	// The checks need no device id; a machine without one is still diagnosed.
	dev, _ := agent.ReadDevice(cfg.Host.Root, cfg.Device.ID)
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	files, probs := agent.ModuleFiles(opts.ConfigDir, pidoctor.Name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rep, more := pidoctor.RunLocal(ctx, agent.ModuleEnv(opts, cfg, dev, log), cfg.Sections[pidoctor.Name], cfg.File, files)
	for _, p := range append(probs, more...) {
		fmt.Fprintln(c.stderr, "error:", p.Error())
	}
	if asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintln(c.stderr, "error:", err)
			return 2
		}
		fmt.Fprintf(c.stdout, "%s\n", b)
	} else {
		printDoctorTable(c.stdout, rep, useColor)
	}
	if len(probs)+len(more) > 0 {
		return 2
	}
	return doctorExitCode(rep)
}

// doctorExitCode is 2 on any error verdict, else 1 on any warn or fail, else 0.
func doctorExitCode(rep contract.PiDoctorReport) int {
	switch c := rep.Summary.Counts; {
	case c[contract.VerdictError] > 0:
		return 2
	case c[contract.VerdictWarn]+c[contract.VerdictFail] > 0:
		return 1
	}
	return 0
}

var verdictColor = map[string]string{
	contract.VerdictOK: "\x1b[32m", contract.VerdictWarn: "\x1b[33m", contract.VerdictFail: "\x1b[1;31m", contract.VerdictError: "\x1b[35m",
}

// printDoctorTable prints the results worst first: verdict, check, message,
// and the remedy on its own line below.
func printDoctorTable(w io.Writer, rep contract.PiDoctorReport, color bool) {
	checks := slices.Clone(rep.Checks)
	slices.SortStableFunc(checks, func(a, b contract.PiDoctorResult) int {
		return cmp.Compare(contract.VerdictRank(b.Verdict), contract.VerdictRank(a.Verdict))
	})
	width := len("CHECK")
	for _, c := range checks {
		width = max(width, utf8.RuneCountInString(c.Name))
	}
	fmt.Fprintf(w, "%-7s %-*s  %s\n", "VERDICT", width, "CHECK", "MESSAGE")
	for _, c := range checks {
		v := fmt.Sprintf("%-7s", strings.ToUpper(c.Verdict))
		if color {
			v = verdictColor[c.Verdict] + v + "\x1b[0m"
		}
		pad := width - utf8.RuneCountInString(c.Name)
		fmt.Fprintf(w, "%s %s%s  %s\n", v, c.Name, strings.Repeat(" ", pad), c.Message)
		if c.Remedy != "" {
			fmt.Fprintf(w, "%-7s %-*s  -> %s\n", "", width, "", c.Remedy)
		}
	}
	s := rep.Summary
	fmt.Fprintf(w, "\n%d checks in %d ms: %d ok, %d warn, %d fail, %d error; worst: %s\n", len(rep.Checks), rep.DurationMS,
		s.Counts[contract.VerdictOK], s.Counts[contract.VerdictWarn], s.Counts[contract.VerdictFail], s.Counts[contract.VerdictError], s.Worst)
}
