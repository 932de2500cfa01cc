package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// auditLog turns events into log lines and messages on the events topic
// (through the outbox's event lane). Refusals (busy, rejected) can come in
// floods from anyone with broker access, so they are rate-limited: per
// kind, module and requester, the first few in a window are logged and
// published in full, the rest are counted and summed up in one event at the
// end of the window ("1234 requests refused busy in 10s from requester X").
// Messages dropped by the outbox are counted and reported the same way.
// Attacker-controlled strings are cut to logStringLimit bytes.
type auditLog struct {
	log     *slog.Logger
	publish func(ev contract.Event) // queue on the events topic; never blocks

	window time.Duration
	burst  int

	mu      sync.Mutex
	counts  map[auditKey]*auditCount
	dropped map[string]int // "what: why" -> count
	timer   *time.Timer
	stopped bool
}

type auditKey struct{ kind, module, requester string }

type auditCount struct {
	n, suppressed int
	example       string
}

// maxAuditKeys bounds the per-requester counters (requester names are
// chosen by clients): beyond it, refusals are counted under "(others)".
const maxAuditKeys = 256

// eventWindow is the default window over which refusals are summed up.
const eventWindow = 10 * time.Second

func newAuditLog(log *slog.Logger, publish func(contract.Event), window time.Duration) *auditLog {
	if window <= 0 {
		window = eventWindow
	}
	return &auditLog{log: log, publish: publish, window: window, burst: 5,
		counts: map[auditKey]*auditCount{}, dropped: map[string]int{}}
}

// event logs ev and publishes it, or counts it when its kind is flooding.
func (a *auditLog) event(ev contract.Event) {
	if ev.TS.IsZero() {
		ev.TS = time.Now().UTC()
	}
	ev.Topic = clip(ev.Topic, logStringLimit)
	ev.Requester = clip(ev.Requester, logStringLimit)
	ev.Message = clip(ev.Message, 4*logStringLimit)
	if ev.Kind == contract.EventBusy || ev.Kind == contract.EventRejected {
		if !a.admit(ev) {
			return
		}
	}
	a.emit(ev)
}

func (a *auditLog) emit(ev contract.Event) {
	lvl := slog.LevelInfo
	if ev.Kind == contract.EventError || ev.Kind == contract.EventRejected || ev.Kind == contract.EventBusy {
		lvl = slog.LevelWarn
	}
	attrs := []any{"event", ev.Kind}
	for _, kv := range [][2]string{{"module", ev.Module}, {"topic", ev.Topic}, {"requester", ev.Requester}} {
		if kv[1] != "" {
			attrs = append(attrs, kv[0], kv[1])
		}
	}
	if len(ev.Fields) > 0 {
		attrs = append(attrs, "fields", ev.Fields)
	}
	a.log.Log(context.Background(), lvl, ev.Message, attrs...)
	a.publish(ev)
}

// admit counts a refusal and says whether it is logged and published in
// full.
func (a *auditLog) admit(ev contract.Event) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := auditKey{ev.Kind, ev.Module, ev.Requester}
	c := a.counts[k]
	if c == nil {
		if len(a.counts) >= maxAuditKeys {
			k.requester = "(others)"
			if c = a.counts[k]; c == nil {
				c = &auditCount{}
				a.counts[k] = c
			}
		} else {
			c = &auditCount{}
			a.counts[k] = c
		}
	}
	c.n++
	a.armLocked()
	if c.n <= a.burst {
		return true
	}
	c.suppressed++
	if c.example == "" {
		c.example = ev.Message
	}
	return false
}

// messageDropped counts a message the outbox could not send.
func (a *auditLog) messageDropped(what, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.dropped) < maxAuditKeys {
		a.dropped[what+": "+why]++
	}
	a.armLocked()
}

func (a *auditLog) armLocked() {
	if a.timer == nil && !a.stopped {
		a.timer = time.AfterFunc(a.window, a.flush)
	}
}

// flush ends a window: one summary per flooding key and per kind of drop.
func (a *auditLog) flush() {
	a.mu.Lock()
	counts, dropped := a.counts, a.dropped
	a.counts, a.dropped, a.timer = map[auditKey]*auditCount{}, map[string]int{}, nil
	window := a.window
	a.mu.Unlock()
	keys := make([]auditKey, 0, len(counts))
	for k, c := range counts {
		if c.suppressed > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	for _, k := range keys {
		c := counts[k]
		verb := "refused " + k.kind
		if k.kind == contract.EventRejected {
			verb = "rejected"
		}
		msg := fmt.Sprintf("%d requests %s in %s", c.n, verb, window)
		if k.requester != "" {
			msg += " from requester " + k.requester
		}
		if k.module != "" {
			msg += " (" + k.module + ")"
		}
		msg += "; " + fmt.Sprint(c.suppressed) + " of them not reported one by one; for example: " + c.example
		a.emit(contract.Event{TS: time.Now().UTC(), Kind: k.kind, Module: k.module, Requester: k.requester,
			Message: clip(msg, 4*logStringLimit), Fields: map[string]any{"count": c.n, "summarized": c.suppressed, "window_s": window.Seconds()}})
	}
	whys := make([]string, 0, len(dropped))
	for w := range dropped {
		whys = append(whys, w)
	}
	sort.Strings(whys)
	for _, w := range whys {
		a.emit(contract.Event{TS: time.Now().UTC(), Kind: contract.EventError,
			Message: fmt.Sprintf("%d messages not delivered in %s (%s)", dropped[w], window, w),
			Fields:  map[string]any{"count": dropped[w]}})
	}
}

// stop flushes what was counted (it is logged; the events may no longer
// reach the broker) and stops the timer.
func (a *auditLog) stop() {
	a.mu.Lock()
	a.stopped = true
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.mu.Unlock()
	a.flush()
}
