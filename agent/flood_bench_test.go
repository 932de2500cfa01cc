package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
)

// The flood benchmarks of issue 10: the agent (real binary, shipped
// modules plus a PiControl command that appends a line per run) under a
// flood of requests through Mosquitto. They report final answers, runs,
// peak RSS (VmHWM) and the longest gap between stats messages during the
// flood; the goals are in docs/performance.md.

type floodAgent struct {
	p     *agenttest.Process
	br    *brokertest.Broker
	mark  string
	stats *brokertest.Client
}

func startFloodAgent(b *testing.B) *floodAgent {
	br := brokertest.Mosquitto(b, brokertest.Options{})
	dir := b.TempDir()
	mark := filepath.Join(dir, "mark")
	files := shippedModules(b)
	files["apps/com.bench/picontrol/modules/flood.json"] = fmt.Sprintf(`{"id":"flood","name":"Flood","commands":[
	 {"id":"mark","name":"Mark","argv":["/bin/sh","-c","echo ran >> \"$MARK\""],"user":"root","env":{"MARK":%q}}]}`, mark)
	p := agenttest.StartProcess(b, agenttest.Options{BrokerURL: br.URL, Files: files,
		Config: map[string]any{"log": map[string]any{"level": "info"}, "stats": map[string]any{"interval": "1s"}}})
	st := brokertest.Connect(b, br.URL, brokertest.ClientOptions{})
	st.Subscribe(p.Root.Topic("status"), p.Root.Topic("stats"))
	st.WaitFor(15*time.Second, "online", brokertest.Topic(p.Root.Topic("status"), "online"))
	cat := brokertest.Connect(b, br.URL, brokertest.ClientOptions{})
	cat.Subscribe(p.Root.Topic(contract.TopicPiControlCommands))
	cat.WaitFor(15*time.Second, "catalogue", func(m brokertest.Message) bool { return strings.Contains(string(m.Payload), `"flood"`) })
	return &floodAgent{p: p, br: br, mark: mark, stats: st}
}

// statsGap is the longest time between two stats messages after since.
func (f *floodAgent) statsGap(since time.Time) time.Duration {
	var last time.Time
	var gap time.Duration
	for _, m := range f.stats.Messages() {
		if m.Topic != f.p.Root.Topic("stats") || m.At.Before(since) {
			continue
		}
		if !last.IsZero() && m.At.Sub(last) > gap {
			gap = m.At.Sub(last)
		}
		last = m.At
	}
	if d := time.Since(last); !last.IsZero() && d > gap {
		gap = d
	}
	return gap
}

func peakRSSKB(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// BenchmarkFloodRequests: 10,000 QoS 1 requests from 5 clients to one
// PiControl command (concurrency "reject": most are refused while one
// runs). Every request must get exactly one final answer and nothing may
// run twice.
func BenchmarkFloodRequests(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("PiControl runs the command as root")
	}
	const clients, per = 5, 2000
	for range b.N {
		f := startFloodAgent(b)
		cs := make([]*brokertest.Client, clients)
		for i := range cs {
			cs[i] = brokertest.Connect(b, f.br.URL, brokertest.ClientOptions{})
			cs[i].Subscribe(f.p.Root.Topic(fmt.Sprintf("reply/f%d", i)))
		}
		rss0 := peakRSSKB(b, f.p.Cmd.Process.Pid)
		start := time.Now()
		var wg sync.WaitGroup
		var pubErrs atomic.Int64
		var firstErr atomic.Value
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range per {
					err := c.TryPublish(f.p.Root.Topic(contract.PiControlRunTopic("flood", "mark")), nil, brokertest.PublishOptions{QoS: 1,
						ResponseTopic: f.p.Root.Topic(fmt.Sprintf("reply/f%d", i)), Correlation: []byte(strconv.Itoa(j)), Requester: fmt.Sprintf("flooder%d", i)})
					if err != nil {
						pubErrs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			}()
		}
		wg.Wait()
		sent := time.Since(start)
		finals, done, dup := 0, 0, 0
		for i, c := range cs {
			topic := f.p.Root.Topic(fmt.Sprintf("reply/f%d", i))
			count := func() (map[string]int, int) {
				seen, d := map[string]int{}, 0
				for _, m := range c.Messages() {
					var r contract.Response
					if m.Topic == topic && json.Unmarshal(m.Payload, &r) == nil && contract.IsFinal(r.Status) {
						seen[string(m.Correlation)]++
						if r.Status == contract.StatusDone {
							d++
						}
					}
				}
				return seen, d
			}
			c.Await(60*time.Second, func(brokertest.Message) bool { seen, _ := count(); return len(seen) >= per })
			seen, d := count()
			done += d
			for _, n := range seen {
				finals++
				if n > 1 {
					dup++
				}
			}
		}
		answered := time.Since(start)
		data, _ := os.ReadFile(f.mark)
		runs := strings.Count(string(data), "ran\n")
		if os.Getenv("FLOOD_DEBUG") != "" {
			_ = os.WriteFile(os.Getenv("FLOOD_DEBUG"), []byte(f.br.Log()+"\n---- agent\n"+f.p.Logs.String()), 0o600)
		}
		if n := pubErrs.Load(); n > 0 {
			b.Fatalf("%d requests could not be published (the test client failed): first: %v", n, firstErr.Load())
		}
		b.ReportMetric(float64(finals), "final-answers")
		b.ReportMetric(float64(clients*per-finals), "unanswered")
		b.ReportMetric(float64(dup), "answered-twice")
		b.ReportMetric(float64(runs), "runs")
		b.ReportMetric(float64(runs-done), "runs-without-done") // >0 would mean something ran twice or unreported
		b.ReportMetric(float64(peakRSSKB(b, f.p.Cmd.Process.Pid))/1024, "MiB-peak-rss")
		b.ReportMetric(float64(rss0)/1024, "MiB-rss-before")
		b.ReportMetric(float64(f.statsGap(start).Milliseconds()), "ms-max-stats-gap")
		b.ReportMetric(sent.Seconds(), "s-to-send")
		b.ReportMetric(answered.Seconds(), "s-to-answer-all")
		_ = f.p.Signal(syscall.SIGTERM)
		f.p.Wait(10 * time.Second)
	}
}

// BenchmarkFloodOversized: 2,000 requests of 250 KB with 60 KB of
// correlation data from 4 clients. They fit the agent's Maximum Packet
// Size, so they reach the agent, which answers each rejected (correlation
// data too large) without queueing anything; its memory must not grow
// with them, and it keeps serving.
func BenchmarkFloodOversized(b *testing.B) {
	const clients, per = 4, 500
	payload := make([]byte, 250_000)
	corr := []byte(strings.Repeat("c", 60_000))
	for range b.N {
		f := startFloodAgent(b)
		cs := make([]*brokertest.Client, clients)
		for i := range cs {
			cs[i] = brokertest.Connect(b, f.br.URL, brokertest.ClientOptions{})
			cs[i].Subscribe(f.p.Root.Topic("reply/#"))
		}
		start := time.Now()
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range per {
					_ = c.TryPublish(f.p.Root.Topic(contract.PiControlRunTopic("flood", "mark")), payload, brokertest.PublishOptions{QoS: 1,
						ResponseTopic: f.p.Root.Topic("reply/big"), Correlation: corr})
				}
			}()
		}
		wg.Wait()
		// The agent still answers a normal request at once.
		cs[0].Publish(f.p.Root.Topic(contract.PiControlRunTopic("flood", "nothing")), nil, brokertest.PublishOptions{QoS: 1,
			ResponseTopic: f.p.Root.Topic("reply/after"), Correlation: []byte("after")})
		if _, ok := cs[0].Await(30*time.Second, brokertest.Topic(f.p.Root.Topic("reply/after"))); !ok {
			b.Fatalf("no answer after the flood; broker log:\n%s", f.br.Log())
		}
		count := func() int {
			n := 0
			for _, m := range cs[0].Messages() {
				if m.Topic == f.p.Root.Topic("reply/big") {
					n++
				}
			}
			return n
		}
		cs[0].Await(60*time.Second, func(brokertest.Message) bool { return count() >= clients*per })
		answered := count()
		if os.Getenv("FLOOD_DEBUG") != "" {
			_ = os.WriteFile(os.Getenv("FLOOD_DEBUG"), []byte(f.br.Log()+"\n---- agent\n"+f.p.Logs.String()), 0o600)
		}
		b.ReportMetric(float64(answered), "answered")
		b.ReportMetric(float64(clients*per-answered), "dropped-by-broker")
		b.ReportMetric(float64(peakRSSKB(b, f.p.Cmd.Process.Pid))/1024, "MiB-peak-rss")
		b.ReportMetric(float64(f.statsGap(start).Milliseconds()), "ms-max-stats-gap")
		b.ReportMetric(time.Since(start).Seconds(), "s-total")
		_ = f.p.Signal(syscall.SIGTERM)
		f.p.Wait(10 * time.Second)
	}
}
