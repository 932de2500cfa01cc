package picontrol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/agent/runas"
	"github.com/picockpit/picockpit-client/modules"
)

// RunLocal runs one command on this machine, for the command line
// (picockpit-client run-command MODULE COMMAND [name=value...]), through the
// same loading, validation and runas path as a request over MQTT. params are
// the parameters as text ("42", "true"); output is streamed to stdout and
// stderr as it comes. It returns the command's exit code (128 + signal when
// it was killed) and an error when the command was refused, could not start,
// timed out or was cancelled through ctx. Problems of module files other
// than the one defining module are ignored (logged through env.Log).
//
// A command marked "confirm" runs only when confirm (called with the
// command's name, after its parameters passed their checks) returns nil; a
// nil confirm refuses such commands.
func RunLocal(ctx context.Context, env modules.Env, section []byte, sectionFile string, files []modules.File,
	module, command string, params map[string]string, confirm func(name string) error, stdout, stderr io.Writer) (exitCode int, err error) {
	m, probs := load(env, section, sectionFile, files)
	c := m.commands[module+"/"+command]
	if c == nil {
		var errs []error
		for _, p := range probs {
			errs = append(errs, p)
		}
		if !m.hasModule(module) {
			return -1, errors.Join(append([]error{fmt.Errorf("unknown module %q", module)}, errs...)...)
		}
		return -1, fmt.Errorf("unknown command %q in module %q", command, module)
	}
	for _, p := range probs {
		m.log.Warn("module problem", "problem", p.Error())
	}
	vals, err := c.bindStrings(params)
	if err != nil {
		return -1, err
	}
	if c.Confirm {
		if confirm == nil {
			return -1, fmt.Errorf("%s/%s asks for confirmation", module, command)
		}
		if err := confirm(c.Name); err != nil {
			return -1, err
		}
	}
	var mu sync.Mutex
	r := m.runCommand(ctx, c, vals, func(stream string, chunk []byte) {
		mu.Lock()
		defer mu.Unlock()
		w := stdout
		if stream == runas.Stderr {
			w = stderr
		}
		if w != nil {
			_, _ = w.Write(chunk)
		}
	})
	code := -1
	if r.ExitCode != nil {
		code = *r.ExitCode
	}
	if r.Status != contract.StatusDone {
		return code, fmt.Errorf("%s/%s: %s", module, command, r.Error)
	}
	return code, nil
}
