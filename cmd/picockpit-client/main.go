// Command picockpit-client is the picockpit agent. `picockpit-client help`
// lists its subcommands; each has its own --help. The logic lives in
// package agent and the module packages; the files here only wire them, one
// file per subcommand.
package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/picockpit/picockpit-client/agent/cloexec"
	"io"
	"os"
	"runtime"
	"strings"
)

func init() {
	// Keep the main goroutine on the main thread, so that no goroutine that
	// changed its thread's credentials can ever land on the process leader.
	runtime.LockOSThread()
}

// subcommands is the command line's table of contents, in the order `help`
// lists them. A new subcommand is a file defining its subcommand value and
// one line here.
var subcommands = []*subcommand{
	runCmd,
	checkCmd,
	runCommandCmd,
	aclCmd,
	connectCmd,
	disconnectCmd,
	statusCmd,
	keygenCmd,
	signCmd,
	versionCmd,
}

// A subcommand is one verb of the command line.
type subcommand struct {
	name string
	// args shows the positional arguments in the usage line, e.g.
	// "MODULE COMMAND [name=value ...]"; empty when there are none.
	args string
	// summary is the one line `help` shows.
	summary string
	// help is more text for `<name> --help` (optional).
	help string
	// flags defines the subcommand's own flags on fs and returns the
	// function that runs it with the positional arguments once they are
	// parsed. Flags may come before, between or after the arguments.
	flags func(fs *flag.FlagSet) func(c *cli, args []string) int
	// raw, instead of flags, runs a subcommand that parses its own
	// arguments (keygen, sign).
	raw func(c *cli, args []string) int
}

// cli is the outside world as a subcommand sees it.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string
	sub            *subcommand // the subcommand running
}

// usageError reports a wrong invocation of the subcommand and returns exit
// code 2.
func (c *cli) usageError(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "picockpit-client %s: %s\nusage: %s\n(picockpit-client %s --help for more)\n",
		c.sub.name, fmt.Sprintf(format, a...), c.sub.usageLine(), c.sub.name)
	return 2
}

func (s *subcommand) usageLine() string {
	line := "picockpit-client " + s.name
	if s.flags != nil {
		fs := flag.NewFlagSet(s.name, flag.ContinueOnError)
		s.flags(fs)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			line += " [flags]"
		}
	}
	if s.args != "" {
		line += " " + s.args
	}
	return line
}

func main() {
	os.Exit(processMain(os.Args[1:]))
}

// processMain is the whole process: the test binary, exec'd as the agent,
// runs it too.
func processMain(args []string) int {
	if err := cloexec.All(); err != nil { // commands inherit no fd but 0, 1, 2
		fmt.Fprintln(os.Stderr, "picockpit-client:", err)
		return 1
	}
	return realMain(args, os.Stdout, os.Stderr)
}

func realMain(args []string, stdout, stderr io.Writer) int {
	return (&cli{stdin: os.Stdin, stdout: stdout, stderr: stderr, environ: os.Environ()}).main(args)
}

func (c *cli) main(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, c.overview())
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 0 {
			if sub := lookup(args[0]); sub != nil {
				fmt.Fprint(c.stdout, sub.helpText())
				return 0
			}
			fmt.Fprintf(c.stderr, "picockpit-client: unknown command %q\n\n%s", args[0], c.overview())
			return 2
		}
		fmt.Fprint(c.stdout, c.overview())
		return 0
	case "--version", "-version", "-v":
		name = versionCmd.name
	}
	sub := lookup(name)
	if sub == nil {
		fmt.Fprintf(c.stderr, "picockpit-client: unknown command %q\n\n%s", name, c.overview())
		return 2
	}
	c.sub = sub
	if sub.raw != nil {
		return sub.raw(c, args)
	}
	fs := flag.NewFlagSet("picockpit-client "+sub.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {} // errors say where to find help; --help prints it
	var run func(*cli, []string) int
	if sub.flags != nil {
		run = sub.flags(fs)
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(c.stdout, sub.helpText())
		return 0
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "usage: %s\n(picockpit-client %s --help for more)\n", sub.usageLine(), sub.name)
		return 2
	}
	c.sub = sub
	return run(c, pos)
}

func lookup(name string) *subcommand {
	for _, s := range subcommands {
		if s.name == name {
			return s
		}
	}
	return nil
}

// parseInterspersed parses fs's flags anywhere among args ("run-command
// system reboot --yes") and returns the positional arguments in order;
// everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag, or after "--" (which it drops).
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *cli) overview() string {
	var b strings.Builder
	b.WriteString("usage: picockpit-client <command> [flags] [arguments]\n\ncommands:\n")
	for _, s := range subcommands {
		fmt.Fprintf(&b, "  %-12s %s\n", s.name, s.summary)
	}
	b.WriteString("\npicockpit-client <command> --help shows a command's arguments and flags.\n")
	return b.String()
}

func (s *subcommand) helpText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s\n\n%s\n", s.usageLine(), s.summary)
	if s.help != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(s.help))
	}
	if s.flags == nil {
		return b.String()
	}
	fs := flag.NewFlagSet(s.name, flag.ContinueOnError)
	s.flags(fs)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			b.WriteString("\nflags:\n")
			first = false
		}
		kind, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if kind != "" {
			fmt.Fprintf(&b, " %s", kind)
		}
		fmt.Fprintf(&b, "\n      %s", strings.ReplaceAll(usage, "\n", "\n      "))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	return b.String()
}
