package agent_test

// The request path under abuse and faults (issue 10): each numbered
// observation of the issue is a test here, through a real Mosquitto.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// probeKind is a module kind for these tests: it answers requests on
// probe/+ with {"status":"ok"} (and counts runs); payload "block" waits
// until released; payload "big:N" answers with N bytes of stdout and of
// stderr, as a PiControl reply would.
type probeKind struct {
	release chan struct{}
	queue   int
	runs    atomic.Int64
	// closeDelay makes Close take that long (a module waiting for a command).
	closeDelay time.Duration
}

func (p *probeKind) kind() modules.Kind {
	return modules.Kind{Name: "probe", Load: func(modules.Env, []byte, string, []modules.File) (modules.Module, []modules.Problem) {
		return &probeModule{p: p}, nil
	}}
}

type probeModule struct{ p *probeKind }

func (m *probeModule) Start(ctx context.Context, bus modules.Bus) error {
	return bus.Subscribe("probe/+", m.p.queue, func(ctx context.Context, req *modules.Request) {
		m.p.runs.Add(1)
		pl := string(req.Payload)
		reply := map[string]any{"status": "ok", "topic": req.Topic, "ts": time.Now().UTC()}
		if pl == "block" {
			select {
			case <-m.p.release:
			case <-ctx.Done(): // stopped (a reload): say so
				reply["status"], reply["error"] = "failed", "stopped"
			}
		}
		if n, ok := strings.CutPrefix(pl, "big:"); ok {
			var size int
			fmt.Sscan(n, &size)
			reply["status"] = "done"
			reply["stdout"] = strings.Repeat("o", size)
			reply["stderr"] = strings.Repeat("e", size)
		}
		b, _ := json.Marshal(reply)
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = bus.Reply(rctx, req, b)
	})
}

func (m *probeModule) Close() error {
	time.Sleep(m.p.closeDelay)
	return nil
}

// answers returns the messages on topic grouped by correlation data.
func answers(c *brokertest.Client, topic string) map[string][]brokertest.Message {
	out := map[string][]brokertest.Message{}
	for _, m := range c.Messages() {
		if m.Topic == topic {
			out[string(m.Correlation)] = append(out[string(m.Correlation)], m)
		}
	}
	return out
}

// show prints messages for a test failure, payloads cut short.
func show(ms []brokertest.Message) string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%.300s", m.Payload))
	}
	return fmt.Sprintf("%d message(s) %q", len(ms), out)
}

func status(m brokertest.Message) string {
	var r contract.Response
	_ = json.Unmarshal(m.Payload, &r)
	return r.Status
}

// waitAnswers waits until n distinct correlations were answered on topic.
func waitAnswers(t *testing.T, c *brokertest.Client, topic string, n int, timeout time.Duration) map[string][]brokertest.Message {
	t.Helper()
	_, ok := c.Await(timeout, func(brokertest.Message) bool { return len(answers(c, topic)) >= n })
	got := answers(c, topic)
	if !ok && len(got) < n {
		t.Fatalf("%d of %d requests answered after %s", len(got), n, timeout)
	}
	return got
}

// 1 and 7: payload, correlation data, topic and response topic are checked
// before anything is queued; too large is answered rejected, saying what
// and how large, without echoing the attacker's bytes.
func TestSizesCheckedBeforeQueueing(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	pk := &probeKind{release: make(chan struct{})}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pk.kind()}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("reply/#"), a.Topic("events"))
	reply := a.Topic("reply/sizes")

	c.Publish(a.Topic("probe/p"), make([]byte, agent.MaxRequestPayload+1), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("payload")})
	bigCorr := []byte(strings.Repeat("c", 65000))
	c.Publish(a.Topic("probe/c"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: bigCorr})
	longLevel := strings.Repeat("L", 60000)
	c.Publish(a.Topic("probe/"+longLevel), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("topic"), Requester: strings.Repeat("R", 5000)})
	c.Publish(a.Topic("probe/ok"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("ok")})

	got := waitAnswers(t, c, reply, 4, wait)
	for corr, want := range map[string]string{"payload": "payload of 65537 bytes refused", "": "correlation data of 65000 bytes refused", "topic": "request topic of"} {
		ms := got[corr]
		if len(ms) != 1 || status(ms[0]) != contract.StatusRejected || !strings.Contains(string(ms[0].Payload), want) {
			t.Errorf("answer for %q = %s, want one rejected saying %q", corr, show(ms), want)
			continue
		}
		if len(ms[0].Payload) > 1024 {
			t.Errorf("answer for %q is %d bytes: the refusal echoes the attacker's data", corr, len(ms[0].Payload))
		}
		agenttest.ValidateSchema(t, "response", ms[0].Payload)
	}
	if ms := got["ok"]; len(ms) != 1 || status(ms[0]) != "ok" {
		t.Errorf("the normal request after them: %s", show(ms))
	}
	if n := pk.runs.Load(); n != 1 {
		t.Errorf("module ran %d requests, want 1 (only the normal one)", n)
	}
	// Events and log lines about the 60 KB topic stay small.
	for _, m := range c.Messages() {
		if m.Topic == a.Topic("events") && len(m.Payload) > 2048 {
			t.Errorf("event of %d bytes: %.200s", len(m.Payload), m.Payload)
		}
	}
	for _, l := range strings.Split(a.Logs.String(), "\n") {
		if len(l) > 2048 {
			t.Errorf("log line of %d bytes: %.200s", len(l), l)
		}
	}
}

// 1: queues are bounded in bytes as well as in count: requests that would
// take the queued bytes over the budget are answered busy, not stored.
func TestQueuesBoundedInBytes(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	pk := &probeKind{release: make(chan struct{}), queue: 10000}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pk.kind()}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("reply/#"))
	reply := a.Topic("reply/bytes")
	c.Publish(a.Topic("probe/b"), []byte("block"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("blocker")})
	payload := []byte(strings.Repeat("p", 60000))
	const n = 120 // 7.2 MB if all were queued
	for i := range n {
		c.Publish(a.Topic("probe/x"), payload, brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte(fmt.Sprint(i))})
	}
	// The ones over the budget are answered at once.
	busy := 0
	c.Await(wait, func(brokertest.Message) bool {
		busy = 0
		for _, ms := range answers(c, reply) {
			if status(ms[0]) == contract.StatusBusy {
				busy++
			}
		}
		return busy > 0
	})
	if busy == 0 || busy >= n {
		t.Fatalf("%d of %d answered busy; want some (byte budget), not all", busy, n)
	}
	close(pk.release)
	got := waitAnswers(t, c, reply, n+1, wait)
	for corr, ms := range got {
		if len(ms) != 1 {
			t.Errorf("request %s answered %d times", corr, len(ms))
		}
	}
}

// 2: a QoS 1 request that reached a stopped agent and is redelivered by
// the broker (DUP) after the agent came back runs once. The agent is a
// separate process, stopped with SIGSTOP while the request reaches its
// socket and its connection is dropped (as the broker does after 1.5
// keepalives).
func TestRedeliveredRequestRunsOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("PiControl runs the command as root: needs root (CI runs tests as root)")
	}
	b := brokertest.Mosquitto(t, brokertest.Options{})
	dir := t.TempDir()
	mark := filepath.Join(dir, "mark")
	module := fmt.Sprintf(`{"id":"once","name":"Once","commands":[
	 {"id":"mark","name":"Mark","argv":["/bin/sh","-c","echo ran >> \"$MARK\""],"user":"root","env":{"MARK":%q}}]}`, mark)
	px := brokertest.NewProxy(t, b)
	p := agenttest.StartProcess(t, agenttest.Options{BrokerURL: px.URL,
		Config: map[string]any{"broker": map[string]any{"reconnect_max": "200ms"}},
		Files:  map[string]string{"apps/com.test/picontrol/modules/once.json": module}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	status := p.Root.Topic("status")
	reply := p.Root.Topic("reply/once")
	c.Subscribe(status, reply)
	c.WaitFor(wait, "online", brokertest.Topic(status, "online"))
	// Wait for the command catalogue: the agent is subscribed by then.
	cat := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	cat.Subscribe(p.Root.Topic(contract.TopicPiControlCommands))
	cat.WaitFor(wait, "catalogue", brokertest.Topic(p.Root.Topic(contract.TopicPiControlCommands)))
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c.Reset()
	corr := []byte("redelivery-probe-7f3a")
	c.Publish(p.Root.Topic(contract.PiControlRunTopic("once", "mark")), nil, brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: corr})
	waitUntil(t, wait, func() bool { return px.Forwarded(corr) }, says("the request never reached the agent's socket"))
	// The request waits unread in the stopped agent's socket; the broker
	// loses the connection and publishes the Will.
	px.Cut()
	c.WaitFor(wait, "the Will of the stopped agent", brokertest.Topic(status, "offline"))
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(wait, "final answer", func(m brokertest.Message) bool {
		return m.Topic == reply && contract.IsFinal(status0(m))
	})
	c.WaitFor(wait, "online again", brokertest.Topic(status, "online"))
	// The broker redelivered the request on the new connection by now (it
	// sends the session's unacknowledged messages first); give a second
	// run time to show up before counting.
	probe := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	probe.Subscribe(p.Root.Topic("reply/#"))
	probe.Publish(p.Root.Topic(contract.PiControlRunTopic("once", "nothing")), nil, brokertest.PublishOptions{QoS: 1, ResponseTopic: p.Root.Topic("reply/probe")})
	probe.WaitFor(wait, "a later request answered", brokertest.Topic(p.Root.Topic("reply/probe")))
	time.Sleep(500 * time.Millisecond) // a second run would append within this time
	data, _ := os.ReadFile(mark)
	if runs := strings.Count(string(data), "ran\n"); runs != 1 {
		t.Errorf("the command ran %d times, want 1", runs)
	}
	finals := 0
	for _, m := range c.Messages() {
		if m.Topic == reply && contract.IsFinal(status0(m)) {
			finals++
		}
	}
	if finals != 1 {
		t.Errorf("%d final answers, want 1", finals)
	}
}

func status0(m brokertest.Message) string { return status(m) }

// connected reports whether the in-process agent's session is up.
func connected(a *agenttest.Agent) bool {
	up, _ := a.A.Session().Connection()
	return up
}

// 3: a flood of requests: every request gets exactly one final answer
// (ok or busy), refusals are summed up on events instead of being lost, and
// the log does not get a line per refusal.
func TestFloodEveryRequestAnsweredOnce(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	pk := &probeKind{release: make(chan struct{}), queue: 4}
	const window = time.Second // the agent's summary window (10 s in production)
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pk.kind()}, EventWindow: window})
	watch := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	watch.Subscribe(a.Topic("events"))
	const clients, per = 5, 400
	var wg sync.WaitGroup
	cs := make([]*brokertest.Client, clients)
	for i := range cs {
		cs[i] = brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		cs[i].Subscribe(a.Topic(fmt.Sprintf("reply/c%d", i)))
	}
	// The first request blocks the module so that the queue fills.
	start := time.Now()
	cs[0].Publish(a.Topic("probe/block"), []byte("block"), brokertest.PublishOptions{QoS: 1})
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range per {
				if err := c.TryPublish(a.Topic("probe/x"), []byte("x"), brokertest.PublishOptions{QoS: 1,
					ResponseTopic: a.Topic(fmt.Sprintf("reply/c%d", i)), Correlation: []byte(fmt.Sprint(j)), Requester: fmt.Sprintf("flooder%d", i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(pk.release)
	for i, c := range cs {
		got := waitAnswers(t, c, a.Topic(fmt.Sprintf("reply/c%d", i)), per, wait)
		for corr, ms := range got {
			if len(ms) != 1 || !contract.IsFinal(status(ms[0])) {
				t.Errorf("client %d request %s: %d answers", i, corr, len(ms))
			}
		}
	}
	// One summary per requester instead of hundreds of events.
	watch.WaitFor(30*time.Second, "a summary of the busy answers", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("events") && strings.Contains(string(m.Payload), "requests refused busy in")
	})
	// The first 5 refusals per requester and window are logged, no more.
	windows := int(time.Since(start)/window) + 2
	if n := a.Logs.Count("request queue full; answered busy"); n > clients*5*windows {
		t.Errorf("%d log lines for busy answers in %d windows: not rate-limited", n, windows)
	}
	if n := a.Logs.Count("reply dropped") + a.Logs.Count("not published"); n > 0 {
		t.Errorf("%d replies or events dropped", n)
	}
}

// 4: a state dir that cannot be written does not stop the agent, and
// requests are answered; the problem is reported on events.
func TestStateDirNotWritable(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	pk := &probeKind{}
	o := agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pk.kind()}}
	dir, root := agenttest.WriteConfig(t, &o)
	// A file where the state dir should be: neither root nor anyone can
	// create it (a read-only or full file system behaves the same).
	stateDir := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(stateDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(root.Topic("events"), root.Topic("reply/#"), root.Topic("status"))
	logs := &agenttest.Buffer{}
	ag, res, err := agent.New(agent.Options{ConfigDir: dir, StateDir: stateDir, Version: "test", Kinds: o.Kinds,
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("the agent refused to start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx, res.Modules, res.Problems) }()
	defer func() {
		cancel()
		<-done
	}()
	c.WaitFor(wait, "the state dir problem on events", func(m brokertest.Message) bool {
		return m.Topic == root.Topic("events") && strings.Contains(string(m.Payload), "state dir")
	})
	// Online comes after the module's subscription is in place.
	c.WaitFor(wait, "online", brokertest.Topic(root.Topic("status"), "online"))
	c.Publish(root.Topic("probe/x"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: root.Topic("reply/s"), Correlation: []byte("s")})
	m := c.WaitFor(wait, "an answer", brokertest.Topic(root.Topic("reply/s")))
	if status(m) != "ok" {
		t.Errorf("answer %s", m.Payload)
	}
}

// 5: a reload during a burst answers every queued request (run by the old
// module or rejected), and requests arriving during the reload too.
func TestReloadAnswersEveryQueuedRequest(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	pk := &probeKind{release: make(chan struct{}), queue: 1000}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pk.kind()}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	reply := a.Topic("reply/r")
	c.Subscribe(reply)
	c.Publish(a.Topic("probe/b"), []byte("block"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("blocker")})
	const n = 450
	for i := range n {
		c.Publish(a.Topic("probe/x"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte(fmt.Sprint(i))})
		if i == 150 || i == 300 {
			a.Reload()
		}
	}
	got := waitAnswers(t, c, reply, n+1, wait)
	for corr, ms := range got {
		if len(ms) != 1 {
			t.Errorf("request %s answered %d times", corr, len(ms))
		}
	}
}

// 6: the broker is unreachable when a request finishes: the final reply is
// kept and sent after the reconnect.
func TestReplyKeptAcrossOutage(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	px := brokertest.NewProxy(t, b)
	pk := &probeKind{release: make(chan struct{})}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: px.URL, Kinds: []modules.Kind{pk.kind()},
		Config: map[string]any{"broker": map[string]any{"keepalive": "1s"}}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	reply := a.Topic("reply/outage")
	c.Subscribe(reply, a.Topic("status"))
	c.Publish(a.Topic("probe/b"), []byte("block"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("late")})
	waitUntil(t, wait, func() bool { return pk.runs.Load() > 0 }, says("request never ran"))
	px.Blackhole(true)
	c.WaitFor(wait, "the Will", brokertest.Topic(a.Topic("status"), "offline"))
	waitUntil(t, wait, func() bool { return !connected(a) }, says("the agent did not notice the outage"))
	close(pk.release) // the command ends while the broker is away
	time.Sleep(300 * time.Millisecond)
	px.Blackhole(false)
	m := c.WaitFor(20*time.Second, "the final reply after the reconnect", brokertest.Topic(reply))
	if status(m) != "ok" || string(m.Correlation) != "late" {
		t.Errorf("reply %s correlation %q", m.Payload, m.Correlation)
	}
}

// 9: the watchdog is pinged while a reload waits for a module to stop.
func TestWatchdogDuringReload(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("PiControl runs the command as root: needs root (CI runs tests as root)")
	}
	b := brokertest.Mosquitto(t, brokertest.Options{})
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type note struct {
		at  time.Time
		msg string
	}
	var mu sync.Mutex
	var notes []note
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			notes = append(notes, note{time.Now(), string(buf[:n])})
			mu.Unlock()
		}
	}()
	module := `{"id":"stubborn","name":"Stubborn","commands":[
	 {"id":"wait","name":"Wait","argv":["/bin/sh","-c","trap '' TERM; echo started; while true; do sleep 0.05; done"],"user":"root"}]}`
	p := agenttest.StartProcess(t, agenttest.Options{BrokerURL: b.URL,
		Config: map[string]any{"picontrol": map[string]any{"kill_grace": "1500ms"}},
		Files:  map[string]string{"apps/com.test/picontrol/modules/stubborn.json": module},
		Env:    []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=1000000"}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	reply := p.Root.Topic("reply/w")
	c.Subscribe(reply)
	cat := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	cat.Subscribe(p.Root.Topic(contract.TopicPiControlCommands))
	cat.WaitFor(wait, "catalogue", brokertest.Topic(p.Root.Topic(contract.TopicPiControlCommands)))
	c.Publish(p.Root.Topic(contract.PiControlRunTopic("stubborn", "wait")), nil, brokertest.PublishOptions{QoS: 1, ResponseTopic: reply})
	c.WaitFor(wait, "running", func(m brokertest.Message) bool { return strings.Contains(string(m.Payload), "started") })
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload waits kill_grace (1.5 s) for the command; then READY=1.
	deadline := time.Now().Add(wait)
	var begin, end time.Time
	for end.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("reload did not finish")
		}
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		for _, n := range notes {
			if strings.HasPrefix(n.msg, "RELOADING=1") {
				begin = n.at
			}
			if !begin.IsZero() && n.at.After(begin) && n.msg == "READY=1" {
				end = n.at
			}
		}
		mu.Unlock()
	}
	if end.Sub(begin) < time.Second {
		t.Fatalf("reload took %s; the module did not wait for its command", end.Sub(begin))
	}
	mu.Lock()
	defer mu.Unlock()
	last := begin
	for _, n := range notes {
		if n.msg == "WATCHDOG=1" && n.at.After(begin) && n.at.Before(end) {
			if gap := n.at.Sub(last); gap > 900*time.Millisecond {
				t.Errorf("no watchdog ping for %s during the reload", gap)
			}
			last = n.at
		}
	}
	if gap := end.Sub(last); gap > 900*time.Millisecond {
		t.Errorf("no watchdog ping for the last %s of the reload (WatchdogSec=1s would kill the agent)", gap)
	}
}

// waitUntil polls cond until it holds; after timeout it fails the test
// with what went wrong, as failure describes it at that moment.
func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, failure func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, failure())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// says returns a constant failure description for waitUntil.
func says(s string) func() string { return func() string { return s } }

// waitLog waits until the agent's log contains s.
func waitLog(t *testing.T, logs *agenttest.Buffer, s string, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, func() bool { return strings.Contains(logs.String(), s) },
		func() string { return fmt.Sprintf("no %q in the log:\n%s", s, logs.String()) })
}

// 10: the broker's Maximum Packet Size (CONNACK) binds the agent: a reply
// that would be larger is shrunk (output cut, truncated: true), never sent
// too large; the connection stays up, and a restart with the same state
// dir replays nothing.
func TestBrokerMaximumPacketSizeObeyed(t *testing.T) {
	for _, limit := range []int{131072, 1024} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			b := brokertest.Mosquitto(t, brokertest.Options{Extra: fmt.Sprintf("max_packet_size %d", limit)})
			pk := &probeKind{}
			o := agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pk.kind()}, DeviceID: fmt.Sprintf("mps%d", time.Now().UnixNano())}
			a := agenttest.Start(t, o)
			c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
			reply := a.Topic("reply/big")
			c.Subscribe(reply)
			c.Publish(a.Topic("probe/big"), []byte("big:70000"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("big")})
			m := c.WaitFor(wait, "the final reply", brokertest.Topic(reply))
			var r struct {
				Status    string `json:"status"`
				Stdout    string `json:"stdout"`
				Stderr    string `json:"stderr"`
				Truncated bool   `json:"truncated"`
			}
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				t.Fatal(err)
			}
			if r.Status != "done" || !r.Truncated || len(r.Stdout) >= 70000 || len(m.Payload) > limit {
				t.Errorf("reply: status %q truncated %v stdout %d bytes, payload %d bytes (limit %d)", r.Status, r.Truncated, len(r.Stdout), len(m.Payload), limit)
			}
			// The connection never broke for it.
			if n := a.A.Session().Connects.Load(); n != 1 {
				t.Errorf("%d connects, want 1", n)
			}
			if strings.Contains(b.Log(), "too large") || strings.Contains(b.Log(), "exceeded") {
				t.Errorf("broker log complains:\n%s", b.Log())
			}
			// A request answered after a restart with the same state dir: no
			// replay of anything, one connect.
			if err := a.Stop(); err != nil {
				t.Fatal(err)
			}
			ag, stop := runAgent(t, o, a.StateDir)
			defer stop()
			waitOnline(t, ag)
			c.Publish(a.Topic("probe/x"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("after")})
			c.WaitFor(wait, "an answer after the restart", func(m brokertest.Message) bool { return string(m.Correlation) == "after" })
			if n := ag.Session().Connects.Load(); n != 1 {
				t.Errorf("after the restart: %d connects, want 1", n)
			}
		})
	}
}

func waitOnline(t *testing.T, ag *agent.Agent) {
	t.Helper()
	select {
	case <-ag.Session().Online():
	case <-time.After(wait):
		t.Fatal("agent not online")
	}
}

// runAgent runs an agent in this process with o's config (written by
// agenttest.WriteConfig) and the given state dir.
func runAgent(t *testing.T, o agenttest.Options, stateDir string) (*agent.Agent, func()) {
	t.Helper()
	dir, _ := agenttest.WriteConfig(t, &o)
	ag, res, err := agent.New(agent.Options{ConfigDir: dir, StateDir: stateDir, Version: "test", Kinds: o.Kinds,
		Log: slog.New(slog.NewTextHandler(&agenttest.Buffer{}, nil))})
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx, res.Modules, res.Problems) }()
	return ag, func() { cancel(); <-done }
}

// 10: refusals by reason code and a broker that is not MQTT 5 are
// explained in words that say what to change.
func TestConnectRefusalsExplained(t *testing.T) {
	notMQTT5, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer notMQTT5.Close()
	go func() {
		for {
			c, err := notMQTT5.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 512)
			_, _ = c.Read(buf) // the CONNECT, then hang up as an MQTT 3 broker does
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name, extra, url, want string
	}{
		{"retain_available", "retain_available false", "", "retain_available false"},
		{"max_qos", "max_qos 0", "", "max_qos 0"},
		{"not mqtt 5", "", "mqtt://" + notMQTT5.Addr().String(), "probably does not support MQTT 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				url = brokertest.Mosquitto(t, brokertest.Options{Extra: tc.extra}).URL
			}
			a := agenttest.Start(t, agenttest.Options{BrokerURL: url, NoWait: true})
			waitLog(t, a.Logs, tc.want, wait)
		})
	}
}

// 11: a retained publish the broker refuses (ACL) is logged once at error
// level with the topic and the reason, and not retried in a loop.
func TestRefusedRetainedPublishNotLooped(t *testing.T) {
	dev := fmt.Sprintf("acl%d", time.Now().UnixNano())
	acl := fmt.Sprintf("topic readwrite picockpit/%[1]s/status\ntopic readwrite picockpit/%[1]s/events\ntopic readwrite picockpit/%[1]s/reply/#\n", dev)
	b := brokertest.Mosquitto(t, brokertest.Options{ACL: acl, Extra: "log_type debug"})
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, DeviceID: dev})
	waitLog(t, a.Logs, "broker refused a retained publish", wait)
	time.Sleep(time.Second) // the window in which a loop would retry (5 times before)
	denied := 0
	for _, l := range strings.Split(b.Log(), "\n") {
		if strings.Contains(l, "Denied PUBLISH") && strings.Contains(l, "/info") {
			denied++
		}
	}
	if denied == 0 || denied > 2 {
		t.Errorf("the broker denied the info publish %d times in 1 s; want 1 or 2 (no retry loop)", denied)
	}
	if n := a.Logs.Count("broker refused a retained publish"); n != 1 {
		t.Errorf("refusal logged %d times, want once", n)
	}
	for _, l := range strings.Split(a.Logs.String(), "\n") {
		if strings.Contains(l, "broker refused a retained publish") && (!strings.Contains(l, "level=ERROR") || !strings.Contains(l, "/info") || !strings.Contains(l, "0x87")) {
			t.Errorf("refusal log line lacks the level, topic or reason: %s", l)
		}
	}
}

// 12: a request whose deadline passed (Message Expiry, or the not_after
// user property) is answered rejected and not run, also when it expired
// while it waited in the queue.
func TestExpiredRequestsAnsweredRejected(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	pk := &probeKind{release: make(chan struct{})}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pk.kind()}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	reply := a.Topic("reply/exp")
	c.Subscribe(reply)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	c.Publish(a.Topic("probe/x"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("past"), User: map[string]string{"not_after": past}})
	c.Publish(a.Topic("probe/x"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("bad"), User: map[string]string{"not_after": "tomorrow"}})
	c.Publish(a.Topic("probe/b"), []byte("block"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("blocker")})
	soon := time.Now().Add(300 * time.Millisecond)
	c.Publish(a.Topic("probe/x"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("waited"),
		User: map[string]string{"not_after": soon.UTC().Format(time.RFC3339Nano)}})
	got := waitAnswers(t, c, reply, 2, wait)
	time.Sleep(time.Until(soon) + 50*time.Millisecond) // let the deadline pass while it waits in the queue
	close(pk.release)
	got = waitAnswers(t, c, reply, 4, wait)
	for corr, want := range map[string]string{"past": "expired", "bad": "not an RFC 3339 time", "waited": "expired while it waited"} {
		if ms := got[corr]; len(ms) != 1 || status(ms[0]) != contract.StatusRejected || !strings.Contains(string(ms[0].Payload), want) {
			t.Errorf("%s: %s, want one rejected saying %q", corr, show(ms), want)
		}
	}
	if n := pk.runs.Load(); n != 1 {
		t.Errorf("module ran %d requests, want only the blocker", n)
	}
}

// 8: requests larger than the module limits but within the agent's
// Maximum Packet Size are answered rejected; a flood of them does not cut
// the agent off (Mosquitto 2.0.11 keeps a receive slot for every QoS 1
// message it drops as too large for a client, so 64 dropped ones would).
func TestOversizedFloodKeepsAgentReachable(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	pk := &probeKind{}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{pk.kind()}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	reply := a.Topic("reply/big")
	c.Subscribe(reply)
	big := make([]byte, 300<<10)
	const n = 100
	for i := range n {
		c.Publish(a.Topic("probe/big"), big, brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte(fmt.Sprint(i))})
	}
	c.Publish(a.Topic("probe/small"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: reply, Correlation: []byte("small")})
	got := waitAnswers(t, c, reply, n+1, wait)
	for corr, ms := range got {
		want := contract.StatusRejected
		if corr == "small" {
			want = "ok"
		}
		if len(ms) != 1 || status(ms[0]) != want {
			t.Errorf("request %s: %s, want one %s", corr, show(ms), want)
		}
	}
}
