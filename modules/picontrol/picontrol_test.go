package picontrol

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/agent/runas"
	"github.com/picockpit/picockpit-client/agent/runas/runastest"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

const replyBase = "picockpit/dev1/reply/"

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs commands as other users: needs root (CI runs tests as root)")
	}
}

// fakeRun stands in for runas.Run: it records what would have been executed.
type fakeRun struct {
	mu    sync.Mutex
	specs []runas.Spec
	// gate, if set, holds every run until a value is received or ctx ends.
	gate    chan struct{}
	started chan string // receives argv[1] (or "") of every started run, if set
	// output is written through OnOutput when the run starts.
	output []chunkOut
	res    runas.Result
}

type chunkOut struct{ stream, data string }

func (f *fakeRun) run(ctx context.Context, s runas.Spec) (runas.Result, error) {
	f.mu.Lock()
	f.specs = append(f.specs, s)
	f.mu.Unlock()
	if f.started != nil {
		arg := ""
		if len(s.Args) > 1 {
			arg = s.Args[1]
		}
		f.started <- arg
	}
	for _, o := range f.output {
		if s.OnOutput != nil {
			s.OnOutput(o.stream, []byte(o.data))
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return runas.Result{Reason: runas.ReasonCanceled, Signal: "SIGTERM", ExitCode: 143}, nil
		}
	}
	return f.res, nil
}

func (f *fakeRun) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.specs)
}

// harness is a started module on an in-memory bus.
type harness struct {
	t   *testing.T
	m   *Module
	bus *bustest.Bus
}

// start loads the files, replaces the runner with fake (when not nil) and
// starts the module on a new bus.
func start(t *testing.T, section string, fake *fakeRun, files ...modules.File) *harness {
	t.Helper()
	m, probs := load(testEnv(), []byte(section), "config.json", files)
	if len(probs) > 0 {
		t.Fatalf("load: %v", probs)
	}
	if fake != nil {
		m.run = fake.run
	}
	bus := bustest.New()
	if err := m.Start(context.Background(), bus); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, m: m, bus: bus}
	t.Cleanup(func() {
		_ = m.Close()
		bus.Close()
	})
	return h
}

// waitRetained waits until topic was published retained and returns the
// retained message (the result may follow the final reply).
func (h *harness) waitRetained(topic string) (bustest.Message, bool) {
	h.bus.WaitFor(30*time.Second, func(msgs []bustest.Message) bool {
		for _, m := range msgs {
			if m.Topic == topic && m.Opts.Retain {
				return true
			}
		}
		return false
	})
	return h.bus.Retained(topic)
}

func request(topic, payload, corr string) *modules.Request {
	return &modules.Request{Topic: topic, Payload: []byte(payload), ResponseTopic: replyBase + "t",
		CorrelationData: []byte(corr), Requester: "tester"}
}

func (h *harness) inject(req *modules.Request) {
	h.t.Helper()
	if !h.bus.Inject(req) {
		h.t.Fatalf("inject %s: no subscription or queue full", req.Topic)
	}
}

func decodeReplies(t testing.TB, msgs []bustest.Message, corr string) []contract.PiControlReply {
	var out []contract.PiControlReply
	for _, m := range msgs {
		if !m.Reply || string(m.Correlation) != corr {
			continue
		}
		var r contract.PiControlReply
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Errorf("reply %q is not JSON: %v", m.Payload, err)
			continue
		}
		out = append(out, r)
	}
	return out
}

// eventually polls cond until it holds, failing the test after a minute.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after a minute", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func hasFinal(rs []contract.PiControlReply) bool {
	for _, r := range rs {
		if contract.IsFinal(r.Status) {
			return true
		}
	}
	return false
}

// exchange waits for the final reply with correlation corr and returns every
// reply of the exchange.
func (h *harness) exchange(corr string) []contract.PiControlReply {
	h.t.Helper()
	ok := h.bus.WaitFor(30*time.Second, func(msgs []bustest.Message) bool {
		return hasFinal(decodeReplies(h.t, msgs, corr))
	})
	if !ok {
		h.t.Fatalf("no final reply for %q; replies so far: %+v", corr, decodeReplies(h.t, h.bus.Messages(), corr))
	}
	return decodeReplies(h.t, h.bus.Messages(), corr)
}

func final(t testing.TB, rs []contract.PiControlReply) contract.PiControlReply {
	t.Helper()
	var finals []contract.PiControlReply
	for _, r := range rs {
		if contract.IsFinal(r.Status) {
			finals = append(finals, r)
		}
	}
	if len(finals) != 1 {
		t.Fatalf("%d final replies, want exactly 1: %+v", len(finals), rs)
	}
	if last := rs[len(rs)-1]; !contract.IsFinal(last.Status) {
		t.Fatalf("the final reply is not the last one: %+v", rs)
	}
	return finals[0]
}

const streamModule = `{"id":"m","name":"M","commands":[
 {"id":"out","name":"Out","argv":["/bin/sh","-c","echo out; echo err >&2; exit 3"],"user":"nobody"},
 {"id":"echo","name":"Echo","argv":["/bin/sh","-c","printf '%s|' \"$@\"; printf '%s' \"$PICONTROL_GREETING\"","sh","{text}","{n}"],"user":"nobody",
  "parameters":[{"name":"text","type":"string","pattern":".*"},{"name":"n","type":"integer","default":7},
                {"name":"greeting","type":"string","enum":["hi","ho"],"env":"PICONTROL_GREETING"}]},
 {"id":"group","name":"Group","argv":["/bin/sh","-c","echo $$; sleep 100 & sleep 100"],"user":"nobody","timeout":"1h"}
]}`

func TestRequestStreamsAndFinishes(t *testing.T) {
	requireRoot(t)
	// reply_grace 0: accepted at once, then the output as it comes.
	h := start(t, `{"reply_grace":"0s"}`, nil, mfile("m.json", streamModule))
	h.inject(request("picontrol/run/m/out", "", "corr-1"))
	rs := h.exchange("corr-1")

	if rs[0].Status != contract.StatusAccepted {
		t.Errorf("first reply %q, want accepted", rs[0].Status)
	}
	streams := map[string]string{}
	for i, r := range rs {
		if r.Seq != i {
			t.Errorf("reply %d has seq %d", i, r.Seq)
		}
		if r.Topic != "picontrol/run/m/out" || r.Module != "m" || r.Command != "out" || r.TS.IsZero() {
			t.Errorf("reply %d: topic %q module %q command %q ts %v", i, r.Topic, r.Module, r.Command, r.TS)
		}
		if r.Status == contract.StatusRunning {
			streams[r.Stream] += r.Data
		}
	}
	if diff := cmp.Diff(map[string]string{"stdout": "out\n", "stderr": "err\n"}, streams); diff != "" {
		t.Errorf("streamed output (-want +got):\n%s", diff)
	}
	checkOutFinal(t, h, final(t, rs))
}

// A command that ends within reply_grace: one reply, the final one.
func TestRequestWithinGraceOneReply(t *testing.T) {
	requireRoot(t)
	h := start(t, `{"reply_grace":"1m"}`, nil, mfile("m.json", streamModule))
	h.inject(request("picontrol/run/m/out", "", "corr-1"))
	rs := h.exchange("corr-1")
	if len(rs) != 1 || rs[0].Seq != 0 {
		t.Errorf("replies %+v, want only the final one, seq 0", rs)
	}
	checkOutFinal(t, h, final(t, rs))
}

// checkOutFinal checks the final reply, retained result and audit of m/out.
func checkOutFinal(t *testing.T, h *harness, f contract.PiControlReply) {
	t.Helper()
	if f.Status != contract.StatusDone || f.ExitCode == nil || *f.ExitCode != 3 || f.Stdout != "out\n" ||
		f.Stderr != "err\n" || f.DurationMS == nil || f.Truncated || f.Error != "" {
		t.Errorf("final reply %+v", f)
	}
	// The result and the audit follow the final reply.
	eventually(t, "retained result and audit", func() bool {
		_, ok := h.bus.Retained("picontrol/result/m/out")
		return ok && len(h.bus.Events()) > 0
	})
	for _, m := range h.bus.Messages() {
		if m.Reply && (m.Topic != replyBase+"t" || string(m.Correlation) != "corr-1" || m.Opts.QoS != 1) {
			t.Errorf("reply on %q correlation %q qos %d", m.Topic, m.Correlation, m.Opts.QoS)
		}
	}
	res, ok := h.waitRetained("picontrol/result/m/out")
	if !ok || res.Opts.QoS != 1 {
		t.Fatalf("no retained QoS 1 result: %+v", res)
	}
	var rr contract.PiControlReply
	if err := json.Unmarshal(res.Payload, &rr); err != nil || rr.Status != contract.StatusDone || *rr.ExitCode != 3 {
		t.Errorf("retained result %s", res.Payload)
	}
	audited := h.bus.WaitEvents(30*time.Second, func(evs []contract.Event) bool {
		for _, ev := range evs {
			if ev.Kind == contract.EventCommand && ev.Fields["user"] == "nobody" && ev.Fields["exit_code"] == 3 &&
				ev.Requester == "tester" && ev.Fields["module"] == "m" && ev.Fields["command"] == "out" {
				if _, ok := ev.Fields["duration_ms"]; ok {
					return true
				}
			}
		}
		return false
	})
	if !audited {
		t.Errorf("no audit event for the run: %+v", h.bus.Events())
	}
}

func TestParametersReachArgvLiterally(t *testing.T) {
	requireRoot(t)
	h := start(t, "", nil, mfile("m.json", streamModule))
	h.inject(request("picontrol/run/m/echo", `{"text":"$(id); rm -rf / `+"`id`"+`","greeting":"ho"}`, "p"))
	f := final(t, h.exchange("p"))
	if want := "$(id); rm -rf / `id`|7|ho"; f.Status != contract.StatusDone || f.Stdout != want {
		t.Errorf("final %+v, want stdout %q", f, want)
	}
}

const paramModule = `{"id":"svc","name":"Services","commands":[
 {"id":"restart","name":"Restart","argv":["/bin/echo","{name}","{mode}","{n}"],"user":"nobody",
  "parameters":[
   {"name":"name","type":"string","pattern":"[a-z0-9-]{1,32}","required":true},
   {"name":"mode","type":"string","enum":["fast","slow"]},
   {"name":"n","type":"integer","min":1,"max":10},
   {"name":"flag","type":"boolean","env":"PICONTROL_FLAG"}]},
 {"id":"plain","name":"Plain","argv":["/bin/true"],"user":"nobody"}
]}`

func TestRefusedRequestsNeverRun(t *testing.T) {
	for _, tc := range []struct {
		name, topic, payload string
		param, err           string
	}{
		{"semicolon", "svc/restart", `{"name":"; rm -rf /"}`, "name", "does not match"},
		{"command substitution", "svc/restart", `{"name":"$(id)"}`, "name", "does not match"},
		{"backticks", "svc/restart", "{\"name\":\"`id`\"}", "name", "does not match"},
		{"newline", "svc/restart", `{"name":"a\nreboot"}`, "name", "control character"},
		{"NUL", "svc/restart", `{"name":"a\u0000b"}`, "name", "control character"},
		{"enum injection", "svc/restart", `{"name":"x","mode":"fast; reboot"}`, "mode", "not one of"},
		{"too big", "svc/restart", `{"name":"x","n":11}`, "n", "greater than the maximum"},
		{"too small", "svc/restart", `{"name":"x","n":0}`, "n", "less than the minimum"},
		{"fraction", "svc/restart", `{"name":"x","n":1.5}`, "n", "not an integer"},
		{"integer as string", "svc/restart", `{"name":"x","n":"3"}`, "n", "want a JSON integer"},
		{"huge integer", "svc/restart", `{"name":"x","n":99999999999999999999}`, "n", "not an integer"},
		{"boolean as string", "svc/restart", `{"name":"x","flag":"yes"}`, "flag", "want true or false"},
		{"name as number", "svc/restart", `{"name":5}`, "name", "want a JSON string"},
		{"unknown parameter", "svc/restart", `{"name":"x","bogus":1}`, "bogus", "unknown parameter"},
		{"parameter for none", "svc/plain", `{"x":1}`, "x", "takes none"},
		{"missing required", "svc/restart", `{}`, "name", "required"},
		{"duplicate", "svc/restart", `{"name":"a","name":"b"}`, "name", "given twice"},
		{"array", "svc/restart", `["x"]`, "", "JSON object"},
		{"string payload", "svc/restart", `"x"`, "", "JSON object"},
		{"null", "svc/restart", `null`, "", "JSON object"},
		{"plain text", "svc/restart", `restart please`, "", "JSON object"},
		{"trailing data", "svc/restart", `{"name":"a"} {}`, "", "after the JSON object"},
		{"broken JSON", "svc/restart", `{"name":`, "", "not valid JSON"},
		{"invalid UTF-8", "svc/restart", "{\"name\":\"\xff\"}", "", "UTF-8"},
		{"unknown module", "nope/restart", ``, "", `unknown module "nope"`},
		{"unknown command", "svc/nope", ``, "", `unknown command "nope" in module "svc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeRun{}
			h := start(t, "", fake, mfile("svc.json", paramModule))
			h.inject(request("picontrol/run/"+tc.topic, tc.payload, "c"))
			f := final(t, h.exchange("c"))
			h.bus.Close() // drains the subscription: nothing more can start
			if f.Status != contract.StatusRejected || f.Parameter != tc.param || !strings.Contains(f.Error, tc.err) {
				t.Errorf("final %+v; want rejected, parameter %q, error containing %q", f, tc.param, tc.err)
			}
			if n := fake.count(); n != 0 {
				t.Errorf("a refused request reached exec %d times: %+v", n, fake.specs)
			}
			if _, ok := h.bus.Retained("picontrol/result/" + tc.topic); ok {
				t.Errorf("a refusal was retained as the command's result")
			}
			var audited bool
			for _, ev := range h.bus.Events() {
				audited = audited || (ev.Kind == contract.EventRejected && ev.Requester == "tester" && ev.Fields["error"] == f.Error)
			}
			if !audited {
				t.Errorf("refusal not audited: %+v", h.bus.Events())
			}
		})
	}
}

func TestValidRequestBuildsArgvAndEnv(t *testing.T) {
	for _, tc := range []struct {
		payload string
		argv    []string
		env     []string
	}{
		{`{"name":"web-1"}`, []string{"/bin/echo", "web-1"}, nil},
		{`{"name":"web-1","mode":"slow","n":10,"flag":false}`, []string{"/bin/echo", "web-1", "slow", "10"}, []string{"PICONTROL_FLAG=false"}},
		{` {"flag":true, "name":"a"} `, []string{"/bin/echo", "a"}, []string{"PICONTROL_FLAG=true"}},
	} {
		fake := &fakeRun{}
		h := start(t, "", fake, mfile("svc.json", paramModule))
		h.inject(request("picontrol/run/svc/restart", tc.payload, "c"))
		f := final(t, h.exchange("c"))
		if f.Status != contract.StatusDone || fake.count() != 1 {
			t.Fatalf("%s: final %+v, %d runs", tc.payload, f, fake.count())
		}
		s := fake.specs[0]
		if diff := cmp.Diff(tc.argv, s.Args); diff != "" {
			t.Errorf("%s: argv (-want +got):\n%s", tc.payload, diff)
		}
		if diff := cmp.Diff(tc.env, s.Env); diff != "" {
			t.Errorf("%s: env (-want +got):\n%s", tc.payload, diff)
		}
		if s.Path != "/bin/echo" || s.User.Name != "nobody" || !s.NoNewPrivs || !s.LimitCapabilities || s.Timeout != DefaultTimeout {
			t.Errorf("%s: spec %+v", tc.payload, s)
		}
	}
}

func TestExpiredRequestsNeverRun(t *testing.T) {
	fake := &fakeRun{gate: make(chan struct{}), started: make(chan string, 4)}
	h := start(t, `{"max_parallel":1}`, fake, mfile("svc.json", paramModule))
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h.m.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	// Expired before it is handled.
	old := request("picontrol/run/svc/plain", "", "old")
	old.Expires = now.Add(-time.Second)
	h.inject(old)
	if f := final(t, h.exchange("old")); f.Status != contract.StatusRejected || !strings.Contains(f.Error, "expired") {
		t.Errorf("expired request: %+v", f)
	}

	// Expires while it waits behind another command (max_parallel 1).
	h.inject(request("picontrol/run/svc/restart", `{"name":"first"}`, "first"))
	<-fake.started
	waiting := request("picontrol/run/svc/plain", "", "waiting")
	waiting.Expires = now.Add(10 * time.Second)
	h.inject(waiting)
	h.bus.WaitFor(10*time.Second, func(msgs []bustest.Message) bool { return len(decodeReplies(t, msgs, "waiting")) > 0 })
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	fake.gate <- struct{}{}
	if f := final(t, h.exchange("waiting")); f.Status != contract.StatusRejected || !strings.Contains(f.Error, "expired while waiting") {
		t.Errorf("request that expired in the queue: %+v", f)
	}
	if f := final(t, h.exchange("first")); f.Status != contract.StatusDone {
		t.Errorf("first: %+v", f)
	}
	if n := fake.count(); n != 1 {
		t.Errorf("%d runs, want only the first", n)
	}
}

func TestConcurrencyRejectAndQueue(t *testing.T) {
	mod := `{"id":"c","name":"C","commands":[
	 {"id":"once","name":"Once","argv":["/bin/echo","{k}"],"user":"nobody","parameters":[{"name":"k","type":"integer"}]},
	 {"id":"queued","name":"Queued","argv":["/bin/echo","{k}"],"user":"nobody","concurrency":"queue","parameters":[{"name":"k","type":"integer"}]}]}`
	fake := &fakeRun{gate: make(chan struct{}), started: make(chan string, 8)}
	h := start(t, "", fake, mfile("c.json", mod))

	h.inject(request("picontrol/run/c/once", `{"k":1}`, "once-1"))
	<-fake.started
	h.inject(request("picontrol/run/c/once", `{"k":2}`, "once-2"))
	if f := final(t, h.exchange("once-2")); f.Status != contract.StatusRejected || !strings.Contains(f.Error, "already running") {
		t.Errorf("second run of a reject command: %+v", f)
	}

	h.inject(request("picontrol/run/c/queued", `{"k":1}`, "q-1"))
	if got := <-fake.started; got != "1" {
		t.Fatalf("started %q", got)
	}
	h.inject(request("picontrol/run/c/queued", `{"k":2}`, "q-2"))
	h.bus.WaitFor(10*time.Second, func(msgs []bustest.Message) bool { return len(decodeReplies(t, msgs, "q-2")) > 0 })
	if rs := decodeReplies(t, h.bus.Messages(), "q-2"); rs[0].Status != contract.StatusAccepted || fake.count() != 2 {
		t.Fatalf("queued request: %+v, %d runs", rs, fake.count())
	}
	fake.gate <- struct{}{} // one of once-1 and q-1 ends
	fake.gate <- struct{}{} // the other
	if got := <-fake.started; got != "2" {
		t.Fatalf("started %q, want the queued second run", got)
	}
	fake.gate <- struct{}{}
	for _, corr := range []string{"once-1", "q-1", "q-2"} {
		if f := final(t, h.exchange(corr)); f.Status != contract.StatusDone {
			t.Errorf("%s: %+v", corr, f)
		}
	}
}

// checkOneFinalEach fails unless every correlation got exactly one final
// reply, after an accepted one or as a rejection.
func checkOneFinalEach(t *testing.T, bus *bustest.Bus, corrs []string) map[string]int {
	t.Helper()
	byCorr := map[string][]contract.PiControlReply{}
	for _, m := range bus.Messages() {
		if m.Reply {
			var r contract.PiControlReply
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				t.Fatal(err)
			}
			byCorr[string(m.Correlation)] = append(byCorr[string(m.Correlation)], r)
		}
	}
	statuses := map[string]int{}
	for _, c := range corrs {
		f := final(t, byCorr[c])
		statuses[f.Status]++
	}
	if len(byCorr) != len(corrs) {
		t.Errorf("replies for %d correlations, want %d", len(byCorr), len(corrs))
	}
	return statuses
}

func TestConcurrentRequestsEachGetOneFinal(t *testing.T) {
	requireRoot(t)
	mod := `{"id":"c","name":"C","commands":[
	 {"id":"q","name":"Q","argv":["/bin/true"],"user":"nobody","concurrency":"queue"},
	 {"id":"r","name":"R","argv":["/bin/true"],"user":"nobody"},
	 {"id":"p","name":"P","argv":["/bin/echo","{i}"],"user":"nobody","concurrency":"queue","parameters":[{"name":"i","type":"integer"}]}]}`
	h := start(t, "", nil, mfile("c.json", mod))
	var corrs []string
	topics := []string{"picontrol/run/c/q", "picontrol/run/c/r", "picontrol/run/c/p"}
	for i := range 200 {
		corr := "c-" + strconv.Itoa(i)
		corrs = append(corrs, corr)
		payload := ""
		if i%3 == 2 {
			payload = fmt.Sprintf(`{"i":%d}`, i)
		}
		h.inject(request(topics[i%3], payload, corr))
	}
	ok := h.bus.WaitFor(2*time.Minute, func(msgs []bustest.Message) bool {
		n := 0
		for _, m := range msgs {
			var r contract.PiControlReply
			if m.Reply && json.Unmarshal(m.Payload, &r) == nil && contract.IsFinal(r.Status) {
				n++
			}
		}
		return n >= 200
	})
	if !ok {
		t.Fatal("not every request got a final reply")
	}
	_ = h.m.Close()
	h.bus.Close()
	st := checkOneFinalEach(t, h.bus, corrs)
	if st[contract.StatusFailed] != 0 || st[contract.StatusDone] < 134 {
		t.Errorf("final statuses %v: want every queued command done", st)
	}
	// Each "p" request echoed its own number.
	for _, m := range h.bus.Messages() {
		var r contract.PiControlReply
		_ = json.Unmarshal(m.Payload, &r)
		if m.Reply && r.Command == "p" && r.Status == contract.StatusDone {
			want := strings.TrimPrefix(string(m.Correlation), "c-") + "\n"
			if r.Stdout != want {
				t.Errorf("%s: stdout %q, want %q", m.Correlation, r.Stdout, want)
			}
		}
	}
}

func TestQueueLimitRejects(t *testing.T) {
	fake := &fakeRun{gate: make(chan struct{})}
	mod := `{"id":"c","name":"C","commands":[{"id":"q","name":"Q","argv":["/bin/true"],"user":"nobody","concurrency":"queue"}]}`
	h := start(t, `{"max_parallel":2,"max_queue":3}`, fake, mfile("c.json", mod))
	var corrs []string
	for i := range 10 {
		corrs = append(corrs, strconv.Itoa(i))
		h.inject(request("picontrol/run/c/q", "", corrs[i]))
	}
	// 5 fit (2 running + 3 waiting); the other 5 are rejected at once.
	h.bus.WaitFor(10*time.Second, func(msgs []bustest.Message) bool {
		n := 0
		for _, c := range corrs {
			if len(decodeReplies(t, msgs, c)) > 0 {
				n++
			}
		}
		return n == 10
	})
	for range 5 {
		fake.gate <- struct{}{}
	}
	for _, c := range corrs {
		h.exchange(c)
	}
	st := checkOneFinalEach(t, h.bus, corrs)
	if diff := cmp.Diff(map[string]int{contract.StatusDone: 5, contract.StatusRejected: 5}, st); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func TestCloseKillsRunningCommands(t *testing.T) {
	requireRoot(t)
	h := start(t, `{"kill_grace":"2s"}`, nil, mfile("m.json", streamModule))
	h.inject(request("picontrol/run/m/group", "", "g"))
	var pgid int
	h.bus.WaitFor(30*time.Second, func(msgs []bustest.Message) bool {
		for _, r := range decodeReplies(t, msgs, "g") {
			if r.Stream == "stdout" {
				pgid, _ = strconv.Atoi(strings.TrimSpace(r.Data))
			}
		}
		return pgid > 0
	})
	if pgid <= 0 {
		t.Fatal("the command did not report its pid")
	}
	if len(runastest.GroupMembers(pgid)) == 0 {
		t.Fatalf("process group %d is not running", pgid)
	}
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	f := final(t, h.exchange("g"))
	if f.Status != contract.StatusFailed || !strings.Contains(f.Error, "shut down") {
		t.Errorf("final %+v", f)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(runastest.GroupMembers(pgid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d survived Close: %v", pgid, runastest.GroupMembers(pgid))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A request after Close is refused, never run.
	h.m.handle(context.Background(), request("picontrol/run/m/out", "", "late"))
	if f := final(t, h.exchange("late")); f.Status != contract.StatusRejected || !strings.Contains(f.Error, "shutting down") {
		t.Errorf("request after Close: %+v", f)
	}
}

func TestSecondInstanceAfterClose(t *testing.T) {
	bus := bustest.New()
	defer bus.Close()
	fake := &fakeRun{}
	var catalogues int
	for i := range 2 {
		m, probs := load(testEnv(), nil, "", []modules.File{mfile("svc.json", paramModule)})
		if len(probs) > 0 {
			t.Fatal(probs)
		}
		m.run = fake.run
		if err := m.Start(context.Background(), bus); err != nil {
			t.Fatal(err)
		}
		catalogues = 0
		for _, msg := range bus.Messages() {
			if msg.Topic == contract.TopicPiControlCommands && msg.Opts.Retain && msg.Opts.QoS == 1 {
				catalogues++
			}
		}
		if catalogues != i+1 {
			t.Errorf("instance %d: %d retained catalogue publishes, want %d", i, catalogues, i+1)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// bustest keeps both subscriptions; the first matching one is the closed
	// instance, which refuses. The real agent drops a closed module's
	// subscriptions; here, call the second instance directly.
	m, _ := load(testEnv(), nil, "", []modules.File{mfile("svc.json", paramModule)})
	m.run = fake.run
	bus2 := bustest.New()
	defer bus2.Close()
	if err := m.Start(context.Background(), bus2); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bus2.Inject(request("picontrol/run/svc/plain", "", "after-reload"))
	h := &harness{t: t, m: m, bus: bus2}
	if f := final(t, h.exchange("after-reload")); f.Status != contract.StatusDone {
		t.Errorf("after reload: %+v", f)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestCatalogueGolden(t *testing.T) {
	paths, err := filepath.Glob("testdata/modules/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatal("no testdata modules")
	}
	files := readFiles(t, paths)
	m, probs := load(testEnv(), nil, "", files)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	m.now = func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }
	bus := bustest.New()
	defer bus.Close()
	if err := m.Start(context.Background(), bus); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	msg, ok := bus.Retained(contract.TopicPiControlCommands)
	if !ok || msg.Opts.QoS != 1 {
		t.Fatalf("no retained QoS 1 catalogue: %+v", msg)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, msg.Payload, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	golden := filepath.Join("testdata", "catalogue.golden.json")
	if *update {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), pretty.String()); diff != "" {
		t.Errorf("catalogue (-golden +got):\n%s", diff)
	}
	// Never the command line, user or environment.
	for _, secret := range []string{"/bin/", "/usr/", "nobody", "root", "SECRET_TOKEN", "argv", "user"} {
		if bytes.Contains(msg.Payload, []byte(secret)) {
			t.Errorf("catalogue contains %q", secret)
		}
	}
}

func TestRunLocal(t *testing.T) {
	requireRoot(t)
	files := []modules.File{mfile("m.json", streamModule)}
	var out, errOut bytes.Buffer
	code, err := RunLocal(context.Background(), testEnv(), nil, "", files, "m", "echo",
		map[string]string{"text": "a b", "n": "42", "greeting": "hi"}, nil, &out, &errOut)
	if err != nil || code != 0 || out.String() != "a b|42|hi" {
		t.Errorf("RunLocal = %d, %v, stdout %q", code, err, out.String())
	}
	out.Reset()
	code, err = RunLocal(context.Background(), testEnv(), nil, "", files, "m", "out", nil, nil, &out, &errOut)
	if err != nil || code != 3 || out.String() != "out\n" {
		t.Errorf("RunLocal(out) = %d, %v, stdout %q", code, err, out.String())
	}

	for _, tc := range []struct {
		module, command string
		params          map[string]string
		err             string
	}{
		{"m", "echo", map[string]string{"text": "x", "n": "seven"}, "not an integer"},
		{"m", "echo", map[string]string{"text": "x", "greeting": "hey; reboot"}, "not one of"},
		{"m", "echo", map[string]string{"text": "x\nid"}, "control character"},
		{"m", "echo", map[string]string{"bogus": "1"}, "unknown parameter"},
		{"x", "echo", nil, `unknown module "x"`},
		{"m", "x", nil, `unknown command "x"`},
	} {
		out.Reset()
		code, err := RunLocal(context.Background(), testEnv(), nil, "", files, tc.module, tc.command, tc.params, nil, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.err) || code != -1 || out.Len() != 0 {
			t.Errorf("RunLocal(%s/%s %v) = %d, %v, output %q; want refusal containing %q", tc.module, tc.command, tc.params, code, err, out.String(), tc.err)
		}
	}
}

func TestCommandsSortedAndExported(t *testing.T) {
	m, _ := load(testEnv(), nil, "", []modules.File{mfile("b.json", paramModule), mfile("a.json", streamModule)})
	if got := m.Commands(); !slices.IsSorted(got) || len(got) != 5 {
		t.Errorf("Commands() = %v", got)
	}
	k := Kind()
	if k.Name != "picontrol" || k.Load == nil {
		t.Errorf("Kind() = %+v", k)
	}
}

func TestSplitUTF8(t *testing.T) {
	for _, tc := range []struct{ in, complete, rest string }{
		{"abc", "abc", ""},
		{"ab\xc3", "ab", "\xc3"},
		{"ab\xc3\xa4", "ab\xc3\xa4", ""},
		{"\xe2\x82", "", "\xe2\x82"},
		{"x\xf0\x9f\x98", "x", "\xf0\x9f\x98"},
		{"x\xff", "x\xff", ""},
		{"", "", ""},
	} {
		c, r := splitUTF8([]byte(tc.in))
		if string(c) != tc.complete || string(r) != tc.rest {
			t.Errorf("splitUTF8(%q) = %q, %q; want %q, %q", tc.in, c, r, tc.complete, tc.rest)
		}
	}
}

// BenchmarkRequestTrue is one request for /bin/true as nobody through the
// module on the in-memory bus: validation, runas, replies (no MQTT).
func BenchmarkRequestTrue(b *testing.B) {
	requireRoot(b)
	mod := `{"id":"b","name":"B","commands":[{"id":"t","name":"T","argv":["/bin/true"],"user":"nobody","concurrency":"queue"}]}`
	m, probs := load(testEnv(), nil, "", []modules.File{mfile("b.json", mod)})
	if len(probs) > 0 {
		b.Fatal(probs)
	}
	bus := bustest.New()
	if err := m.Start(context.Background(), bus); err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	defer m.Close()
	i := 0
	for b.Loop() {
		i++
		corr := strconv.Itoa(i)
		bus.Inject(request("picontrol/run/b/t", "", corr))
		ok := bus.WaitFor(time.Minute, func(msgs []bustest.Message) bool {
			for j := len(msgs) - 1; j >= 0 && j >= len(msgs)-3; j-- {
				if m := msgs[j]; m.Reply && string(m.Correlation) == corr && bytes.Contains(m.Payload, []byte(`"status":"done"`)) {
					return true
				}
			}
			return false
		})
		if !ok {
			b.Fatal("no done reply")
		}
	}
}
