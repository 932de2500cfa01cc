package contract

import (
	"strings"
	"time"
)

// PiDoctor topics relative to the device root.
const (
	// TopicPiDoctorChecks carries the retained catalogue (PiDoctorCatalogue).
	TopicPiDoctorChecks = "pidoctor/checks"
	// TopicPiDoctorReport carries the retained report of the latest run
	// (PiDoctorReport).
	TopicPiDoctorReport = "pidoctor/report"
	// TopicPiDoctorRun asks for a run of every check; the final reply carries
	// the report.
	TopicPiDoctorRun = "pidoctor/run"
	// TopicPiDoctorRunFilter is what the agent subscribes to for requests of
	// one check: pidoctor/run/{module}/{check}.
	TopicPiDoctorRunFilter = "pidoctor/run/+/+"
	// TopicPiDoctorRunPrefix starts every single-check request topic.
	TopicPiDoctorRunPrefix = "pidoctor/run/"
)

// PiDoctorRunTopic returns the relative request topic of one check.
func PiDoctorRunTopic(module, check string) string {
	return TopicPiDoctorRunPrefix + module + "/" + check
}

// ParsePiDoctorRunTopic splits pidoctor/run/{module}/{check}; ok is false
// for anything else (including pidoctor/run itself).
func ParsePiDoctorRunTopic(topic string) (module, check string, ok bool) {
	rest, found := strings.CutPrefix(topic, TopicPiDoctorRunPrefix)
	if !found {
		return "", "", false
	}
	module, check, found = strings.Cut(rest, "/")
	if !found || module == "" || check == "" || strings.Contains(check, "/") {
		return "", "", false
	}
	return module, check, true
}

// Verdicts of a check, from best to worst. Error means the check could not
// run or measure (tool or file missing, timeout, no number in the output):
// nothing is known, which is not the same as a failure.
const (
	VerdictOK    = "ok"
	VerdictWarn  = "warn"
	VerdictError = "error"
	VerdictFail  = "fail"
)

// Verdicts lists the verdicts from best to worst (the order of
// PiDoctorSummary.Worst).
var Verdicts = []string{VerdictOK, VerdictWarn, VerdictError, VerdictFail}

// VerdictRank orders verdicts: ok 0, warn 1, error 2, fail 3; -1 for an
// unknown string.
func VerdictRank(v string) int {
	for i, w := range Verdicts {
		if w == v {
			return i
		}
	}
	return -1
}

// EventVerdict is the event kind published when a check's verdict changes
// between two runs.
const EventVerdict = "verdict"

// PiDoctorCatalogue is the retained payload on TopicPiDoctorChecks: what a
// frontend needs to list checks and offer a run button. It never contains a
// command line, user or environment.
type PiDoctorCatalogue struct {
	Contract int              `json:"contract"`
	Modules  []PiDoctorModule `json:"modules"`
	// IntervalS is the period of the automatic run in seconds; 0 when off.
	IntervalS float64   `json:"interval_s"`
	TS        time.Time `json:"ts"`
}

// PiDoctorModule is one module file of the catalogue.
type PiDoctorModule struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Checks      []PiDoctorCheck `json:"checks"`
}

// Kinds of check in PiDoctorCheck.Kind.
const (
	PiDoctorKindBuiltin  = "builtin"
	PiDoctorKindExternal = "external"
)

// PiDoctorCheck is one check of the catalogue.
type PiDoctorCheck struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Category    string `json:"category"`
	// Kind is PiDoctorKindBuiltin or PiDoctorKindExternal.
	Kind string `json:"kind"`
	// Builtin names the built-in check, for Kind builtin.
	Builtin string `json:"builtin,omitempty"`
	// Topic is the relative request topic, pidoctor/run/{module}/{check}.
	Topic string `json:"topic"`
}

// PiDoctorSummary sums up a report.
type PiDoctorSummary struct {
	// Worst is the worst verdict of all checks (ok when there are none), in
	// the order ok < warn < error < fail.
	Worst string `json:"worst"`
	// Counts has every verdict as a key, 0 included.
	Counts map[string]int `json:"counts"`
}

// PiDoctorResult is the outcome of one check.
type PiDoctorResult struct {
	Module   string `json:"module"`
	ID       string `json:"id"`
	Name     string `json:"name"`
	Category string `json:"category"`
	Verdict  string `json:"verdict"`
	// Value is what was measured: a number, a string (the text a match rule
	// matched) or null when nothing was measured.
	Value any `json:"value"`
	// Message says what was found, with the value.
	Message string `json:"message"`
	// Remedy says what to do; "" when there is nothing to do.
	Remedy     string `json:"remedy"`
	DurationMS int64  `json:"duration_ms"`
	// TS is when the check finished.
	TS time.Time `json:"ts"`
}

// PiDoctorReport is the retained payload on TopicPiDoctorReport and the
// report in the final reply to TopicPiDoctorRun.
type PiDoctorReport struct {
	Contract int `json:"contract"`
	// TS is when the run finished.
	TS         time.Time        `json:"ts"`
	DurationMS int64            `json:"duration_ms"`
	Summary    PiDoctorSummary  `json:"summary"`
	Checks     []PiDoctorResult `json:"checks"`
}

// Summarize returns the summary of results.
func Summarize(results []PiDoctorResult) PiDoctorSummary {
	s := PiDoctorSummary{Worst: VerdictOK, Counts: map[string]int{}}
	for _, v := range Verdicts {
		s.Counts[v] = 0
	}
	for _, r := range results {
		s.Counts[r.Verdict]++
		if VerdictRank(r.Verdict) > VerdictRank(s.Worst) {
			s.Worst = r.Verdict
		}
	}
	return s
}

// PiDoctorReply is the payload of every reply of a PiDoctor exchange:
// accepted, then one final done (with Report for pidoctor/run, with Check
// for pidoctor/run/{module}/{check}) or rejected.
type PiDoctorReply struct {
	Response
	// Module and Check name the check of a single-check request.
	Module string `json:"module,omitempty"`
	Check  string `json:"check,omitempty"`
	// Seq numbers the messages of one exchange from 0.
	Seq    int             `json:"seq"`
	Report *PiDoctorReport `json:"report,omitempty"`
	Result *PiDoctorResult `json:"result,omitempty"`
}
