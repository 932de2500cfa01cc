package homeassistant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// settle is how long the module waits after a change of the agent's
// retained topics before it rebuilds the payload, so that a reload (every
// catalogue republished at once) gives one discovery message.
var settle = 250 * time.Millisecond

// minRepublish is the least time between two republishes forced by Home
// Assistant's birth message.
var minRepublish = time.Second

// maxKnown bounds the component ids remembered for removal (a forged
// retained config on our topic must not grow the payload without end).
const maxKnown = 512

// Kind returns the homeassistant module kind (main config section
// "homeassistant"; no module files).
func Kind() modules.Kind {
	return modules.Kind{Name: "homeassistant", Load: load}
}

func load(env modules.Env, section []byte, sectionFile string, files []modules.File) (modules.Module, []modules.Problem) {
	var probs []modules.Problem
	for _, f := range files {
		probs = append(probs, modules.Problem{File: f.Path, Err: errNoFiles})
	}
	set, p := parseConfig(section, sectionFile)
	probs = append(probs, p...)
	if len(p) > 0 || !set.Enabled {
		return nil, probs
	}
	log := env.Log
	if log == nil {
		log = slog.Default()
	}
	return &Module{env: env, set: set, log: log.With("module", "homeassistant")}, probs
}

// Module publishes and maintains the device discovery message.
type Module struct {
	env modules.Env
	set Settings
	log *slog.Logger
	wg  sync.WaitGroup
	// shape is every metric, mount and interface seen in stats since the
	// start: an entity does not vanish because one sample lacks its value.
	shape *contract.Stats

	mu      sync.Mutex
	pending map[string]string // component ids seen on the broker, not yet merged
}

// Start implements modules.Module.
func (m *Module) Start(ctx context.Context, bus modules.Bus) error {
	d, ok := bus.(modules.Discovery)
	if !ok {
		return errors.New("homeassistant: the agent's bus cannot publish a discovery tree")
	}
	if err := d.ClaimDiscoveryTree(m.set.Prefix); err != nil {
		return err
	}
	topic := ConfigTopic(m.env.Root.Device)
	haOnline := make(chan struct{}, 1)
	if err := d.SubscribeDiscovery("status", func(p []byte) {
		if string(p) == "online" {
			select {
			case haOnline <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		return err
	}
	// What the broker holds on our config topic: at start, what a previous
	// run left there (components that may need removing). Every message is
	// merged, so our own echo cannot hide an older one.
	seen := make(chan struct{}, 1)
	if err := d.SubscribeDiscovery(topic, func(p []byte) {
		ids := componentIDs(p)
		m.mu.Lock()
		if m.pending == nil {
			m.pending = map[string]string{}
		}
		for id, plat := range ids {
			if len(m.pending) < maxKnown {
				m.pending[id] = plat
			}
		}
		m.mu.Unlock()
		select {
		case seen <- struct{}{}:
		default:
		}
	}); err != nil {
		return err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.loop(ctx, d, topic, haOnline, seen)
	}()
	return nil
}

// Close implements modules.Module.
func (m *Module) Close() error {
	m.wg.Wait()
	return nil
}

func (m *Module) loop(ctx context.Context, d modules.Discovery, topic string, haOnline <-chan struct{}, seen <-chan struct{}) {
	known := componentIDs(d.PublishedDiscovery(topic))
	if known == nil {
		known = map[string]string{}
	}
	var last []byte
	var changed <-chan struct{}
	publish := func(force bool) {
		in, ch := m.input(d)
		changed = ch
		_, platforms := Build(in) // first pass: which ids exist now
		removed := map[string]string{}
		for id, p := range known {
			if _, ok := platforms[id]; !ok {
				removed[id] = p
			}
		}
		in.Removed = removed
		payload, platforms := Build(in)
		b, err := json.Marshal(payload)
		if err != nil {
			m.log.Error("discovery payload", "err", err)
			return
		}
		for id, p := range platforms {
			if len(known) < maxKnown {
				known[id] = p
			}
		}
		if !force && bytes.Equal(b, last) {
			return
		}
		if err := d.PublishDiscovery(topic, b); err != nil {
			m.log.Error("publish discovery", "err", err)
			return
		}
		if len(removed) > 0 && !bytes.Equal(b, last) {
			m.log.Info("home assistant discovery: removing entities", "components", sortedKeys(removed))
		}
		last = b
	}
	publish(true)
	var lastForced time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-haOnline:
			// Anyone may publish on the status topic: at most one forced
			// republish a second (the retained config is on the broker
			// anyway).
			if time.Since(lastForced) < minRepublish {
				continue
			}
			lastForced = time.Now()
			m.log.Info("home assistant came online; publishing discovery again")
			publish(true)
		case <-seen:
			m.mu.Lock()
			ids := m.pending
			m.pending = nil
			m.mu.Unlock()
			grew := false
			for id, plat := range ids {
				if _, ok := known[id]; !ok && len(known) < maxKnown {
					known[id] = plat
					grew = true
				}
			}
			if grew {
				publish(false)
			}
		case <-changed:
			select {
			case <-time.After(settle):
			case <-ctx.Done():
				return
			}
			publish(false)
		}
	}
}

// input reads the agent's retained topics; the channel is closed at their
// next change.
func (m *Module) input(d modules.Discovery) (Input, <-chan struct{}) {
	in := Input{Root: m.env.Root, Device: m.env.Device, Settings: m.set}
	raw, ch := d.Retained(contract.TopicInfo)
	if raw != nil {
		var v contract.Info
		if json.Unmarshal(raw, &v) == nil {
			in.Info = &v
			if v.Device.ID != "" {
				in.Device = v.Device
			}
		}
	}
	if raw, _ := d.Retained(contract.TopicStats); raw != nil {
		var v contract.Stats
		if json.Unmarshal(raw, &v) == nil {
			m.shape = mergeShape(m.shape, &v)
			in.Stats = m.shape
		}
	}
	if raw, _ := d.Retained(contract.TopicGPIOPins); raw != nil {
		var v contract.GPIOPins
		if json.Unmarshal(raw, &v) == nil {
			in.Pins = &v
		}
	}
	if raw, _ := d.Retained(contract.TopicPiControlCommands); raw != nil {
		var v contract.PiControlCatalogue
		if json.Unmarshal(raw, &v) == nil {
			in.Commands = &v
		}
	}
	return in, ch
}

// mergeShape adds what cur has to shape (nil: a copy of cur's shape).
func mergeShape(shape, cur *contract.Stats) *contract.Stats {
	if shape == nil {
		shape = &contract.Stats{}
	}
	shape.IntervalS = cur.IntervalS
	if cur.CPU != nil {
		shape.CPU = cur.CPU
	}
	if cur.Temperature != nil {
		shape.Temperature = cur.Temperature
	}
	if cur.Memory != nil {
		shape.Memory = cur.Memory
	}
	if cur.Swap != nil && cur.Swap.TotalBytes > 0 {
		shape.Swap = cur.Swap
	}
	if cur.Load != nil {
		shape.Load = cur.Load
	}
	if cur.Uptime != nil {
		shape.Uptime = cur.Uptime
	}
	if cur.CPUFreq != nil {
		shape.CPUFreq = cur.CPUFreq
	}
	if cur.Fan != nil {
		shape.Fan = cur.Fan
	}
	if cur.Throttle != nil {
		shape.Throttle = cur.Throttle
	}
	for _, d := range cur.Disks {
		if !hasDisk(shape.Disks, d.Mount) {
			shape.Disks = append(shape.Disks, contract.StatsDisk{Mount: d.Mount})
		}
	}
	for _, n := range cur.Net {
		if !hasNet(shape.Net, n.Interface) {
			shape.Net = append(shape.Net, contract.StatsNet{Interface: n.Interface})
		}
	}
	for _, w := range cur.WiFi {
		if !hasWiFi(shape.WiFi, w.Interface) {
			shape.WiFi = append(shape.WiFi, contract.StatsWiFi{Interface: w.Interface})
		}
	}
	return shape
}

func hasDisk(l []contract.StatsDisk, mount string) bool {
	for _, d := range l {
		if d.Mount == mount {
			return true
		}
	}
	return false
}

func hasNet(l []contract.StatsNet, iface string) bool {
	for _, n := range l {
		if n.Interface == iface {
			return true
		}
	}
	return false
}

func hasWiFi(l []contract.StatsWiFi, iface string) bool {
	for _, w := range l {
		if w.Interface == iface {
			return true
		}
	}
	return false
}
