package picontrol

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

// awaitFinal waits for the final reply of corr, looking only at the newest
// messages (the check runs on every message, so scanning all would be
// quadratic over a long run).
func awaitFinal(t testing.TB, bus *bustest.Bus, corr string) contract.PiControlReply {
	t.Helper()
	var f contract.PiControlReply
	seen := 0
	ok := bus.WaitFor(time.Minute, func(msgs []bustest.Message) bool {
		for ; seen < len(msgs); seen++ {
			m := msgs[seen]
			if !m.Reply || string(m.Correlation) != corr {
				continue
			}
			var r contract.PiControlReply
			if json.Unmarshal(m.Payload, &r) == nil && contract.IsFinal(r.Status) {
				f = r
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no final reply for %q", corr)
	}
	return f
}

// A requester that sends its next request as soon as it has the final reply
// of the previous one must never hear "already running" from a "reject"
// command: the slot is free before the final reply goes out.
func TestBackToBackRejectCommandAllRun(t *testing.T) {
	fake := &fakeRun{}
	mod := `{"id":"c","name":"C","commands":[{"id":"once","name":"Once","argv":["/bin/true"],"user":"nobody"}]}`
	h := start(t, "", fake, mfile("c.json", mod))
	const n = 1000
	statuses := map[string]int{}
	for i := range n {
		corr := "b2b-" + strconv.Itoa(i)
		h.inject(request("picontrol/run/c/once", "", corr))
		f := awaitFinal(t, h.bus, corr)
		statuses[f.Status]++
		if f.Status != contract.StatusDone {
			t.Errorf("request %d: %s %q", i, f.Status, f.Error)
		}
	}
	if fake.count() != n || statuses[contract.StatusDone] != n {
		t.Errorf("%d runs, final statuses %v; want all %d done", fake.count(), statuses, n)
	}
}

// orderBus records, in one sequence, the replies, publishes and events of a
// module, and can hold the retained results and the events (a slow broker)
// to show that they do not hold up the next request.
type orderBus struct {
	*bustest.Bus
	log  chan string
	hold chan struct{} // when not nil, result publishes and events wait for it
}

func (b *orderBus) Publish(ctx context.Context, topic string, payload []byte, opts modules.PublishOptions) error {
	if opts.Retain && topic != contract.TopicPiControlCommands {
		b.log <- "result " + topic
		if b.hold != nil {
			<-b.hold
		}
	}
	return b.Bus.Publish(ctx, topic, payload, opts)
}

func (b *orderBus) Reply(ctx context.Context, req *modules.Request, payload []byte) error {
	var r contract.Response
	_ = json.Unmarshal(payload, &r)
	b.log <- "reply " + r.Status + " " + string(req.CorrelationData)
	return b.Bus.Reply(ctx, req, payload)
}

func (b *orderBus) Event(ev contract.Event) {
	b.log <- "event " + ev.Kind
	if b.hold != nil {
		<-b.hold
	}
	b.Bus.Event(ev)
}

func startOrder(t *testing.T, section string, fake *fakeRun, hold bool, files ...modules.File) (*Module, *orderBus) {
	t.Helper()
	m, probs := load(testEnv(), []byte(section), "config.json", files)
	if len(probs) > 0 {
		t.Fatalf("load: %v", probs)
	}
	m.run = fake.run
	bus := &orderBus{Bus: bustest.New(), log: make(chan string, 64)}
	if hold {
		bus.hold = make(chan struct{})
	}
	if err := m.Start(context.Background(), bus); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if bus.hold != nil {
			close(bus.hold)
		}
		_ = m.Close()
		bus.Close()
	})
	return m, bus
}

func next(t *testing.T, log chan string) string {
	t.Helper()
	select {
	case s := <-log:
		return s
	case <-time.After(time.Minute):
		t.Fatal("nothing more was sent")
		return ""
	}
}

// The retained result and the audit event of a run go out after its final
// reply, and a broker slow to take them does not hold up the next request,
// even to the same "reject" command.
func TestResultAndEventAfterFinalReply(t *testing.T) {
	fake := &fakeRun{}
	mod := `{"id":"c","name":"C","commands":[{"id":"once","name":"Once","argv":["/bin/true"],"user":"nobody"}]}`
	_, bus := startOrder(t, "", fake, true, mfile("c.json", mod))
	bus.Inject(request("picontrol/run/c/once", "", "1"))
	for _, want := range []string{"reply done 1", "result picontrol/result/c/once"} {
		if got := next(t, bus.log); got != want {
			t.Fatalf("sent %q, want %q", got, want)
		}
	}
	// The result publish of request 1 is held: request 2 still runs and is
	// answered.
	bus.Inject(request("picontrol/run/c/once", "", "2"))
	if got := next(t, bus.log); got != "reply done 2" {
		t.Fatalf("sent %q while the first result was held, want the second final reply", got)
	}
	// Once result 1 is out, its event and result 2 go out in either order.
	bus.hold <- struct{}{} // result 1
	got := []string{next(t, bus.log), next(t, bus.log)}
	slices.Sort(got)
	if want := []string{"event command", "result picontrol/result/c/once"}; !slices.Equal(got, want) {
		t.Fatalf("after result 1: %q, want %q", got, want)
	}
	bus.hold <- struct{}{}
	bus.hold <- struct{}{}
	if got := next(t, bus.log); got != "event command" {
		t.Fatalf("last: %q, want the audit event of request 2", got)
	}
}

// A command that ends within reply_grace gets one reply: the final one,
// with seq 0 and the whole output. No accepted, no running chunks.
func TestShortCommandGetsOneReply(t *testing.T) {
	fake := &fakeRun{output: []chunkOut{{"stdout", "out\n"}, {"stderr", "err\n"}}}
	fake.res.ExitCode = 3
	fake.res.Stdout, fake.res.Stderr = []byte("out\n"), []byte("err\n")
	h := start(t, `{"reply_grace":"1m"}`, fake, mfile("svc.json", paramModule))
	h.inject(request("picontrol/run/svc/plain", "", "short"))
	f := awaitFinal(t, h.bus, "short")
	h.bus.Close()
	rs := decodeReplies(t, h.bus.Messages(), "short")
	if len(rs) != 1 {
		t.Fatalf("%d replies, want only the final one: %+v", len(rs), rs)
	}
	if f.Status != contract.StatusDone || f.Seq != 0 || *f.ExitCode != 3 || f.Stdout != "out\n" || f.Stderr != "err\n" {
		t.Errorf("final %+v", f)
	}
}

// A command still running when reply_grace passes gets accepted (seq 0),
// then the output so far and everything after as running chunks, then the
// final reply.
func TestLongCommandStreams(t *testing.T) {
	fake := &fakeRun{gate: make(chan struct{}), output: []chunkOut{{"stdout", "early\n"}}}
	h := start(t, `{"reply_grace":"10ms"}`, fake, mfile("svc.json", paramModule))
	h.inject(request("picontrol/run/svc/plain", "", "long"))
	h.bus.WaitFor(time.Minute, func(msgs []bustest.Message) bool {
		return len(decodeReplies(t, msgs, "long")) >= 2
	})
	fake.gate <- struct{}{}
	f := awaitFinal(t, h.bus, "long")
	rs := decodeReplies(t, h.bus.Messages(), "long")
	want := []string{contract.StatusAccepted, contract.StatusRunning, contract.StatusDone}
	if len(rs) != len(want) {
		t.Fatalf("replies %+v, want %v", rs, want)
	}
	for i, r := range rs {
		if r.Status != want[i] || r.Seq != i {
			t.Errorf("reply %d: %s seq %d, want %s seq %d", i, r.Status, r.Seq, want[i], i)
		}
	}
	if rs[1].Stream != "stdout" || rs[1].Data != "early\n" || f.Status != contract.StatusDone {
		t.Errorf("chunk %+v, final %+v", rs[1], f)
	}
}

// Output that would not fit the final reply (output_limit) is streamed at
// once, without waiting for reply_grace, so no byte is lost.
func TestOutputBeyondLimitStreamsAtOnce(t *testing.T) {
	fake := &fakeRun{gate: make(chan struct{}), output: []chunkOut{{"stdout", "0123456789"}, {"stdout", "abcdefghij"}}}
	h := start(t, `{"reply_grace":"1m","output_limit":16}`, fake, mfile("svc.json", paramModule))
	h.inject(request("picontrol/run/svc/plain", "", "big"))
	h.bus.WaitFor(time.Minute, func(msgs []bustest.Message) bool {
		return len(decodeReplies(t, msgs, "big")) >= 3
	})
	fake.gate <- struct{}{}
	awaitFinal(t, h.bus, "big")
	var streamed bytes.Buffer
	rs := decodeReplies(t, h.bus.Messages(), "big")
	for _, r := range rs {
		streamed.WriteString(r.Data)
	}
	if rs[0].Status != contract.StatusAccepted || streamed.String() != "0123456789abcdefghij" {
		t.Errorf("replies %+v", rs)
	}
}
