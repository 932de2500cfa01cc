package agent_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
)

// shippedModules returns the module files of etc/picockpit-client, so the
// benchmarks run the configuration a user gets.
func shippedModules(b *testing.B) map[string]string {
	files := map[string]string{}
	root := filepath.Join("..", "etc", "picockpit-client")
	err := filepath.Walk(filepath.Join(root, "apps"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[rel] = string(body)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return files
}

// BenchmarkStartToOnline measures the time from starting the agent process
// to a subscriber receiving its retained "online", with the shipped modules.
func BenchmarkStartToOnline(b *testing.B) {
	br := brokertest.Mosquitto(b, brokertest.Options{})
	c := brokertest.Connect(b, br.URL, brokertest.ClientOptions{})
	c.Subscribe("picockpit/+/status")
	files := shippedModules(b)
	agenttest.Binary(b) // build outside the timed part
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c.Reset()
		b.StartTimer()
		p := agenttest.StartProcess(b, agenttest.Options{BrokerURL: br.URL, Files: files})
		m := c.WaitFor(10*time.Second, "online", brokertest.Topic(p.Root.Topic("status"), "online"))
		total += m.At.Sub(p.Started)
		b.StopTimer()
		_ = p.Signal(syscall.SIGTERM)
		p.Wait(10 * time.Second)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-online")
}

// BenchmarkIdle60s runs the agent with the shipped modules and default
// PiStats interval for 60 s and reports its CPU use and resident memory.
func BenchmarkIdle60s(b *testing.B) {
	if testing.Short() {
		b.Skip("takes 60 s")
	}
	br := brokertest.Mosquitto(b, brokertest.Options{})
	c := brokertest.Connect(b, br.URL, brokertest.ClientOptions{})
	c.Subscribe("picockpit/+/status")
	files := shippedModules(b)
	for i := 0; i < b.N; i++ {
		p := agenttest.StartProcess(b, agenttest.Options{BrokerURL: br.URL, Files: files,
			Config: map[string]any{"log": map[string]any{"level": "info"}}})
		c.WaitFor(10*time.Second, "online", brokertest.Topic(p.Root.Topic("status"), "online"))
		pid := p.Cmd.Process.Pid
		cpu0 := cpuTicks(b, pid)
		start := time.Now()
		time.Sleep(60 * time.Second)
		cpu1 := cpuTicks(b, pid)
		elapsed := time.Since(start)
		const hz = 100 // USER_HZ on Linux
		cpuSec := float64(cpu1-cpu0) / hz
		b.ReportMetric(100*cpuSec/elapsed.Seconds(), "%cpu-idle")
		b.ReportMetric(float64(rssKB(b, pid))/1024, "MiB-rss")
		_ = p.Signal(syscall.SIGTERM)
		p.Wait(10 * time.Second)
	}
}

func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start after ")".
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

func rssKB(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
