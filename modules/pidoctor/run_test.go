package pidoctor

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// gate is a prober for the parallelism test: each check records its own
// start and end, and holds its slot until every slot is taken (or no more
// checks can start), so a runner that allowed more than its bound would be
// seen doing so.
type gate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	bound   int
	total   int
	running int
	started int
	ended   int
	maxSeen int
	events  []string
}

func newGate(bound, total int) *gate {
	g := &gate{bound: bound, total: total}
	g.cond = sync.NewCond(&g.mu)
	return g
}

type gatedCheck struct {
	g  *gate
	id int
}

func (c *gatedCheck) probe(ctx context.Context, _ *runEnv) observation {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running++
	g.started++
	g.maxSeen = max(g.maxSeen, g.running)
	g.events = append(g.events, fmt.Sprintf("start %d", c.id))
	g.cond.Broadcast()
	// Hold the slot until the pool is full: all slots busy, or every check
	// that is left already started.
	for g.running < min(g.bound, g.total-g.ended) && g.running <= g.bound && ctx.Err() == nil {
		g.cond.Wait()
	}
	// The pool is full. Give a runner that admits too many the chance to
	// start more: its goroutines are runnable, not blocked, so yielding the
	// processor lets them run (no sleep, no timing).
	g.mu.Unlock()
	for range 200 {
		runtime.Gosched()
	}
	g.mu.Lock()
	g.running--
	g.ended++
	g.events = append(g.events, fmt.Sprintf("end %d", c.id))
	g.cond.Broadcast()
	return observation{value: f64(float64(c.id)), output: "ran"}
}

// TestRunBound: 10 checks with a bound of 4 never have more than 4 running at
// once, use all 4, and all 10 run.
func TestRunBound(t *testing.T) {
	const total, bound = 10, 4
	g := newGate(bound, total)
	var checks []*check
	for i := range total {
		c := decodeOne(t, fmt.Sprintf(`{"id":"c%d","name":"C%d","builtin":"memory_pressure"}`, i, i))
		c.Module = "m"
		c.probe = &gatedCheck{g: g, id: i}
		checks = append(checks, c)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a failsafe against a deadlock, not a timing assertion
	defer cancel()
	go func() {
		<-ctx.Done()
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	}()
	results := newRunner(bound, &host{root: t.TempDir()}, time.Now).run(ctx, checks)
	if ctx.Err() != nil {
		t.Fatalf("the run did not finish: %v", g.events)
	}
	if g.maxSeen > bound {
		t.Errorf("%d checks ran at once, bound %d: %v", g.maxSeen, bound, g.events)
	}
	if g.maxSeen < bound {
		t.Errorf("at most %d checks ran at once: the bound of %d was not used", g.maxSeen, bound)
	}
	if g.started != total || g.ended != total {
		t.Errorf("%d started, %d ended, want %d", g.started, g.ended, total)
	}
	for i, r := range results {
		if r.ID != fmt.Sprintf("c%d", i) || r.Verdict != verdictOK || r.Value != float64(i) {
			t.Errorf("result %d: %+v", i, r)
		}
	}
}

// TestRunCancelled: checks waiting for a slot when the run is cancelled are
// reported as error without running.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := decodeOne(t, `{"id":"c","name":"C","builtin":"memory_available"}`)
	r := newRunner(1, &host{root: t.TempDir()}, time.Now)
	r.sem <- struct{}{} // the only slot is taken
	res := r.run(ctx, []*check{c})[0]
	if res.Verdict != verdictError {
		t.Errorf("cancelled check: %+v", res)
	}
}
