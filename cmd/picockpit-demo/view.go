package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// maxShown bounds the events and results the view keeps.
const maxShown = 5

// view is the demo's compact picture of one device, built from what its
// topics say: status, a one-line stats summary, pin states, the last
// command results and events. Safe for concurrent use.
type view struct {
	root contract.Root

	mu          sync.Mutex
	status      string
	statusSince time.Time
	stats       *contract.Stats
	statsAt     time.Time
	pins        map[string]contract.GPIOState
	pinNames    map[string]string
	results     []string // newest last
	events      []string // newest last
	changed     chan struct{}
}

func newView(root contract.Root) *view {
	return &view{root: root, status: "unknown", pins: map[string]contract.GPIOState{},
		pinNames: map[string]string{}, changed: make(chan struct{}, 1)}
}

// Changed is signalled (coalesced) after every update.
func (v *view) Changed() <-chan struct{} { return v.changed }

// Status returns the last status seen.
func (v *view) Status() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.status
}

func push(list []string, s string) []string {
	list = append(list, s)
	if len(list) > maxShown {
		list = list[len(list)-maxShown:]
	}
	return list
}

// Update takes one message of the device's tree.
func (v *view) Update(topic string, payload []byte) {
	rel, ok := v.root.Rel(topic)
	if !ok {
		return
	}
	v.mu.Lock()
	defer func() {
		v.mu.Unlock()
		select {
		case v.changed <- struct{}{}:
		default:
		}
	}()
	now := time.Now()
	switch {
	case rel == contract.TopicStatus:
		if string(payload) != v.status {
			v.status, v.statusSince = string(payload), now
		}
	case rel == contract.TopicStats:
		var st contract.Stats
		if json.Unmarshal(payload, &st) == nil {
			v.stats, v.statsAt = &st, now
		}
	case rel == contract.TopicGPIOPins:
		var pins contract.GPIOPins
		if json.Unmarshal(payload, &pins) == nil {
			for _, p := range pins.Pins {
				v.pinNames[p.Pin] = p.Name
			}
		}
	case strings.HasPrefix(rel, "gpio/") && strings.HasSuffix(rel, "/state"):
		var st contract.GPIOState
		if json.Unmarshal(payload, &st) == nil && len(payload) > 0 {
			v.pins[st.Pin] = st
		}
	case strings.HasPrefix(rel, "picontrol/result/"):
		var r contract.PiControlReply
		if json.Unmarshal(payload, &r) == nil && len(payload) > 0 {
			v.results = push(v.results, fmt.Sprintf("%s %-28s %s", r.TS.Local().Format("15:04:05"),
				strings.TrimPrefix(rel, "picontrol/result/"), describeResult(r)))
		}
	case rel == contract.TopicEvents:
		var ev contract.Event
		if json.Unmarshal(payload, &ev) == nil {
			v.events = push(v.events, fmt.Sprintf("%s %-10s %s", ev.TS.Local().Format("15:04:05"), ev.Kind, oneLine(ev.Message, 90)))
		}
	}
}

func describeResult(r contract.PiControlReply) string {
	s := r.Status
	if r.ExitCode != nil {
		s += fmt.Sprintf(" exit %d", *r.ExitCode)
	}
	if r.Error != "" {
		s += ": " + oneLine(r.Error, 60)
	}
	if out := strings.TrimSpace(r.Stdout); out != "" {
		s += "  " + oneLine(out, 50)
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-1] + "…"
	}
	return s
}

// Render writes the whole view; banner stays below it.
func (v *view) Render(w io.Writer, banner string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	since := ""
	if !v.statusSince.IsZero() {
		since = " since " + v.statusSince.Format("15:04:05")
	}
	fmt.Fprintf(&b, "device %s   status: %s%s\n\n", v.root.Base(), v.status, since)
	fmt.Fprintf(&b, "stats   %s\n", v.statsLine())
	fmt.Fprintf(&b, "pins    %s\n\n", v.pinsLine())
	b.WriteString("last command results (picontrol/result/#)\n")
	writeList(&b, v.results)
	b.WriteString("last events (events)\n")
	writeList(&b, v.events)
	b.WriteString("\n" + banner)
	io.WriteString(w, b.String())
}

func writeList(b *strings.Builder, list []string) {
	if len(list) == 0 {
		b.WriteString("  (none yet)\n")
	}
	for _, s := range list {
		b.WriteString("  " + s + "\n")
	}
}

func (v *view) statsLine() string {
	st := v.stats
	if st == nil {
		return "(waiting for the first sample)"
	}
	var parts []string
	add := func(format string, a ...any) { parts = append(parts, fmt.Sprintf(format, a...)) }
	if st.CPU != nil {
		add("cpu %.0f%%", st.CPU.Percent)
	} else {
		add("cpu n/a")
	}
	if st.Temperature != nil {
		add("%.1f°C", st.Temperature.SoCCelsius)
	}
	if st.Memory != nil {
		add("mem %.0f%%", st.Memory.UsedPercent)
	}
	if st.Load != nil {
		add("load %.2f", st.Load.Load1)
	}
	if st.Uptime != nil {
		add("up %s", (time.Duration(st.Uptime.Seconds) * time.Second).String())
	}
	for _, n := range st.Net {
		if n.Interface == "eth0" && n.RxBytesPerSecond != nil && n.TxBytesPerSecond != nil {
			add("eth0 rx %.0f kB/s tx %.0f kB/s", *n.RxBytesPerSecond/1e3, *n.TxBytesPerSecond/1e3)
		}
	}
	for _, w := range st.WiFi {
		add("%s %.0f dBm", w.Interface, w.SignalDBm)
	}
	if st.Throttle != nil && st.Throttle.Now.UnderVoltage != nil {
		if *st.Throttle.Now.UnderVoltage {
			add("UNDER-VOLTAGE")
		} else {
			add("power ok")
		}
	}
	add("#%d, %ds ago", st.Seq, int(time.Since(v.statsAt).Seconds()))
	return strings.Join(parts, "  ")
}

func (v *view) pinsLine() string {
	if len(v.pins) == 0 {
		return "(none yet)"
	}
	ids := make([]string, 0, len(v.pins))
	for id := range v.pins {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var parts []string
	for _, id := range ids {
		st := v.pins[id]
		s := fmt.Sprintf("%s %s %s=%d", id, v.pinNames[id], st.Mode, st.Value)
		if st.PWM != nil && st.Mode == contract.GPIOModePWM {
			s = fmt.Sprintf("%s %s pwm %.0fHz %.0f%%", id, v.pinNames[id], st.PWM.Frequency, st.PWM.Duty*100)
		}
		if st.Error != "" {
			s += " (" + oneLine(st.Error, 30) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}
