package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules/kinds"
)

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// configFlags are the flags of the subcommands that read the config:
// --config-dir and --set (and --state-dir when withState).
type configFlags struct {
	opts agent.Options
	sets stringList
}

func newConfigFlags(fs *flag.FlagSet, withState bool) *configFlags {
	cf := &configFlags{}
	fs.StringVar(&cf.opts.ConfigDir, "config-dir", "/etc/picockpit-client", "`DIR` with "+agent.ConfigFileName+" and apps/")
	if withState {
		fs.StringVar(&cf.opts.StateDir, "state-dir", "/var/lib/picockpit-client", "`DIR` for the agent's state (MQTT session)")
	}
	fs.BoolFunc("trust-own-files", "also trust config files of the daemon's own non-root user (test trees; refused as root)", func(string) error { return agent.TrustOwnFiles() })
	fs.Var(&cf.sets, "set", "override a config `key=value` (repeatable), e.g. --set broker.url=mqtts://broker:8883;\n"+
		"secrets (broker.password) are refused: use broker.password_file or PICOCKPIT_BROKER_PASSWORD")
	return cf
}

// options returns the agent options for c: the flags, c's environment, the
// built-in module kinds and the version.
func (cf *configFlags) options(c *cli) agent.Options {
	o := cf.opts
	o.Environ, o.Sets, o.Kinds, o.Version = c.environ, cf.sets, kinds.All(), version()
	return o
}

// printConfigError prints a config error, one line per problem.
func printConfigError(w io.Writer, err error) {
	var errs agent.ConfigErrors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, "error:", e)
		}
		return
	}
	fmt.Fprintln(w, "error:", err)
}

// configAndDevice loads the config and the device identity, printing any
// error; ok is false then.
func configAndDevice(opts agent.Options, stderr io.Writer) (cfg agent.Config, dev contract.Device, ok bool) {
	cfg, err := agent.LoadConfig(opts.ConfigDir, opts.Environ, opts.Sets, agent.SectionKeys(opts.Kinds))
	if err == nil {
		dev, err = agent.ReadDevice(cfg.Host.Root, cfg.Device.ID)
	}
	if err != nil {
		printConfigError(stderr, err)
		return cfg, dev, false
	}
	return cfg, dev, true
}
