package pidoctor

import (
	"context"
	"sync"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules/picontrol"
)

// externalProbe runs a command through PiControl's runner.
type externalProbe struct {
	cmd *picontrol.Command
}

func (p *externalProbe) probe(ctx context.Context, _ *runEnv) observation {
	r := p.cmd.Run(ctx)
	if r.Status != contract.StatusDone || r.ExitCode == nil {
		why := r.Error
		if why == "" {
			why = "the command did not finish"
		}
		return observation{err: why}
	}
	return observation{hasExit: true, exitCode: *r.ExitCode, stdout: r.Stdout, stderr: r.Stderr}
}

// runner runs checks with a bound on how many run at once. One runner is
// shared by every run of a module, so requests and the periodic run together
// stay within the bound.
type runner struct {
	sem  chan struct{}
	host *host
	now  func() time.Time
}

func newRunner(maxParallel int, h *host, now func() time.Time) *runner {
	return &runner{sem: make(chan struct{}, maxParallel), host: h, now: now}
}

// run runs checks, at most cap(sem) at a time, and returns their results in
// the order of checks. A check still waiting when ctx ends is reported as
// error without running.
func (r *runner) run(ctx context.Context, checks []*check) []contract.PiDoctorResult {
	env := &runEnv{host: r.host}
	for _, c := range checks {
		if b, ok := c.probe.(*builtinProbe); ok && b.name == BuiltinDiskFree {
			env.mounts = append(env.mounts, b.opts.Mount)
		}
	}
	out := make([]contract.PiDoctorResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case r.sem <- struct{}{}:
			case <-ctx.Done():
				out[i] = r.result(c, c.evaluate(observation{err: "cancelled before it ran"}), 0)
				return
			}
			defer func() { <-r.sem }()
			start := r.now()
			obs := c.probe.probe(ctx, env)
			out[i] = r.result(c, c.evaluate(obs), r.now().Sub(start))
		}()
	}
	wg.Wait()
	return out
}

func (r *runner) result(c *check, o outcome, d time.Duration) contract.PiDoctorResult {
	return contract.PiDoctorResult{Module: c.Module, ID: c.ID, Name: c.Name, Category: c.Category,
		Verdict: o.verdict, Value: o.value, Message: o.message, Remedy: o.remedy,
		DurationMS: d.Milliseconds(), TS: r.now().UTC().Round(time.Millisecond)}
}

// report runs every check and builds the report.
func (r *runner) report(ctx context.Context, checks []*check) contract.PiDoctorReport {
	start := r.now()
	results := r.run(ctx, checks)
	end := r.now()
	return contract.PiDoctorReport{Contract: contract.Version, TS: end.UTC().Round(time.Millisecond),
		DurationMS: end.Sub(start).Milliseconds(), Summary: contract.Summarize(results), Checks: results}
}
