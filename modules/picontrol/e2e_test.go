package picontrol_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/picontrol"
)

// As in the daemon: the main goroutine keeps the main thread, so command
// threads can always be thrown away.
func init() { runtime.LockOSThread() }

const wait = 30 * time.Second

func requireRootE2E(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs commands as other users: needs root (CI runs tests as root)")
	}
}

// e2eModule returns a module file whose "mark" command appends to a file
// (so a test can tell whether it ran) and whose "block" command waits for a
// go-ahead file.
func e2eModule(dir string) string {
	return fmt.Sprintf(`{"id":"e2e","name":"E2E","commands":[
	 {"id":"out","name":"Out","argv":["/bin/sh","-c","echo out; echo err >&2; exit 3"],"user":"nobody"},
	 {"id":"mark","name":"Mark","argv":["/bin/sh","-c","echo ran >> \"$MARK\""],"user":"root","env":{"MARK":%q},"concurrency":"queue"},
	 {"id":"block","name":"Block","argv":["/bin/sh","-c","echo waiting; while [ ! -e \"$GO\" ]; do sleep 0.05; done"],"user":"root","env":{"GO":%q}},
	 {"id":"true","name":"True","argv":["/bin/echo","{i}"],"user":"nobody","concurrency":"queue",
	  "parameters":[{"name":"i","type":"integer"}]}
	]}`, filepath.Join(dir, "mark"), filepath.Join(dir, "go"))
}

type e2e struct {
	t   *testing.T
	a   *agenttest.Agent
	c   *brokertest.Client
	dir string
}

func startE2E(t *testing.T, section map[string]any) *e2e {
	t.Helper()
	requireRootE2E(t)
	dir := t.TempDir()
	b := brokertest.Mosquitto(t, brokertest.Options{})
	cfg := map[string]any{}
	if section != nil {
		cfg["picontrol"] = section
	}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{picontrol.Kind()}, Config: cfg,
		Files: map[string]string{"apps/com.test/picontrol/modules/e2e.json": e2eModule(dir)}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("reply/#"), a.Topic("events"), a.Topic("picontrol/#"))
	// The catalogue is there before any request.
	m := c.WaitFor(wait, "catalogue", brokertest.Topic(a.Topic(contract.TopicPiControlCommands)))
	agenttest.ValidateSchema(t, "picontrol-commands", m.Payload)
	return &e2e{t: t, a: a, c: c, dir: dir}
}

func (e *e2e) request(command, payload, corr string, o brokertest.PublishOptions) {
	e.t.Helper()
	o.QoS = 1
	if o.ResponseTopic == "" {
		o.ResponseTopic = e.a.Topic("reply/e2e")
	}
	o.Correlation = []byte(corr)
	if o.Requester == "" {
		o.Requester = "e2e-test"
	}
	e.c.Publish(e.a.Topic(contract.PiControlRunTopic("e2e", command)), []byte(payload), o)
}

// replies returns the decoded replies with correlation corr received so far.
func (e *e2e) replies(corr string) []contract.PiControlReply {
	var out []contract.PiControlReply
	for _, m := range e.c.Messages() {
		if m.Topic == e.a.Topic("reply/e2e") && string(m.Correlation) == corr {
			var r contract.PiControlReply
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				e.t.Fatalf("reply %q: %v", m.Payload, err)
			}
			out = append(out, r)
		}
	}
	return out
}

// final waits for the final reply of corr and returns every reply.
func (e *e2e) final(corr string) (contract.PiControlReply, []contract.PiControlReply) {
	e.t.Helper()
	e.c.WaitFor(wait, "final reply "+corr, func(m brokertest.Message) bool {
		if m.Topic != e.a.Topic("reply/e2e") || string(m.Correlation) != corr {
			return false
		}
		var r contract.Response
		return json.Unmarshal(m.Payload, &r) == nil && contract.IsFinal(r.Status)
	})
	rs := e.replies(corr)
	return rs[len(rs)-1], rs
}

func (e *e2e) markRuns() int {
	b, err := os.ReadFile(filepath.Join(e.dir, "mark"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Count(string(b), "ran\n")
}

func TestE2ERequestStreamsToDone(t *testing.T) {
	// reply_grace 0: accepted at once, then the output as it comes.
	e := startE2E(t, map[string]any{"reply_grace": "0s"})
	e.request("out", "", "corr-out", brokertest.PublishOptions{})
	f, rs := e.final("corr-out")
	if rs[0].Status != contract.StatusAccepted {
		t.Errorf("first reply %q, want accepted", rs[0].Status)
	}
	streams := map[string]string{}
	for i, r := range rs {
		if r.Seq != i {
			t.Errorf("reply %d has seq %d", i, r.Seq)
		}
		if r.Status == contract.StatusRunning {
			streams[r.Stream] += r.Data
		}
	}
	if streams["stdout"] != "out\n" || streams["stderr"] != "err\n" {
		t.Errorf("streamed %q", streams)
	}
	if f.Status != contract.StatusDone || f.ExitCode == nil || *f.ExitCode != 3 || f.Stdout != "out\n" || f.Stderr != "err\n" {
		t.Errorf("final %+v", f)
	}
	for _, m := range e.c.Messages() {
		if m.Topic == e.a.Topic("reply/e2e") {
			if m.ContentType != contract.ContentTypeJSON {
				t.Errorf("reply content type %q", m.ContentType)
			}
			agenttest.ValidateSchema(t, "picontrol-reply", m.Payload)
		}
	}
	res := e.c.WaitFor(wait, "retained result", brokertest.Topic(e.a.Topic("picontrol/result/e2e/out")))
	agenttest.ValidateSchema(t, "picontrol-reply", res.Payload)
	e.c.WaitFor(wait, "audit event", func(m brokertest.Message) bool {
		var ev contract.Event
		return m.Topic == e.a.Topic("events") && json.Unmarshal(m.Payload, &ev) == nil &&
			ev.Kind == contract.EventCommand && ev.Requester == "e2e-test" && ev.Fields["user"] == "nobody"
	})
}

// A command that ends within reply_grace gets one reply, the final one, and
// its result and audit event follow.
func TestE2EShortCommandOneReply(t *testing.T) {
	e := startE2E(t, map[string]any{"reply_grace": "1m"})
	e.request("out", "", "short", brokertest.PublishOptions{})
	f, rs := e.final("short")
	if len(rs) != 1 || f.Seq != 0 || f.Status != contract.StatusDone || *f.ExitCode != 3 || f.Stdout != "out\n" || f.Stderr != "err\n" {
		t.Errorf("replies %+v, want only the final done, seq 0, with the output", rs)
	}
	agenttest.ValidateSchema(t, "picontrol-reply", e.c.WaitFor(wait, "retained result",
		brokertest.Topic(e.a.Topic("picontrol/result/e2e/out"))).Payload)
	e.c.WaitFor(wait, "audit event", func(m brokertest.Message) bool {
		var ev contract.Event
		return m.Topic == e.a.Topic("events") && json.Unmarshal(m.Payload, &ev) == nil && ev.Kind == contract.EventCommand
	})
	// Nothing of the exchange came after the final reply.
	if n := len(e.replies("short")); n != 1 {
		t.Errorf("%d replies after the result and the event, want 1", n)
	}
}

func TestE2ERefusedRequestsNeverRun(t *testing.T) {
	e := startE2E(t, nil)
	e.c.Subscribe("elsewhere/#")

	// A response topic outside reply/: the agent refuses the request.
	e.request("mark", "", "outside", brokertest.PublishOptions{ResponseTopic: "elsewhere/inbox"})
	// A retained request (delivered with its retain flag): never run.
	e.request("mark", "{}", "retained", brokertest.PublishOptions{Retain: true})
	if f, _ := e.final("retained"); f.Status != contract.StatusRejected {
		t.Errorf("retained request: %+v", f)
	}
	// A barrier: requests are handled in order, so once this one is done the
	// refused ones have been handled.
	e.request("out", "", "barrier", brokertest.PublishOptions{})
	if f, _ := e.final("barrier"); f.Status != contract.StatusDone {
		t.Fatalf("barrier: %+v", f)
	}
	if n := e.markRuns(); n != 0 {
		t.Errorf("refused requests ran %d times", n)
	}
	e.c.WaitFor(wait, "refusal event", func(m brokertest.Message) bool {
		return m.Topic == e.a.Topic("events") && strings.Contains(string(m.Payload), "elsewhere/inbox")
	})
	for _, m := range e.c.Messages() {
		if m.Topic == "elsewhere/inbox" {
			t.Errorf("the agent published on a foreign response topic")
		}
	}
	// The same command does run when asked properly.
	e.request("mark", "", "proper", brokertest.PublishOptions{})
	if f, _ := e.final("proper"); f.Status != contract.StatusDone || e.markRuns() != 1 {
		t.Errorf("proper request: %+v, %d runs", f, e.markRuns())
	}
}

func TestE2EExpiredRequestNeverRuns(t *testing.T) {
	e := startE2E(t, map[string]any{"max_parallel": 1})
	e.request("block", "", "block", brokertest.PublishOptions{})
	// Running (not only accepted), so it holds the only slot.
	e.c.WaitFor(wait, "block running", func(m brokertest.Message) bool {
		return string(m.Correlation) == "block" && strings.Contains(string(m.Payload), `"status":"running"`)
	})
	// Waits behind "block" (max_parallel 1) longer than its expiry.
	e.request("mark", "", "expiring", brokertest.PublishOptions{Expiry: 1})
	acc := e.c.WaitFor(wait, "expiring accepted", func(m brokertest.Message) bool { return string(m.Correlation) == "expiring" })
	// The agent received the request before this client received its
	// answer, so its 1 s expiry has passed once 1 s has since gone by here
	// (same clock; a little more for the clock's granularity).
	time.Sleep(time.Until(acc.At.Add(time.Second + 20*time.Millisecond)))
	if err := os.WriteFile(filepath.Join(e.dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if f, _ := e.final("block"); f.Status != contract.StatusDone {
		t.Errorf("block: %+v", f)
	}
	f, _ := e.final("expiring")
	if f.Status != contract.StatusRejected || !strings.Contains(f.Error, "expired") {
		t.Errorf("expired request: %+v", f)
	}
	if n := e.markRuns(); n != 0 {
		t.Errorf("the expired request ran %d times", n)
	}
}

func TestE2EConcurrentRequestsEachOneFinal(t *testing.T) {
	e := startE2E(t, nil)
	// Far more than max_parallel (8): most wait in the queue, all at once.
	const n = 100
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- e.c.TryPublish(e.a.Topic(contract.PiControlRunTopic("e2e", "true")), []byte(fmt.Sprintf(`{"i":%d}`, i)),
				brokertest.PublishOptions{QoS: 1, ResponseTopic: e.a.Topic("reply/e2e"), Correlation: []byte(strconv.Itoa(i))})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	finals := map[string]int{}
	statuses := map[string]int{}
	count := func() int {
		clear(finals)
		clear(statuses)
		for _, m := range e.c.Messages() {
			var r contract.PiControlReply
			if m.Topic == e.a.Topic("reply/e2e") && json.Unmarshal(m.Payload, &r) == nil && contract.IsFinal(r.Status) {
				finals[string(m.Correlation)]++
				statuses[r.Status]++
				if r.Status == contract.StatusDone && r.Stdout != string(m.Correlation)+"\n" {
					t.Errorf("request %s got output %q", m.Correlation, r.Stdout)
				}
			}
		}
		return len(finals)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for count() < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// Late duplicates would show up after the last one arrived.
	time.Sleep(200 * time.Millisecond)
	count()
	for i := range n {
		if c := finals[strconv.Itoa(i)]; c != 1 {
			t.Errorf("request %d got %d final replies", i, c)
		}
	}
	t.Logf("final statuses: %v", statuses)
}

func TestE2EReloadRepublishesAndRuns(t *testing.T) {
	e := startE2E(t, nil)
	e.c.Reset()
	e.a.Reload()
	// A client that sees the new catalogue can run its commands at once.
	e.c.WaitFor(wait, "catalogue after reload", brokertest.Topic(e.a.Topic(contract.TopicPiControlCommands)))
	e.request("out", "", "after-reload", brokertest.PublishOptions{})
	if f, _ := e.final("after-reload"); f.Status != contract.StatusDone || *f.ExitCode != 3 {
		t.Errorf("after reload: %+v", f)
	}
}
