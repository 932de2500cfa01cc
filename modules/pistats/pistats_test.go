package pistats

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
)

func TestKind(t *testing.T) {
	k := Kind()
	if k.Name != "pistats" || k.Load == nil {
		t.Errorf("Kind() = %q, load set %v", k.Name, k.Load != nil)
	}
	if SectionKey != "stats" {
		t.Errorf("SectionKey = %q", SectionKey)
	}
}

func TestLoadConfig(t *testing.T) {
	const main = "/etc/picockpit-client/picockpit-client.config.json"
	const modFile = "/etc/picockpit-client/apps/com.picockpit/pistats/modules/stats.json"
	type prob struct{ File, Field, Err string }
	cases := []struct {
		name    string
		section string
		files   []modules.File
		want    *settings // nil: no module
		probs   []prob
	}{
		{name: "defaults", want: &settings{enabled: true, interval: 5 * time.Second, throttle: ThrottleAuto}},
		{
			name:    "section",
			section: `{"interval":"10s","metrics":["cpu","throttle"],"mounts":["/","/data/"],"interfaces":["eth0"],"flat_topics":true,"throttle_source":"hwmon"}`,
			want: &settings{enabled: true, interval: 10 * time.Second, metrics: []string{"cpu", "throttle"},
				mounts: []string{"/", "/data"}, interfaces: []string{"eth0"}, flat: true, throttle: ThrottleHwmon},
		},
		{
			name: "bad duration names the field", section: `{"interval":"5 sec"}`,
			want:  &settings{enabled: true, interval: 5 * time.Second, throttle: ThrottleAuto},
			probs: []prob{{main, "stats.interval", "not a duration"}},
		},
		{
			name: "interval out of range", section: `{"interval":"100ms"}`,
			want:  &settings{enabled: true, interval: 5 * time.Second, throttle: ThrottleAuto},
			probs: []prob{{main, "stats.interval", "out of range"}},
		},
		{
			name: "unknown field", section: `{"intervall":"5s"}`,
			want:  &settings{enabled: true, interval: 5 * time.Second, throttle: ThrottleAuto},
			probs: []prob{{main, "stats.intervall", "unknown field"}},
		},
		{
			name: "wrong type", section: `{"interval":5}`,
			want:  &settings{enabled: true, interval: 5 * time.Second, throttle: ThrottleAuto},
			probs: []prob{{main, "stats.interval", `want a duration string such as "30s", got the number 5 (write "5s" for seconds)`}},
		},
		{
			name: "every bad entry reported", section: `{"metrics":["cpu","gpu","cpu"],"mounts":["rel"],"interfaces":["a/b"],"throttle_source":"vcgencmd"}`,
			want: &settings{enabled: true, interval: 5 * time.Second, throttle: ThrottleAuto},
			probs: []prob{
				{main, "stats.metrics[1]", "unknown metric"},
				{main, "stats.metrics[2]", "listed twice"},
				{main, "stats.mounts[0]", "not an absolute path"},
				{main, "stats.interfaces[0]", "not a valid interface name"},
				{main, "stats.throttle_source", "not one of"},
			},
		},
		{name: "empty metrics", section: `{"metrics":[]}`, want: &settings{enabled: true, interval: 5 * time.Second, throttle: ThrottleAuto},
			probs: []prob{{main, "stats.metrics", "empty list"}}},
		{name: "disabled", section: `{"enabled":false}`},
		{
			name:  "module file",
			files: []modules.File{{Path: modFile, Data: []byte(`{"interval":"30s"}`)}},
			want:  &settings{enabled: true, interval: 30 * time.Second, throttle: ThrottleAuto},
		},
		{
			name:  "bad module file has no prefix",
			files: []modules.File{{Path: modFile, Data: []byte(`{"interval":"x"}`)}},
			want:  &settings{enabled: true, interval: 5 * time.Second, throttle: ThrottleAuto},
			probs: []prob{{modFile, "interval", "not a duration"}},
		},
		{
			name: "second module file ignored",
			files: []modules.File{
				{Path: modFile, Data: []byte(`{"interval":"30s"}`)},
				{Path: modFile + ".2", Data: []byte(`{"interval":"1m"}`)},
			},
			want:  &settings{enabled: true, interval: 30 * time.Second, throttle: ThrottleAuto},
			probs: []prob{{modFile + ".2", "", "only one pistats module file"}},
		},
		{
			name: "section wins over module file", section: `{"interval":"7s"}`,
			files: []modules.File{{Path: modFile, Data: []byte(`{"interval":"30s"}`)}},
			want:  &settings{enabled: true, interval: 7 * time.Second, throttle: ThrottleAuto},
			probs: []prob{{modFile, "", "already in section \"stats\""}},
		},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			var section []byte
			if c.section != "" {
				section = []byte(c.section)
			}
			mod, probs := Kind().Load(modules.Env{HostRoot: "/"}, section, main, c.files)
			var got []prob
			for _, p := range probs {
				got = append(got, prob{p.File, p.Field, p.Err.Error()})
			}
			if len(got) != len(c.probs) {
				t.Fatalf("problems = %v, want %v", got, c.probs)
			}
			for i := range got {
				if got[i].File != c.probs[i].File || got[i].Field != c.probs[i].Field || !strings.Contains(got[i].Err, c.probs[i].Err) {
					t.Errorf("problem %d = %+v, want %+v", i, got[i], c.probs[i])
				}
			}
			if c.want == nil {
				if mod != nil {
					t.Fatalf("module = %v, want none", mod)
				}
				return
			}
			m, ok := mod.(*module)
			if !ok {
				t.Fatalf("module = %T", mod)
			}
			if diff := cmp.Diff(*c.want, m.set, cmp.AllowUnexported(settings{})); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

// testModule builds a module on a copy of the pi4 fixture with fake clock,
// self reader and disks.
func testModule(t *testing.T, set settings, log *slog.Logger) (*module, *fakeClock, string) {
	t.Helper()
	root := fixtureRoot(t, "pi4")
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newModule(modules.Env{HostRoot: root, StateDir: t.TempDir()}, set, log)
	clk := newClock(t0)
	m.now = clk.now
	self := &fakeSelf{}
	m.self = self.read
	m.statfs = fakeStatfs("pi4", root)
	m.firstDelay = time.Hour // tests drive sampling through refresh requests
	return m, clk, root
}

func start(t *testing.T, m *module) *bustest.Bus {
	t.Helper()
	bus := bustest.New()
	if err := m.Start(context.Background(), bus); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
		bus.Close()
	})
	return bus
}

func refresh(bus *bustest.Bus, corr string) {
	bus.Inject(&modules.Request{Topic: contract.TopicStatsRefresh, ResponseTopic: "picockpit/dev/reply/ui", CorrelationData: []byte(corr)})
}

func waitReply(t *testing.T, bus *bustest.Bus, corr string) bustest.Message {
	t.Helper()
	var got bustest.Message
	ok := bus.WaitFor(5*time.Second, func(msgs []bustest.Message) bool {
		for _, m := range msgs {
			if m.Reply && string(m.Correlation) == corr {
				got = m
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no reply with correlation %q", corr)
	}
	return got
}

func countTopic(bus *bustest.Bus, topic string) int {
	n := 0
	for _, m := range bus.Messages() {
		if !m.Reply && m.Topic == topic {
			n++
		}
	}
	return n
}

// TestRefresh answers stats/refresh with a schema-valid response and updates
// the retained stats; a second request within a second reuses the snapshot.
func TestRefresh(t *testing.T) {
	set := defaultSettings()
	m, clk, _ := testModule(t, set, nil)
	bus := start(t, m)
	clk.add(5 * time.Second)

	refresh(bus, "c1")
	r := waitReply(t, bus, "c1")
	validate(t, agenttest.MustSchema(t, "stats-response.schema.json"), "refresh response", r.Payload)
	var resp contract.StatsResponse
	if err := json.Unmarshal(r.Payload, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Status != contract.StatusOK || resp.Topic != contract.TopicStatsRefresh || resp.Stats == nil || resp.Stats.Seq != 1 {
		t.Fatalf("response = %+v", resp)
	}
	ret, ok := bus.Retained(contract.TopicStats)
	if !ok {
		t.Fatal("no retained stats")
	}
	if !bytes.Contains(r.Payload, ret.Payload) {
		t.Errorf("reply does not carry the retained snapshot")
	}
	want := modules.PublishOptions{Retain: true, QoS: 0, Expiry: 15 * time.Second}
	if ret.Opts != want {
		t.Errorf("publish options = %+v, want %+v", ret.Opts, want)
	}
	validate(t, agenttest.MustSchema(t, "stats.schema.json"), "retained stats", ret.Payload)

	refresh(bus, "c2")
	r2 := waitReply(t, bus, "c2")
	if n := countTopic(bus, contract.TopicStats); n != 1 {
		t.Errorf("stats published %d times, want 1 (second refresh within 1s reuses)", n)
	}
	if !bytes.Contains(r2.Payload, ret.Payload) {
		t.Errorf("second reply is not the same snapshot")
	}

	clk.add(2 * time.Second)
	refresh(bus, "c3")
	r3 := waitReply(t, bus, "c3")
	if n := countTopic(bus, contract.TopicStats); n != 2 {
		t.Errorf("stats published %d times, want 2", n)
	}
	if err := json.Unmarshal(r3.Payload, &resp); err != nil || resp.Stats.Seq != 2 {
		t.Errorf("third reply seq = %d (%v), want 2", resp.Stats.Seq, err)
	}

	// An expired request is not answered.
	bus.Inject(&modules.Request{Topic: contract.TopicStatsRefresh, ResponseTopic: "picockpit/dev/reply/ui",
		CorrelationData: []byte("old"), Expires: clk.now().Add(-time.Second)})
	refresh(bus, "after")
	waitReply(t, bus, "after")
	for _, msg := range bus.Messages() {
		if string(msg.Correlation) == "old" {
			t.Errorf("expired request was answered")
		}
	}
}

// TestPeriodicPublish lets the loop publish on its own.
func TestPeriodicPublish(t *testing.T) {
	// Below the configurable minimum: the loop is the same, the test needs
	// not wait seconds for it.
	const interval = 50 * time.Millisecond
	set := defaultSettings()
	set.interval = interval
	m, _, _ := testModule(t, set, nil)
	m.firstDelay = time.Millisecond
	bus := start(t, m)
	if !bus.WaitFor(10*time.Second, func(msgs []bustest.Message) bool {
		n := 0
		for _, m := range msgs {
			if m.Topic == contract.TopicStats {
				n++
			}
		}
		return n >= 2
	}) {
		t.Fatal("fewer than two periodic publishes")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	n := countTopic(bus, contract.TopicStats)
	// Nothing may come over several intervals (a live loop would publish
	// about four times).
	time.Sleep(4 * interval)
	if countTopic(bus, contract.TopicStats) != n {
		t.Errorf("published after Close")
	}
}

// TestFlatTopics publishes plain numbers and clears a value that went away.
func TestFlatTopics(t *testing.T) {
	set := defaultSettings()
	set.flat = true
	m, clk, root := testModule(t, set, nil)
	bus := start(t, m)
	clk.add(5 * time.Second)
	refresh(bus, "c1")
	waitReply(t, bus, "c1")
	for topic, want := range map[string]string{
		"stats/load1":                           "0.42",
		"stats/temperature_c":                   "47.225",
		"stats/cpu_freq_mhz":                    "1800",
		"stats/under_voltage_now":               "0",
		"stats/under_voltage_since_boot":        "0",
		"stats/disk_used_percent/root":          "36.72",
		"stats/net_rx_bytes_per_s/eth0":         "0",
		"stats/memory_used_percent":             "40",
		"stats/disk_used_percent/boot_firmware": "14.17",
	} {
		msg, ok := bus.Retained(topic)
		if !ok {
			t.Errorf("%s not published", topic)
			continue
		}
		if string(msg.Payload) != want || !msg.Opts.Raw || !msg.Opts.Retain || msg.Opts.Expiry != 15*time.Second {
			t.Errorf("%s = %q %+v, want %q raw retained", topic, msg.Payload, msg.Opts, want)
		}
	}
	if _, ok := bus.Retained("stats/fan_rpm"); ok {
		t.Errorf("fan_rpm published on a Pi without fan")
	}

	// A sysfs file whose device went away fails to read; an emptied
	// fixture file stands in for that (the module keeps files open).
	writeFile(t, filepath.Join(root, "sys/class/thermal/thermal_zone0/temp"), "")
	clk.add(5 * time.Second)
	refresh(bus, "c2")
	waitReply(t, bus, "c2")
	if msg, ok := bus.Retained("stats/temperature_c"); !ok || len(msg.Payload) != 0 {
		t.Errorf("temperature_c not cleared: %q", msg.Payload)
	}
	n := 0
	for _, msg := range bus.Messages() {
		if msg.Topic == "stats/temperature_c" && len(msg.Payload) == 0 {
			n++
		}
	}
	clk.add(5 * time.Second)
	refresh(bus, "c3")
	waitReply(t, bus, "c3")
	for _, msg := range bus.Messages() {
		if msg.Topic == "stats/temperature_c" && len(msg.Payload) == 0 {
			n--
		}
	}
	if n != 0 {
		t.Errorf("the clear was published again")
	}
}

// TestUnavailableLoggedOnce logs a lost metric once, not every interval, and
// its return once.
func TestUnavailableLoggedOnce(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, clk, root := testModule(t, defaultSettings(), log)
	bus := start(t, m)
	temp := filepath.Join(root, "sys/class/thermal/thermal_zone0/temp")
	writeFile(t, temp, "")
	for i := range 3 {
		clk.add(5 * time.Second)
		c := string(rune('a' + i))
		refresh(bus, c)
		waitReply(t, bus, c)
	}
	writeFile(t, temp, "47225\n")
	for i := range 2 {
		clk.add(5 * time.Second)
		c := string(rune('x' + i))
		refresh(bus, c)
		waitReply(t, bus, c)
	}
	out := buf.String()
	if n := strings.Count(out, `msg="metric unavailable" metric=temperature`); n != 1 {
		t.Errorf("unavailable logged %d times, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `msg="metric available again" metric=temperature`); n != 1 {
		t.Errorf("recovery logged %d times, want 1:\n%s", n, out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
