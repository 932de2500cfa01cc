package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

const wait = 10 * time.Second

// echoKind is a minimal module kind for conformance tests: it answers
// requests on echo/+ with {"status":"ok","payload":...}; with a "block"
// payload its handler waits until released (to fill its queue).
type echoKind struct {
	release chan struct{}
	taken   chan struct{} // if set, receives when a "block" request started
	queue   int
}

func (e *echoKind) kind() modules.Kind {
	return modules.Kind{Name: "echo", Load: func(env modules.Env, section []byte, sectionFile string, files []modules.File) (modules.Module, []modules.Problem) {
		var probs []modules.Problem
		for _, f := range files {
			var v struct {
				Greeting string `json:"greeting"`
			}
			if err := modules.DecodeStrict(f.Data, &v); err != nil {
				probs = append(probs, modules.ProblemFor(f.Path, "", err))
			}
		}
		return &echoModule{e: e}, probs
	}}
}

type echoModule struct{ e *echoKind }

func (m *echoModule) Start(ctx context.Context, bus modules.Bus) error {
	return bus.Subscribe("echo/+", m.e.queue, func(ctx context.Context, req *modules.Request) {
		if string(req.Payload) == "block" {
			if m.e.taken != nil {
				m.e.taken <- struct{}{}
			}
			select {
			case <-m.e.release:
			case <-ctx.Done():
			}
		}
		b, _ := json.Marshal(map[string]any{"status": "ok", "topic": req.Topic, "ts": time.Now().UTC(), "payload": string(req.Payload)})
		_ = bus.Reply(ctx, req, b)
		_ = bus.Publish(ctx, "echo/last", b, modules.PublishOptions{Retain: true, QoS: 1})
	})
}

func (m *echoModule) Close() error { return nil }

func forEachBroker(t *testing.T, opts brokertest.Options, f func(t *testing.T, b *brokertest.Broker)) {
	for _, name := range []string{"mosquitto", "mochi"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, brokertest.Each()[name](t, opts))
		})
	}
}

func TestOnlineAndInfoRetained(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL})
		// A client that subscribes afterwards gets the retained truth.
		first := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		first.Subscribe(a.Topic("#"))
		first.WaitFor(wait, "info", brokertest.Topic(a.Topic("info")))
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("#"))
		st := c.WaitFor(wait, "retained online", brokertest.Topic(a.Topic("status"), "online"))
		if !st.Retain {
			t.Error("status online is not retained")
		}
		info := c.WaitFor(wait, "retained info", brokertest.Topic(a.Topic("info")))
		if !info.Retain || info.ContentType != "application/json" {
			t.Errorf("info retain=%v content type=%q", info.Retain, info.ContentType)
		}
		agenttest.ValidateSchema(t, "info", info.Payload)
		var in contract.Info
		if err := json.Unmarshal(info.Payload, &in); err != nil {
			t.Fatal(err)
		}
		if in.Device.ID != a.Root.Device || in.Contract != contract.Version {
			t.Errorf("info = %+v", in)
		}
		// A clean stop publishes offline itself.
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
		c.WaitFor(wait, "offline after stop", brokertest.Topic(a.Topic("status"), "offline"))
	})
}

func TestWillOnSIGKILLAndOfflineOnSIGTERM(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		for _, tc := range []struct {
			sig      syscall.Signal
			wantExit int
		}{{syscall.SIGKILL, -1}, {syscall.SIGTERM, 0}} {
			p := agenttest.StartProcess(t, agenttest.Options{BrokerURL: b.URL})
			c.Subscribe(p.Root.Topic("status"))
			c.WaitFor(wait, "online", brokertest.Topic(p.Root.Topic("status"), "online"))
			if err := p.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			m := c.WaitFor(wait, "offline after "+tc.sig.String(), brokertest.Topic(p.Root.Topic("status"), "offline"))
			if !m.Retain && tc.sig == syscall.SIGKILL {
				// Delivered live the retain flag is cleared by the broker;
				// check the retained copy with a fresh subscriber below.
			}
			if !p.Wait(wait) {
				t.Fatalf("process did not exit after %s", tc.sig)
			}
			if got := p.ExitCode(); got != tc.wantExit {
				t.Errorf("exit code after %s = %d, want %d", tc.sig, got, tc.wantExit)
			}
			fresh := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
			fresh.Subscribe(p.Root.Topic("status"))
			r := fresh.WaitFor(wait, "retained offline", brokertest.Topic(p.Root.Topic("status")))
			if string(r.Payload) != "offline" || !r.Retain {
				t.Errorf("after %s retained status = %q retain=%v", tc.sig, r.Payload, r.Retain)
			}
		}
	})
}

func TestReconnectAfterBrokerRestart(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ek := &echoKind{}
		a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{ek.kind()}})
		b.Stop()
		// Wait until the agent noticed, then bring the broker back.
		waitUntil(t, wait, func() bool { return !connected(a) }, says("agent did not notice the broker stop"))
		b.Start()
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("status"), a.Topic("info"), a.Topic("reply/#"))
		// The broker lost its retained messages (no persistence): the agent
		// publishes status and info again.
		c.WaitFor(20*time.Second, "online after restart", brokertest.Topic(a.Topic("status"), "online"))
		c.WaitFor(wait, "info after restart", brokertest.Topic(a.Topic("info")))
		// Subscriptions work again.
		c.Publish(a.Topic("echo/x"), []byte("hi"), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/t1"), Correlation: []byte("c1")})
		m := c.WaitFor(wait, "echo reply", brokertest.Topic(a.Topic("reply/t1")))
		if string(m.Correlation) != "c1" {
			t.Errorf("correlation = %q", m.Correlation)
		}
		if n := a.A.Session().Connects.Load(); n != 2 {
			t.Errorf("connects = %d, want 2", n)
		}
	})
}

func TestRequestRules(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ek := &echoKind{release: make(chan struct{}), taken: make(chan struct{}, 1), queue: 1}
		a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{ek.kind()}})
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("reply/#"), a.Topic("events"), "elsewhere/#")

		// Response topic outside reply/: refused, nothing runs, an event says why.
		c.Publish(a.Topic("echo/a"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: "elsewhere/inbox"})
		ev := c.WaitFor(wait, "rejected event", func(m brokertest.Message) bool {
			return m.Topic == a.Topic("events") && strings.Contains(string(m.Payload), "response topic")
		})
		agenttest.ValidateSchema(t, "event", ev.Payload)

		// A retained request is refused.
		c.Publish(a.Topic("echo/b"), []byte("x"), brokertest.PublishOptions{QoS: 1, Retain: true, ResponseTopic: a.Topic("reply/r"), Correlation: []byte("r")})
		r := c.WaitFor(wait, "retained refused", brokertest.Topic(a.Topic("reply/r")))
		agenttest.ValidateSchema(t, "response", r.Payload)
		if !strings.Contains(string(r.Payload), `"rejected"`) {
			t.Errorf("retained request answer = %s", r.Payload)
		}
		c.Publish(a.Topic("echo/b"), nil, brokertest.PublishOptions{QoS: 1, Retain: true}) // clear it

		// Full queue: one request blocks the worker, one waits in the queue
		// (length 1), the next is answered busy at once.
		c.Publish(a.Topic("echo/1"), []byte("block"), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/q1"), Correlation: []byte("1")})
		select { // the worker took it: the queue is empty again
		case <-ek.taken:
		case <-time.After(wait):
			t.Fatal("the blocking request never reached the handler")
		}
		c.Publish(a.Topic("echo/2"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/q2"), Correlation: []byte("2")})
		c.Publish(a.Topic("echo/3"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/q3"), Correlation: []byte("3")})
		busy := c.WaitFor(wait, "busy answer", brokertest.Topic(a.Topic("reply/q3")))
		if !strings.Contains(string(busy.Payload), `"busy"`) || string(busy.Correlation) != "3" {
			t.Errorf("third request answer = %s (correlation %q)", busy.Payload, busy.Correlation)
		}
		close(ek.release)
		c.WaitFor(wait, "first answered", brokertest.Topic(a.Topic("reply/q1")))
		if q2 := c.WaitFor(wait, "queued one answered", brokertest.Topic(a.Topic("reply/q2"))); !strings.Contains(string(q2.Payload), `"ok"`) {
			t.Errorf("the queued request was not served: %s", q2.Payload)
		}
		for _, m := range c.Messages() {
			if m.Topic == "elsewhere/inbox" {
				t.Errorf("agent published outside its tree: %s", m.Topic)
			}
		}
	})
}

func TestTLSAndWebsockets(t *testing.T) {
	forEachBroker(t, brokertest.Options{TLS: true, WS: true, WSS: true}, func(t *testing.T, b *brokertest.Broker) {
		for _, u := range []string{b.TLSURL, b.WSURL, b.WSSURL} {
			ek := &echoKind{}
			a := agenttest.Start(t, agenttest.Options{BrokerURL: u, Kinds: []modules.Kind{ek.kind()},
				Config: map[string]any{"broker": map[string]any{"ca_file": b.Certs.CAFile,
					"cert_file": b.Certs.ClientCertFile, "key_file": b.Certs.ClientKeyFile}}})
			c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
			c.Subscribe(a.Topic("status"), a.Topic("reply/#"))
			c.WaitFor(wait, "online via "+u, brokertest.Topic(a.Topic("status"), "online"))
			c.Publish(a.Topic("echo/x"), []byte("over "+u), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/x"), Correlation: []byte("x")})
			c.WaitFor(wait, "reply via "+u, brokertest.Topic(a.Topic("reply/x")))
			if err := a.Stop(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// reconnectMax is broker.reconnect_max in the backoff tests: after a
// failed attempt or a quick drop the agent waits at least half of it (the
// jitter keeps [d/2, d]) before it tries again, so n attempts take at least
// (n-1) * reconnectMax/2. A reconnect storm makes hundreds in that time.
const reconnectMax = 200 * time.Millisecond

// maxAttempts is the most connection attempts an agent can make in elapsed
// while it backs off.
func maxAttempts(elapsed time.Duration) int64 { return 1 + int64(elapsed/(reconnectMax/2)) }

// countAttempts runs an agent that cannot get in until it made n
// connection attempts and returns how long that took and its log.
func countAttempts(t *testing.T, n int64, o agenttest.Options) (int64, time.Duration, string) {
	t.Helper()
	o.NoWait = true
	o.Config["broker"].(map[string]any)["reconnect_max"] = reconnectMax.String()
	began := time.Now()
	a := agenttest.Start(t, o)
	waitUntil(t, wait, func() bool { return a.A.Session().ConnectAttempts.Load() >= n }, func() string {
		return fmt.Sprintf("only %d connection attempts; log:\n%s", a.A.Session().ConnectAttempts.Load(), a.Logs.String())
	})
	got, elapsed := a.A.Session().ConnectAttempts.Load(), time.Since(began)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	return got, elapsed, a.Logs.String()
}

func TestBadCredentialsAndUntrustedCertBackOff(t *testing.T) {
	forEachBroker(t, brokertest.Options{TLS: true, Users: map[string]string{"pi": "right"}}, func(t *testing.T, b *brokertest.Broker) {
		n, elapsed, log := countAttempts(t, 4, agenttest.Options{BrokerURL: b.URL,
			Config: map[string]any{"broker": map[string]any{"username": "pi", "password": "wrong"}}})
		if n > maxAttempts(elapsed) {
			t.Errorf("wrong password: %d connection attempts in %s: no backoff", n, elapsed)
		}
		if !strings.Contains(log, "broker refused the connection") || !strings.Contains(log, "broker.password") {
			t.Errorf("log does not explain the refusal:\n%s", log)
		}
		n, elapsed, log = countAttempts(t, 4, agenttest.Options{BrokerURL: b.TLSURL,
			Config: map[string]any{"broker": map[string]any{"username": "pi", "password": "right", "ca_file": b.Certs.OtherCAFile}}})
		if n > maxAttempts(elapsed) {
			t.Errorf("untrusted cert: %d connection attempts in %s: no backoff", n, elapsed)
		}
		if !strings.Contains(log, "server certificate not trusted") {
			t.Errorf("log does not explain the TLS failure:\n%s", log)
		}
		// And the right password works.
		agenttest.Start(t, agenttest.Options{BrokerURL: b.URL,
			Config: map[string]any{"broker": map[string]any{"username": "pi", "password": "right"}}})
	})
}

func TestDuplicateClientIDNoStorm(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		o := agenttest.Options{BrokerURL: b.URL, DeviceID: fmt.Sprintf("dup%d", time.Now().UnixNano()),
			Config: map[string]any{"broker": map[string]any{"reconnect_max": reconnectMax.String()}}}
		began := time.Now()
		a1 := agenttest.Start(t, o)
		a2 := agenttest.Start(t, o)
		// Each takeover kicks the other. Wait until they flapped a while
		// and one of them named the likely cause.
		connects := func() int64 { return a1.A.Session().Connects.Load() + a2.A.Session().Connects.Load() }
		named := func() bool { return strings.Contains(a1.Logs.String()+a2.Logs.String(), "same client id") }
		waitUntil(t, wait, func() bool { return connects() >= 8 && named() }, func() string {
			return fmt.Sprintf("%d connects, cause named: %v", connects(), named())
		})
		total, elapsed := connects(), time.Since(began)
		// With the flap backoff each agent waits reconnect_max/2 or more
		// before it takes the session back.
		if total > 2*maxAttempts(elapsed) {
			t.Errorf("%d connects in %s with a duplicate client id: reconnect storm", total, elapsed)
		}
	})
}

func TestReloadKeepsConnection(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	ek := &echoKind{}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{ek.kind()}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("events"), a.Topic("reply/#"))
	bad := filepath.Join(a.ConfigDir, "apps", "com.picockpit", "echo", "modules", "bad.json")
	if err := os.MkdirAll(filepath.Dir(bad), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"greting": "hi"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	a.Reload()
	ev := c.WaitFor(wait, "reloaded event", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("events") && strings.Contains(string(m.Payload), `"reloaded"`)
	})
	agenttest.ValidateSchema(t, "event", ev.Payload)
	prob := c.WaitFor(wait, "problem event", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("events") && strings.Contains(string(m.Payload), "bad.json")
	})
	if !strings.Contains(string(prob.Payload), "greting") {
		t.Errorf("problem event does not name the field: %s", prob.Payload)
	}
	c.Publish(a.Topic("echo/x"), []byte("after reload"), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/x")})
	c.WaitFor(wait, "echo after reload", brokertest.Topic(a.Topic("reply/x")))
	if n := a.A.Session().Connects.Load(); n != 1 {
		t.Errorf("reload reconnected: %d connects", n)
	}
}

func TestSystemdNotify(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	var got []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, string(buf[:n]))
			mu.Unlock()
		}
	}()
	has := func(prefix string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range got {
			if strings.HasPrefix(g, prefix) {
				return true
			}
		}
		return false
	}
	waitFor := func(prefix string) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !has(prefix) {
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("no %q notification; got %q", prefix, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	p := agenttest.StartProcess(t, agenttest.Options{BrokerURL: b.URL, Env: []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=400000"}})
	waitFor("READY=1")
	waitFor("STATUS=connected to")
	waitFor("WATCHDOG=1")
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("RELOADING=1")
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("STOPPING=1")
	if !p.Wait(wait) {
		t.Fatal("no exit after SIGTERM")
	}
}

func TestReadyWhenBrokerDown(t *testing.T) {
	// Nothing listens on this port: READY=1 must still come after the
	// bounded wait (shortened here), with a STATUS saying it is retrying.
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	agenttest.Start(t, agenttest.Options{BrokerURL: fmt.Sprintf("mqtt://127.0.0.1:%d", brokertest.FreePort(t)),
		NoWait: true, ReadyTimeout: 300 * time.Millisecond})
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var seen []string
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no READY=1 while the broker is down; got %q", seen)
		}
		seen = append(seen, string(buf[:n]))
		if string(buf[:n]) == "READY=1" {
			break
		}
	}
	retrying := false
	for _, s := range seen {
		retrying = retrying || strings.HasPrefix(s, "STATUS=retrying")
	}
	if !retrying {
		t.Errorf("no STATUS=retrying before READY; got %q", seen)
	}
}

func TestFailoverURLs(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		dead := fmt.Sprintf("mqtt://127.0.0.1:%d", brokertest.FreePort(t))
		a := agenttest.Start(t, agenttest.Options{BrokerURL: dead + "," + b.URL})
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("status"))
		c.WaitFor(wait, "online through the second URL", brokertest.Topic(a.Topic("status"), "online"))
	})
}

func TestMutualTLS(t *testing.T) {
	forEachBroker(t, brokertest.Options{TLS: true, RequireClientCert: true}, func(t *testing.T, b *brokertest.Broker) {
		// Without a client certificate the broker refuses the handshake.
		noCert := agenttest.Start(t, agenttest.Options{BrokerURL: b.TLSURL, NoWait: true,
			Config: map[string]any{"broker": map[string]any{"ca_file": b.Certs.CAFile}}})
		waitUntil(t, wait, func() bool {
			return noCert.A.Session().ConnectAttempts.Load() >= 2 && noCert.Logs.Count("connect failed") >= 1
		}, func() string { return "no failed attempts logged:\n" + noCert.Logs.String() })
		if n := noCert.A.Session().Connects.Load(); n != 0 {
			t.Errorf("connected %d times without the required client certificate", n)
		}
		if noCert.A.Session().ConnectAttempts.Load() < 1 || noCert.Logs.Count("connect failed") < 1 {
			t.Errorf("no failed attempt logged:\n%s", noCert.Logs.String())
		}
		if err := noCert.Stop(); err != nil {
			t.Fatal(err)
		}
		a := agenttest.Start(t, agenttest.Options{BrokerURL: b.TLSURL, Config: map[string]any{"broker": map[string]any{
			"ca_file": b.Certs.CAFile, "cert_file": b.Certs.ClientCertFile, "key_file": b.Certs.ClientKeyFile}}})
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("status"))
		c.WaitFor(wait, "online with a client certificate", brokertest.Topic(a.Topic("status"), "online"))
	})
}

func TestOversizedRequestDropped(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ek := &echoKind{}
		a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{ek.kind()}})
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("reply/#"))
		big := make([]byte, 512<<10)
		c.Publish(a.Topic("echo/big"), big, brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/big")})
		c.Publish(a.Topic("echo/small"), []byte("x"), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/small")})
		c.WaitFor(wait, "answer to the small request", brokertest.Topic(a.Topic("reply/small")))
		for _, m := range c.Messages() {
			if m.Topic == a.Topic("reply/big") {
				t.Error("a 512 KiB request reached the agent despite its Maximum Packet Size")
			}
		}
		if up, _ := a.A.Session().Connection(); !up || a.A.Session().Connects.Load() != 1 {
			t.Error("the oversized message cost the agent its connection")
		}
	})
}

// TestSilentNetworkLoss: the link goes silent (Wi-Fi gone, no FIN). The
// broker publishes the Will after the keepalive, the agent notices too and
// reconnects once the link is back, and the dashboard sees online again.
func TestSilentNetworkLoss(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		p := brokertest.NewProxy(t, b)
		a := agenttest.Start(t, agenttest.Options{BrokerURL: p.URL, Config: map[string]any{"broker": map[string]any{"keepalive": "1s"}}})
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("status"))
		c.WaitFor(wait, "online", brokertest.Topic(a.Topic("status"), "online"))
		p.Blackhole(true)
		c.WaitFor(wait, "the Will after the keepalive", brokertest.Topic(a.Topic("status"), "offline"))
		waitUntil(t, wait, func() bool { return !connected(a) }, says("the agent did not notice the silent link"))
		c.Reset()
		p.Blackhole(false)
		c.WaitFor(20*time.Second, "online again", brokertest.Topic(a.Topic("status"), "online"))
	})
}

// TestQueuedRequestWhileOffline: the session outlives the connection, so a
// QoS 1 request sent while the agent is down is delivered when it is back.
func TestQueuedRequestWhileOffline(t *testing.T) {
	forEachBroker(t, brokertest.Options{}, func(t *testing.T, b *brokertest.Broker) {
		ek := &echoKind{}
		o := agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{ek.kind()}, DeviceID: fmt.Sprintf("q%d", time.Now().UnixNano())}
		a := agenttest.Start(t, o)
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
		c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
		c.Subscribe(a.Topic("reply/#"))
		c.Publish(a.Topic("echo/x"), []byte("sent while offline"), brokertest.PublishOptions{QoS: 1, ResponseTopic: a.Topic("reply/q"), Correlation: []byte("q")})
		agenttest.Start(t, o)
		m := c.WaitFor(wait, "answer after the agent came back", brokertest.Topic(a.Topic("reply/q")))
		if !strings.Contains(string(m.Payload), "sent while offline") {
			t.Errorf("answer = %s", m.Payload)
		}
	})
}

// TestEventsFromBeforeTheConnection: problems found at start-up, while the
// broker is still unreachable, reach the events topic once it is up.
func TestEventsFromBeforeTheConnection(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	b.Stop()
	ek := &echoKind{}
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{ek.kind()}, NoWait: true,
		Config: map[string]any{"broker": map[string]any{"reconnect_max": reconnectMax.String()}},
		Files:  map[string]string{"apps/com.picockpit/echo/modules/bad.json": `{"greting":"hi"}`}})
	// The problem is found before the first attempt; start the broker once
	// an attempt failed, so the event must wait for a connection.
	waitLog(t, a.Logs, "connect failed", wait)
	b.Start()
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("events"))
	c.WaitFor(20*time.Second, "the start-up problem", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("events") && strings.Contains(string(m.Payload), "bad.json")
	})
}
