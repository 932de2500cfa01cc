package floorbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
)

// The floor runs as a child process: this test binary, started again with
// floorEnv set to the broker URL.
const floorEnv = "PICOCKPIT_BENCH_FLOOR_URL"

func TestMain(m *testing.M) {
	if u := os.Getenv(floorEnv); u != "" {
		if err := runFloor(u, os.Getenv("PICOCKPIT_BENCH_FLOOR_ROOT")); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	agenttest.Main(m, nil) // builds the agent binary once and removes it
}

const wait = 15 * time.Second

// runFloor is the floor: a minimal MQTT 5 responder with no module, no
// validation, no privilege drop, no audit and no session state. A request
// on {root}/run execs /bin/true and is answered with one QoS 1 reply on its
// response topic; a set on {root}/gpio/17/set is answered by a retained QoS 1
// state. It publishes a retained "online" once subscribed and runs until its
// stdin closes.
func runFloor(rawURL, root string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		return err
	}
	var c *paho.Client
	c = paho.NewClient(paho.ClientConfig{
		ClientID: "floor-" + strconv.Itoa(os.Getpid()),
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				switch p.Topic {
				case root + "/run":
					status := "done"
					if err := exec.Command("/bin/true").Run(); err != nil {
						status = "failed"
					}
					if p.Properties == nil || p.Properties.ResponseTopic == "" {
						return
					}
					_, _ = c.Publish(ctx, &paho.Publish{Topic: p.Properties.ResponseTopic, QoS: 1,
						Payload: []byte(`{"status":"` + status + `","exit_code":0}`),
						Properties: &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData,
							ContentType: "application/json"}})
				case root + "/gpio/17/set":
					_, _ = c.Publish(ctx, &paho.Publish{Topic: root + "/gpio/17/state", QoS: 1, Retain: true,
						Payload:    []byte(`{"value":` + strings.TrimSpace(string(p.Payload)) + `}`),
						Properties: &paho.PublishProperties{ContentType: "application/json"}})
				}
			}()
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "floor-" + strconv.Itoa(os.Getpid()), KeepAlive: 30, CleanStart: true}); err != nil {
		return err
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: root + "/run", QoS: 1}, {Topic: root + "/gpio/17/set", QoS: 1}}}); err != nil {
		return err
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: root + "/status", QoS: 1, Retain: true, Payload: []byte("online")}); err != nil {
		return err
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	return c.Disconnect(&paho.Disconnect{})
}

// msg is one message the requester received.
type msg struct {
	topic, corr string
	payload     []byte
	at          time.Time
}

// requester is the benchmark's client: it publishes requests at a chosen
// QoS and hands what it receives to a channel.
type requester struct {
	b  *testing.B
	c  *paho.Client
	in chan msg
}

func newRequester(b *testing.B, rawURL string) *requester {
	u, err := url.Parse(rawURL)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		b.Fatal(err)
	}
	r := &requester{b: b, in: make(chan msg, 1<<14)}
	id := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	r.c = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			m := msg{topic: p.Topic, payload: append([]byte(nil), p.Payload...), at: time.Now()}
			if p.Properties != nil {
				m.corr = string(p.Properties.CorrelationData)
			}
			select {
			case r.in <- m:
			default:
			}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := r.c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.c.Disconnect(&paho.Disconnect{}) })
	return r
}

func (r *requester) subscribe(qos byte, filters ...string) {
	var opts []paho.SubscribeOptions
	for _, f := range filters {
		opts = append(opts, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := r.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts}); err != nil {
		r.b.Fatal(err)
	}
}

func (r *requester) publish(topic string, payload []byte, qos byte, responseTopic, corr string) {
	if err := r.tryPublish(topic, payload, qos, responseTopic, corr); err != nil {
		r.b.Fatal(err)
	}
}

// tryPublish is publish for goroutines other than the benchmark's.
func (r *requester) tryPublish(topic string, payload []byte, qos byte, responseTopic, corr string) error {
	p := &paho.Publish{Topic: topic, QoS: qos, Payload: payload, Properties: &paho.PublishProperties{}}
	if responseTopic != "" {
		p.Properties.ResponseTopic, p.Properties.CorrelationData = responseTopic, []byte(corr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := r.c.Publish(ctx, p); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// await returns the first message that matches, dropping the others.
func (r *requester) await(what string, match func(msg) bool) msg {
	m, err := r.tryAwait(what, match)
	if err != nil {
		r.b.Fatal(err)
	}
	return m
}

// tryAwait is await for goroutines other than the benchmark's.
func (r *requester) tryAwait(what string, match func(msg) bool) (msg, error) {
	timeout := time.After(wait)
	for {
		select {
		case m := <-r.in:
			if match(m) {
				return m, nil
			}
		case <-timeout:
			return msg{}, fmt.Errorf("no %s within %v", what, wait)
		}
	}
}

// final matches the final reply with correlation corr.
func final(corr string) func(msg) bool {
	return func(m msg) bool {
		if m.corr != corr {
			return false
		}
		var s struct{ Status string }
		_ = json.Unmarshal(m.payload, &s)
		return s.Status == "done" || s.Status == "failed" || s.Status == "rejected"
	}
}

// side is one responder under test: the agent or the floor.
type side struct {
	name     string
	root     string // topic root
	runTopic string
	started  time.Time
	pid      int
}

// env is one broker with the floor and the agent connected to it.
type env struct {
	br           *brokertest.Broker
	floor, agent side
	rq           *requester
	floorStdin   interface{ Close() error }
	online       map[string]time.Duration // start -> online seen, per side
	// Results of the one-off measurements, kept for later runs of the same
	// sub-benchmark (the framework runs each with b.N 1 first).
	idleLog, writesLog string
}

var seq atomic.Int64

func newEnv(b *testing.B, nagle bool) *env {
	e := &env{br: brokertest.Mosquitto(b, brokertest.Options{Nagle: nagle}), online: map[string]time.Duration{}}
	e.rq = newRequester(b, e.br.URL)
	n := seq.Add(1)
	e.floor = side{name: "floor", root: fmt.Sprintf("floor/f%d-%d", os.Getpid(), n)}
	e.floor.runTopic = e.floor.root + "/run"
	e.rq.subscribe(1, e.floor.root+"/status", "picockpit/+/status")

	// The floor process.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), floorEnv+"="+e.br.URL, "PICOCKPIT_BENCH_FLOOR_ROOT="+e.floor.root)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	e.floor.started = time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	e.floor.pid = cmd.Process.Pid
	e.floorStdin = stdin
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	m := e.rq.await("floor online", func(m msg) bool { return m.topic == e.floor.root+"/status" })
	e.online["floor"] = m.at.Sub(e.floor.started)

	// The agent process: /bin/true as a PiControl command, a fake GPIO pin.
	runAs := "root"
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			b.Fatal(err)
		}
		runAs = u.Username
	}
	// "true" for the sequential round trips; t0..t7, one per concurrent
	// requester (a "queue" command runs one request at a time).
	cmds := []string{fmt.Sprintf(`{"id":"true","name":"True","argv":["/bin/true"],"user":%q,"concurrency":"queue"}`, runAs)}
	for i := range concurrent {
		cmds = append(cmds, fmt.Sprintf(`{"id":"t%d","name":"T%d","argv":["/bin/true"],"user":%q,"concurrency":"queue"}`, i, i, runAs))
	}
	module := `{"id":"bench","name":"Bench","commands":[` + strings.Join(cmds, ",") + `]}`
	p := agenttest.StartProcess(b, agenttest.Options{BrokerURL: e.br.URL,
		Files: map[string]string{"apps/com.picockpit/picontrol/modules/bench.json": module},
		Config: map[string]any{"log": map[string]any{"level": "info"},
			"gpio": map[string]any{"backend": "fake", "pins": []any{map[string]any{"bcm": 17, "name": "relay", "mode": "output", "initial": 0}}}}})
	e.agent = side{name: "agent", root: p.Root.Topic(""), runTopic: p.Root.Topic("picontrol/run/bench/true"), started: p.Started, pid: p.Cmd.Process.Pid}
	e.agent.root = strings.TrimSuffix(e.agent.root, "/")
	m = e.rq.await("agent online", func(m msg) bool { return m.topic == p.Root.Topic("status") && string(m.payload) == "online" })
	e.online["agent"] = m.at.Sub(p.Started)
	return e
}

func (e *env) replyTopic(s side) string {
	if s.name == "agent" {
		return e.agent.root + "/reply/bench"
	}
	return e.floor.root + "/reply"
}

// roundTrip sends one request to s and returns the time to its final reply.
func (e *env) roundTrip(s side, qos byte, i int) time.Duration {
	corr := s.name + "-" + strconv.Itoa(i)
	t0 := time.Now()
	e.rq.publish(s.runTopic, nil, qos, e.replyTopic(s), corr)
	m := e.rq.await("final reply "+corr, final(corr))
	if !strings.Contains(string(m.payload), `"done"`) {
		e.rq.b.Fatalf("%s: %s", corr, m.payload)
	}
	return m.at.Sub(t0)
}

// gpioRoundTrip sets pin 17 on s and returns the time to the state with
// the new value.
func (e *env) gpioRoundTrip(s side, i int) time.Duration {
	v := strconv.Itoa((i + 1) % 2)
	state := s.root + "/gpio/17/state"
	t0 := time.Now()
	e.rq.publish(s.root+"/gpio/17/set", []byte(v), 1, "", "")
	m := e.rq.await("state of "+s.name, func(m msg) bool {
		return m.topic == state && strings.Contains(string(m.payload), `"value":`+v)
	})
	return m.at.Sub(t0)
}

type stats struct{ p50, p90, p99 float64 }

func percentiles(d []time.Duration) stats {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	pct := func(p float64) float64 {
		if len(d) == 0 {
			return 0
		}
		return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
	}
	return stats{pct(0.5), pct(0.9), pct(0.99)}
}

// interleaved runs b.N pairs, alternating which side goes first, and
// reports both sides' percentiles and the ratios agent/floor.
func interleaved(b *testing.B, e *env, label string, f func(s side, i int) time.Duration) {
	var fl, ag []time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			fl = append(fl, f(e.floor, i))
			ag = append(ag, f(e.agent, i))
		} else {
			ag = append(ag, f(e.agent, i))
			fl = append(fl, f(e.floor, i))
		}
	}
	b.StopTimer()
	a, fs := percentiles(ag), percentiles(fl)
	b.ReportMetric(a.p50, "agent-p50-ms")
	b.ReportMetric(a.p90, "agent-p90-ms")
	b.ReportMetric(a.p99, "agent-p99-ms")
	b.ReportMetric(fs.p50, "floor-p50-ms")
	b.ReportMetric(fs.p90, "floor-p90-ms")
	b.ReportMetric(fs.p99, "floor-p99-ms")
	ratio := func(x, y float64) float64 {
		if y == 0 {
			return 0
		}
		return x / y
	}
	b.ReportMetric(ratio(a.p50, fs.p50), "x-p50")
	b.ReportMetric(ratio(a.p99, fs.p99), "x-p99")
	b.Logf("| %s | N=%d | agent %.2f / %.2f / %.2f ms | floor %.2f / %.2f / %.2f ms | agent/floor p50 %.2fx, p90 %.2fx, p99 %.2fx |",
		label, b.N, a.p50, a.p90, a.p99, fs.p50, fs.p90, fs.p99, ratio(a.p50, fs.p50), ratio(a.p90, fs.p90), ratio(a.p99, fs.p99))
}

// BenchmarkFloor measures the agent against the floor in the same run: for
// Mosquitto with set_tcp_nodelay true and with its default (Nagle on), the
// floor (a minimal Go responder that execs /bin/true) and the agent (a
// PiControl command running /bin/true) answer interleaved requests at QoS 0
// and QoS 1; then GPIO set -> state. On the nodelay broker it also reports
// start -> online, idle CPU and RSS, and what 1000 requests and 1000 GPIO
// sets cost the agent in file system calls (strace -c when installed) and
// in /proc/PID/io. `make bench-floor` runs it; docs/performance.md has the
// figures.
func BenchmarkFloor(b *testing.B) {
	for _, bc := range []struct {
		name  string
		nagle bool
	}{{"nodelay", false}, {"mosquitto-default", true}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, bc.nagle)
			if !bc.nagle {
				b.Run("start-to-online", func(b *testing.B) {
					b.ReportMetric(float64(e.online["agent"].Microseconds())/1000, "agent-ms")
					b.ReportMetric(float64(e.online["floor"].Microseconds())/1000, "floor-ms")
					b.Logf("| start -> retained online | agent %v | floor %v |", e.online["agent"].Round(time.Millisecond), e.online["floor"].Round(time.Millisecond))
				})
				b.Run("idle", func(b *testing.B) { e.idle(b) })
			}
			for _, qos := range []byte{0, 1} {
				b.Run(fmt.Sprintf("request-qos%d", qos), func(b *testing.B) {
					e.rq.subscribe(qos, e.agent.root+"/reply/#", e.floor.root+"/reply")
					interleaved(b, e, bc.name+" QoS "+strconv.Itoa(int(qos))+" request -> final reply", func(s side, i int) time.Duration {
						return e.roundTrip(s, qos, i)
					})
				})
			}
			b.Run("gpio-set-to-state", func(b *testing.B) {
				e.rq.subscribe(1, e.agent.root+"/gpio/17/state", e.floor.root+"/gpio/17/state")
				interleaved(b, e, bc.name+" QoS 1 gpio set -> state", e.gpioRoundTrip)
			})
			if !bc.nagle {
				b.Run(fmt.Sprintf("concurrent-%d-qos1", concurrent), func(b *testing.B) { e.throughput(b) })
				b.Run("file-writes-per-1000", func(b *testing.B) { e.fileWrites(b) })
			}
		})
	}
}

// concurrent is the number of requesters of the throughput benchmark.
const concurrent = 8

// throughput has `concurrent` requesters (each its own client) send b.N
// requests in all, each waiting for its final reply before the next, first
// to the floor, then to the agent (each requester to its own PiControl
// command), and reports requests per second.
func (e *env) throughput(b *testing.B) {
	rqs := make([]*requester, concurrent)
	for i := range rqs {
		rqs[i] = newRequester(b, e.br.URL)
		rqs[i].subscribe(1, e.agent.root+"/reply/c"+strconv.Itoa(i), e.floor.root+"/reply/c"+strconv.Itoa(i))
	}
	run := func(s side) float64 {
		t0 := time.Now()
		done := make(chan error, len(rqs))
		for w, rq := range rqs {
			topic, reply := s.runTopic, s.root+"/reply/c"+strconv.Itoa(w)
			if s.name == "agent" {
				topic = e.agent.root + "/picontrol/run/bench/t" + strconv.Itoa(w)
			}
			go func() {
				for i := w; i < b.N; i += concurrent {
					corr := fmt.Sprintf("%s-c%d-%d", s.name, w, i)
					if err := rq.tryPublish(topic, nil, 1, reply, corr); err != nil {
						done <- err
						return
					}
					if _, err := rq.tryAwait("final reply "+corr, final(corr)); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
		}
		for range rqs {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		return float64(b.N) / time.Since(t0).Seconds()
	}
	b.ResetTimer()
	f := run(e.floor)
	a := run(e.agent)
	b.StopTimer()
	b.ReportMetric(a, "agent-req/s")
	b.ReportMetric(f, "floor-req/s")
	b.ReportMetric(a/f, "x-throughput")
	b.Logf("| %d concurrent requesters, QoS 1, N=%d | agent %.0f req/s | floor %.0f req/s | agent/floor %.2fx |", concurrent, b.N, a, f, a/f)
}

// idle reports CPU and RSS of both processes over an idle window
// (PICOCKPIT_BENCH_IDLE, default 10s).
func (e *env) idle(b *testing.B) {
	if e.idleLog != "" { // measured in an earlier run of this benchmark
		b.Log(e.idleLog)
		return
	}
	window := 10 * time.Second
	if v := os.Getenv("PICOCKPIT_BENCH_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		window = d
	}
	a0, f0 := cpuTicks(b, e.agent.pid), cpuTicks(b, e.floor.pid)
	t0 := time.Now()
	time.Sleep(window)
	el := time.Since(t0)
	a1, f1 := cpuTicks(b, e.agent.pid), cpuTicks(b, e.floor.pid)
	const hz = 100 // USER_HZ
	pct := func(t int64) float64 { return 100 * float64(t) / hz / el.Seconds() }
	ar, fr := float64(procField(b, e.agent.pid, "status", "VmRSS:"))/1024, float64(procField(b, e.floor.pid, "status", "VmRSS:"))/1024
	b.ReportMetric(pct(a1-a0), "agent-%cpu")
	b.ReportMetric(pct(f1-f0), "floor-%cpu")
	b.ReportMetric(ar, "agent-MiB-rss")
	b.ReportMetric(fr, "floor-MiB-rss")
	e.idleLog = fmt.Sprintf("| idle %v after start | agent %d ticks (%.3f %% CPU), RSS %.1f MiB | floor %d ticks (%.3f %% CPU), RSS %.1f MiB |",
		window, a1-a0, pct(a1-a0), ar, f1-f0, pct(f1-f0), fr)
	b.Log(e.idleLog)
}

// fileWrites runs 1000 requests, then 1000 GPIO sets, against the agent
// and reports what each cost in file system calls (strace -c, when
// installed) and in /proc/PID/io (syscw counts socket writes too;
// write_bytes is what reached the storage layer).
func (e *env) fileWrites(b *testing.B) {
	if e.writesLog != "" { // measured in an earlier run of this benchmark
		b.Log(e.writesLog)
		return
	}
	const n = 1000
	e.rq.subscribe(1, e.agent.root+"/reply/#", e.agent.root+"/gpio/17/state")
	for _, c := range []struct {
		what string
		f    func(i int)
	}{
		{"PiControl requests (QoS 1)", func(i int) { e.roundTrip(e.agent, 1, 1_000_000+i) }},
		{"GPIO sets (QoS 1)", func(i int) { e.gpioRoundTrip(e.agent, i) }},
	} {
		stop := startStrace(b, e.agent.pid)
		io0 := procIO(b, e.agent.pid)
		for i := range n {
			c.f(i)
		}
		io1 := procIO(b, e.agent.pid)
		calls := stop()
		name := strings.Fields(c.what)[0]
		fs := calls["fsync"] + calls["fdatasync"]
		ren := calls["rename"] + calls["renameat"] + calls["renameat2"]
		b.ReportMetric(float64(fs), name+"-fsync/1000")
		b.ReportMetric(float64(ren), name+"-rename/1000")
		b.ReportMetric(float64(io1["write_bytes"]-io0["write_bytes"]), name+"-write_bytes/1000")
		b.ReportMetric(float64(io1["syscw"]-io0["syscw"]), name+"-syscw/1000")
		how := "strace -c"
		if calls == nil {
			how = "strace not installed: no syscall counts"
		}
		e.writesLog += fmt.Sprintf("| %d %s | fsync+fdatasync %d, rename %d, openat %d, unlink %d (%s) | /proc io: syscw %d, write_bytes %d |\n",
			n, c.what, fs, ren, calls["openat"], calls["unlink"]+calls["unlinkat"], how,
			io1["syscw"]-io0["syscw"], io1["write_bytes"]-io0["write_bytes"])
	}
	b.Log(e.writesLog)
}

// startStrace attaches strace -c to every thread of pid and returns a
// function that detaches it and returns the call count per syscall (nil
// when strace is not installed).
func startStrace(b *testing.B, pid int) func() map[string]int64 {
	bin, err := exec.LookPath("strace")
	if err != nil {
		return func() map[string]int64 { return nil }
	}
	out := filepath.Join(b.TempDir(), "strace.txt")
	cmd := exec.Command(bin, "-f", "-c", "-o", out, "-p", strconv.Itoa(pid),
		"-e", "trace=fsync,fdatasync,sync_file_range,rename,renameat,renameat2,openat,unlink,unlinkat")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// strace says "Process N attached" once it traces the process.
	attached := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "attached") {
				once = true
				close(attached)
			}
		}
		if !once {
			close(attached)
		}
	}()
	select {
	case <-attached:
	case <-time.After(wait):
		b.Fatal("strace did not attach")
	}
	return func() map[string]int64 {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		raw, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		calls := map[string]int64{}
		for _, l := range strings.Split(string(raw), "\n") {
			f := strings.Fields(l)
			// % time, seconds, usecs/call, calls, [errors,] syscall
			if len(f) < 5 || f[len(f)-1] == "total" || f[len(f)-1] == "syscall" {
				continue
			}
			if n, err := strconv.ParseInt(f[3], 10, 64); err == nil {
				calls[f[len(f)-1]] = n
			}
		}
		return calls
	}
}

func procIO(b *testing.B, pid int) map[string]int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]int64{}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k], _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return out
}

func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// procField returns the number after key in /proc/PID/file (kB for VmRSS).
func procField(b *testing.B, pid int, file, key string) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/%s", key, pid, file)
	return 0
}
