package picontrol

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/agent/runas"
	"github.com/picockpit/picockpit-client/modules"
)

// This file lends PiControl's command decoder and runner to other module
// kinds (PiDoctor's external checks), so that a command defined anywhere is
// parsed, validated, run as its user, timed out and capped exactly the same
// way. It adds no second code path: DecodeCommand is decodeCommand and
// Command.Run is runCommand.

// CommandOptions are the settings a kind gives the shared decoder and runner
// (what the picontrol config section gives PiControl's own commands).
type CommandOptions struct {
	// DefaultUser runs a command that names no user.
	DefaultUser string
	// DefaultTimeout applies to a command without a timeout.
	DefaultTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL of the process group.
	KillGrace time.Duration
	// OutputLimit is how many bytes of stdout and of stderr are kept; 0 keeps
	// none.
	OutputLimit int
	// Log receives nothing today; reserved for the runner.
	Log *slog.Logger
}

// Command is one command decoded and validated by PiControl's decoder, ready
// to run through PiControl's runner.
type Command struct {
	c *command
	m *Module
}

// DecodeCommand decodes and validates one command object exactly like an
// element of a PiControl module's "commands" (argv or command, shell, user,
// group, groups, timeout, env, workdir, no_new_privileges, capabilities, id,
// name, description, icon; parameters, confirm and concurrency too, which the
// caller may refuse). Problems name file and field, field being prefixed with
// field (e.g. "checks[2]" gives "checks[2].user"). It returns nil and the
// problems when anything is wrong.
func DecodeCommand(file, field string, raw json.RawMessage, opts CommandOptions) (*Command, []modules.Problem) {
	cfg := defaultConfig()
	cfg.DefaultUser = opts.DefaultUser
	cfg.DefaultTimeout = Duration(opts.DefaultTimeout)
	cfg.KillGrace = Duration(opts.KillGrace)
	cfg.OutputLimit = opts.OutputLimit
	l := &loader{cfg: cfg}
	fe := &modules.FileProblems{File: file}
	c := l.decodeCommand(fe, field, raw)
	if c == nil || len(fe.List) > 0 {
		return nil, fe.List
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Command{c: c, m: &Module{log: log, cfg: cfg, run: runas.Run, now: time.Now}}, nil
}

// User is the name of the user the command runs as.
func (c *Command) User() string { return c.c.User.Name }

// Timeout is the command's timeout.
func (c *Command) Timeout() time.Duration { return c.c.Timeout }

// HasParameters reports whether the command declares parameters.
func (c *Command) HasParameters() bool { return len(c.c.Params) > 0 }

// Run runs the command (with the parameters' defaults) through runas and
// returns PiControl's final reply: status done (with exit code, output and
// duration) or failed (could not start, timed out, killed by a signal,
// cancelled through ctx), Error saying why.
func (c *Command) Run(ctx context.Context) contract.PiControlReply {
	vals, err := c.c.bindStrings(nil)
	if err != nil {
		return contract.PiControlReply{Response: contract.Response{Status: contract.StatusFailed, Error: err.Error(), TS: time.Now().UTC()}}
	}
	return c.m.runCommand(ctx, c.c, vals, nil)
}
