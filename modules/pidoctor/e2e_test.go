package pidoctor_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/pidoctor"
)

const wait = 30 * time.Second

// copyTree copies the fixture tree src to a new temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

type e2e struct {
	t    *testing.T
	a    *agenttest.Agent
	c    *brokertest.Client
	url  string
	root string
}

func startE2E(t *testing.T, section map[string]any) *e2e {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	root := copyTree(t, "testdata/hosts/healthy")
	module := fmt.Sprintf(`{"id":"e2e","name":"E2E","checks":[
	  {"id":"under-voltage","name":"Power supply","category":"power","builtin":"throttling","remedy":"use a better supply"},
	  {"id":"temperature","name":"SoC temperature","category":"thermal","builtin":"soc_temperature"},
	  {"id":"echo","name":"Echo","category":"system","argv":["/bin/echo","answer 42"],"user":%q,
	   "rule":{"number":{"warn_above":40,"fail_above":100}},"message":"the answer is {value}","remedy":"ask again"}
	]}`, me.Username)
	b := brokertest.Mosquitto(t, brokertest.Options{})
	cfg := map[string]any{"host": map[string]any{"root": root}}
	if section != nil {
		cfg["pidoctor"] = section
	}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pidoctor.Kind()}, Config: cfg,
		Files: map[string]string{"apps/com.test/pidoctor/modules/e2e.json": module}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("reply/#"), a.Topic("events"), a.Topic("pidoctor/#"))
	m := c.WaitFor(wait, "catalogue", brokertest.Topic(a.Topic(contract.TopicPiDoctorChecks)))
	agenttest.ValidateSchema(t, "pidoctor-checks", m.Payload)
	return &e2e{t: t, a: a, c: c, url: b.URL, root: root}
}

func (e *e2e) request(rel, payload, corr string) {
	e.c.Publish(e.a.Topic(rel), []byte(payload), brokertest.PublishOptions{QoS: 1, ResponseTopic: e.a.Topic("reply/doc"),
		Correlation: []byte(corr), Requester: "e2e-test"})
}

// final waits for the final reply of corr, validates every reply of it and
// returns the final one.
func (e *e2e) final(corr string) contract.PiDoctorReply {
	e.t.Helper()
	isFinal := func(m brokertest.Message) bool {
		var r contract.Response
		return m.Topic == e.a.Topic("reply/doc") && string(m.Correlation) == corr &&
			json.Unmarshal(m.Payload, &r) == nil && contract.IsFinal(r.Status)
	}
	e.c.WaitFor(wait, "final reply "+corr, isFinal)
	var last contract.PiDoctorReply
	n := 0
	for _, m := range e.c.Messages() {
		if m.Topic != e.a.Topic("reply/doc") || string(m.Correlation) != corr {
			continue
		}
		agenttest.ValidateSchema(e.t, "pidoctor-reply", m.Payload)
		if err := json.Unmarshal(m.Payload, &last); err != nil {
			e.t.Fatal(err)
		}
		if last.Seq != n {
			e.t.Errorf("reply %d of %s has seq %d", n, corr, last.Seq)
		}
		n++
	}
	return last
}

func byID(rep *contract.PiDoctorReport) map[string]contract.PiDoctorResult {
	out := map[string]contract.PiDoctorResult{}
	for _, r := range rep.Checks {
		out[r.Module+"/"+r.ID] = r
	}
	return out
}

// TestE2ERunPublishesReport: a full run through a real Mosquitto answers
// with the report and retains it; both validate against the schema. A
// single-check run after the power supply failed answers with that check,
// updates the retained report and publishes a verdict change event.
func TestE2ERunPublishesReport(t *testing.T) {
	e := startE2E(t, map[string]any{"max_parallel": 2})
	e.request(contract.TopicPiDoctorRun, "", "full")
	f := e.final("full")
	if f.Status != contract.StatusDone || f.Report == nil {
		t.Fatalf("final reply %+v", f)
	}
	got := byID(f.Report)
	if r := got["e2e/echo"]; r.Verdict != "warn" || r.Value != 42.0 || r.Message != "the answer is 42" || r.Remedy != "ask again" {
		t.Errorf("echo: %+v", r)
	}
	if r := got["e2e/under-voltage"]; r.Verdict != "ok" || r.Remedy != "" {
		t.Errorf("under-voltage: %+v", r)
	}
	if s := f.Report.Summary; s.Worst != "warn" || s.Counts["ok"] != 2 || s.Counts["warn"] != 1 {
		t.Errorf("summary %+v", s)
	}
	rep := e.c.WaitFor(wait, "retained report", brokertest.Topic(e.a.Topic(contract.TopicPiDoctorReport)))
	agenttest.ValidateSchema(t, "pidoctor-report", rep.Payload)
	// Retained: a late subscriber gets it.
	late := brokertest.Connect(t, e.url, brokertest.ClientOptions{})
	late.Subscribe(e.a.Topic(contract.TopicPiDoctorReport))
	if m := late.WaitFor(wait, "report for a late subscriber", brokertest.Topic(e.a.Topic(contract.TopicPiDoctorReport))); !m.Retain {
		t.Error("the report is not retained")
	}

	// The supply fails: one check, then the event and the updated report.
	thr := filepath.Join(e.root, "sys/devices/platform/soc/soc:firmware/get_throttled")
	if err := os.WriteFile(thr, []byte("50005\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.c.Reset()
	e.request(contract.PiDoctorRunTopic("e2e", "under-voltage"), "{}", "one")
	one := e.final("one")
	if one.Status != contract.StatusDone || one.Result == nil || one.Result.Verdict != "fail" ||
		one.Result.Remedy != "use a better supply" || !strings.Contains(one.Result.Message, "under-voltage now") {
		t.Fatalf("single check reply %+v (result %+v)", one, one.Result)
	}
	ev := e.c.WaitFor(wait, "verdict event", func(m brokertest.Message) bool {
		return m.Topic == e.a.Topic("events") && strings.Contains(string(m.Payload), `"kind":"verdict"`)
	})
	agenttest.ValidateSchema(t, "event", ev.Payload)
	var event contract.Event
	if err := json.Unmarshal(ev.Payload, &event); err != nil || event.Message != "Power supply: ok -> fail" {
		t.Errorf("event %s", ev.Payload)
	}
	m := e.c.WaitFor(wait, "updated report", func(m brokertest.Message) bool {
		return m.Topic == e.a.Topic(contract.TopicPiDoctorReport) && strings.Contains(string(m.Payload), `"worst":"fail"`)
	})
	agenttest.ValidateSchema(t, "pidoctor-report", m.Payload)

	// Refusals: unknown check, parameters.
	e.request(contract.PiDoctorRunTopic("e2e", "nope"), "", "unknown")
	if r := e.final("unknown"); r.Status != contract.StatusRejected || !strings.Contains(r.Error, "unknown check") {
		t.Errorf("unknown check: %+v", r)
	}
	e.request(contract.TopicPiDoctorRun, `{"fast":true}`, "params")
	if r := e.final("params"); r.Status != contract.StatusRejected || !strings.Contains(r.Error, "no parameters") {
		t.Errorf("parameters: %+v", r)
	}
}

// TestE2EPeriodicRun: with pidoctor.interval set the agent runs the checks
// by itself and retains the report, no request needed.
func TestE2EPeriodicRun(t *testing.T) {
	e := startE2E(t, map[string]any{"interval": "1h"})
	m := e.c.WaitFor(wait, "report of the periodic run", brokertest.Topic(e.a.Topic(contract.TopicPiDoctorReport)))
	agenttest.ValidateSchema(t, "pidoctor-report", m.Payload)
	var rep contract.PiDoctorReport
	if err := json.Unmarshal(m.Payload, &rep); err != nil || len(rep.Checks) != 3 {
		t.Errorf("report %s", m.Payload)
	}
	var cat contract.PiDoctorCatalogue
	cm := e.c.WaitFor(wait, "catalogue", brokertest.Topic(e.a.Topic(contract.TopicPiDoctorChecks)))
	if err := json.Unmarshal(cm.Payload, &cat); err != nil || cat.IntervalS != 3600 {
		t.Errorf("catalogue %s", cm.Payload)
	}
}

// TestE2EConcurrentRunsJoin: a second pidoctor/run while a full run is in
// progress joins it: both get the same report and the check ran once.
func TestE2EConcurrentRunsJoin(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mark, goFile := filepath.Join(dir, "mark"), filepath.Join(dir, "go")
	module := fmt.Sprintf(`{"id":"slow","name":"Slow","checks":[
	  {"id":"wait","name":"Wait","command":"echo ran >> \"$MARK\"; while [ ! -e \"$GO\" ]; do sleep 0.05; done; echo 1","shell":true,
	   "user":%q,"env":{"MARK":%q,"GO":%q},"rule":{"number":{"warn_above":5}}}]}`, me.Username, mark, goFile)
	b := brokertest.Mosquitto(t, brokertest.Options{})
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pidoctor.Kind()},
		Config: map[string]any{"host": map[string]any{"root": copyTree(t, "testdata/hosts/healthy")}},
		Files:  map[string]string{"apps/com.test/pidoctor/modules/slow.json": module}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("reply/#"), a.Topic("pidoctor/#"))
	c.WaitFor(wait, "catalogue", brokertest.Topic(a.Topic(contract.TopicPiDoctorChecks)))
	e := &e2e{t: t, a: a, c: c, url: b.URL}
	e.request(contract.TopicPiDoctorRun, "", "first")
	// The check is running (it wrote its mark) and waits for the go-ahead.
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(mark); len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the check never started")
		}
	}
	e.request(contract.TopicPiDoctorRun, "{}", "second")
	c.WaitFor(wait, "second accepted", func(m brokertest.Message) bool {
		return string(m.Correlation) == "second" && strings.Contains(string(m.Payload), `"status":"accepted"`)
	})
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	first, second := e.final("first"), e.final("second")
	if first.Report == nil || second.Report == nil || !first.Report.TS.Equal(second.Report.TS) {
		t.Fatalf("the two requests got different reports: %+v / %+v", first.Report, second.Report)
	}
	if got, _ := os.ReadFile(mark); string(got) != "ran\n" {
		t.Errorf("the check ran %d times", strings.Count(string(got), "ran"))
	}
}

// TestE2EParallelExternalChecks: external checks run at once (up to
// max_parallel): four checks that each wait for the others to start all
// finish, so a full run takes the longest check, not the sum.
func TestE2EParallelExternalChecks(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var checks []string
	for i := range 4 {
		// Each marks its start, then waits until all four have started.
		checks = append(checks, fmt.Sprintf(`{"id":"c%d","name":"C%d","command":"touch \"$DIR/started-%d\"; while [ \"$(ls \"$DIR\" | wc -l)\" -lt 4 ]; do sleep 0.05; done; echo 0","shell":true,
		  "user":%q,"env":{"DIR":%q},"timeout":"60s","rule":{"number":{"warn_above":5}}}`, i, i, i, me.Username, dir))
	}
	module := `{"id":"par","name":"Par","checks":[` + strings.Join(checks, ",") + `]}`
	b := brokertest.Mosquitto(t, brokertest.Options{})
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pidoctor.Kind()},
		Config: map[string]any{"pidoctor": map[string]any{"max_parallel": 4}, "host": map[string]any{"root": copyTree(t, "testdata/hosts/healthy")}},
		Files:  map[string]string{"apps/com.test/pidoctor/modules/par.json": module}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("reply/#"))
	e := &e2e{t: t, a: a, c: c, url: b.URL}
	e.request(contract.TopicPiDoctorRun, "", "par")
	f := e.final("par")
	if f.Report == nil || f.Report.Summary.Counts["ok"] != 4 {
		t.Fatalf("report %+v", f.Report)
	}
}
