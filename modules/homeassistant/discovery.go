// Package homeassistant publishes Home Assistant MQTT device-based discovery
// for the agent: one retained message per device on
// {discovery_prefix}/device/picockpit_{device}/config that describes every
// entity, all of them reading the agent's own topics (the retained stats,
// GPIO states, info, PiDoctor report) with value templates and driving the
// existing request topics. There is no second telemetry stream.
//
// The payload follows Home Assistant's MQTT documentation
// (home-assistant.io source/_integrations/mqtt.markdown, "Device discovery
// payload", the device-based discovery introduced in Home Assistant 2024.11,
// and the platform pages sensor.mqtt, binary_sensor.mqtt, switch.mqtt,
// light.mqtt, button.mqtt and update.mqtt as of Home Assistant 2025.x):
// shared "device", "origin" and "availability" at the root, one mapping per
// entity under "components", each with "platform" and "unique_id". A
// component is removed by publishing it with nothing but its platform (Home
// Assistant core: "If the dict is empty after removing the platform, the
// payload is assumed to remove the existing config"); the whole device is
// removed by an empty retained payload.
package homeassistant

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// PiDoctor's app name and report topic. They are not in agent/contract yet;
// the pidoctor module defines them (extension point: switch to the contract
// constants once they exist there).
const (
	PiDoctorApp         = "pidoctor"
	TopicPiDoctorReport = "pidoctor/report"
)

// Origin names the software behind the discovery messages.
const OriginName = "picockpit-client"

// Input is everything the payload is built from: the agent's own retained
// topics as published, and the settings.
type Input struct {
	Root     contract.Root
	Device   contract.Device
	Info     *contract.Info
	Stats    *contract.Stats
	Pins     *contract.GPIOPins
	Commands *contract.PiControlCatalogue
	Settings Settings
	// Removed maps ids of components published before and gone now to their
	// platform: they are sent as platform-only entries, which removes them.
	Removed map[string]string
}

// Component is one entity of the device payload.
type Component map[string]any

// Payload is a device discovery message.
type Payload struct {
	Device       map[string]any       `json:"device"`
	Origin       map[string]any       `json:"origin"`
	Availability []map[string]any     `json:"availability"`
	QoS          int                  `json:"qos"`
	Components   map[string]Component `json:"components"`
}

// NodeID is the device's object id in the discovery topic: "picockpit_"
// and the device id, with characters outside [a-zA-Z0-9_-] replaced by "_"
// and, when anything was replaced, a short hash of the id so that two ids
// never share a node.
func NodeID(device string) string {
	safe := safeID(device)
	if safe != device {
		h := fnv.New32a()
		h.Write([]byte(device))
		safe += fmt.Sprintf("_%08x", h.Sum32())
	}
	return "picockpit_" + safe
}

func safeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// ConfigTopic is the discovery topic relative to the discovery prefix.
func ConfigTopic(device string) string { return "device/" + NodeID(device) + "/config" }

// FullConfigTopic is the full discovery topic under prefix (what
// `picockpit-client disconnect` clears with an empty retained message).
func FullConfigTopic(prefix, device string) string { return prefix + "/" + ConfigTopic(device) }

// Build returns the discovery payload, and the platform of every component
// in it (removals excluded).
func Build(in Input) (Payload, map[string]string) {
	node := NodeID(in.Root.Device)
	b := builder{in: in, node: node, comps: map[string]Component{}, platforms: map[string]string{}}
	b.stats()
	b.throttle()
	b.pidoctor()
	b.gpio()
	b.buttons()
	b.update()
	for id, p := range in.Removed {
		if _, ok := b.comps[id]; !ok {
			b.comps[id] = Component{"platform": p}
		}
	}

	dev := map[string]any{"identifiers": []string{node}}
	name := in.Settings.Name
	if name == "" {
		name = in.Device.Hostname
	}
	if name == "" {
		name = "Raspberry Pi " + in.Root.Device
	}
	dev["name"] = name
	if in.Device.Model != "" {
		dev["model"] = in.Device.Model
		if strings.HasPrefix(in.Device.Model, "Raspberry Pi") {
			dev["manufacturer"] = "Raspberry Pi Ltd"
		}
	}
	if in.Device.Serial != "" {
		dev["serial_number"] = in.Device.Serial
	}
	if in.Info != nil && in.Info.Agent != "" {
		dev["sw_version"] = in.Info.Agent
	}
	if in.Settings.ConfigurationURL != "" {
		dev["configuration_url"] = in.Settings.ConfigurationURL
	}
	origin := map[string]any{"name": OriginName}
	if in.Info != nil && in.Info.Agent != "" {
		origin["sw_version"] = in.Info.Agent
	}
	return Payload{
		Device: dev,
		Origin: origin,
		Availability: []map[string]any{{
			"topic":                 in.Root.Topic(contract.TopicStatus),
			"payload_available":     contract.StatusOnline,
			"payload_not_available": contract.StatusOffline,
		}},
		QoS:        1,
		Components: b.comps,
	}, b.platforms
}

type builder struct {
	in        Input
	node      string
	comps     map[string]Component
	platforms map[string]string
}

func (b *builder) add(id, platform string, c Component) {
	// Ids are made of safe characters; a clash (two mounts that map to the
	// same id) gets a numeric suffix.
	base := id
	for n := 2; ; n++ {
		if _, taken := b.comps[id]; !taken {
			break
		}
		id = fmt.Sprintf("%s_%d", base, n)
	}
	c["platform"] = platform
	c["unique_id"] = b.node + "_" + id
	b.comps[id] = c
	b.platforms[id] = platform
}

func (b *builder) topic(rel string) string { return b.in.Root.Topic(rel) }

// orNone renders expr when guard holds and "None" otherwise, which Home
// Assistant's MQTT sensors take as "unknown".
func orNone(guard, expr string) string {
	return "{{ " + expr + " if " + guard + " else none }}"
}

// jinjaString quotes s as a Jinja string literal.
func jinjaString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// pick selects the entry of the list field whose key equals name.
func pick(list, key, name, field string) string {
	return "{% set x = (value_json." + list + " or []) | selectattr(" + jinjaString(key) + ", 'eq', " + jinjaString(name) +
		") | first | default(none) %}{{ x." + field + " if x is not none and x." + field + " is not none else none }}"
}

func (b *builder) expireAfter() int {
	iv := 5.0
	if b.in.Stats != nil && b.in.Stats.IntervalS > 0 {
		iv = b.in.Stats.IntervalS
	}
	return int(math.Ceil(3 * iv))
}

func (b *builder) sensor(id, name, tmpl string, extra Component) {
	c := Component{
		"name":           name,
		"state_topic":    b.topic(contract.TopicStats),
		"value_template": tmpl,
		"expire_after":   b.expireAfter(),
	}
	for k, v := range extra {
		c[k] = v
	}
	b.add(id, "sensor", c)
}

func measurement(unit, class string) Component {
	c := Component{"state_class": "measurement"}
	if unit != "" {
		c["unit_of_measurement"] = unit
	}
	if class != "" {
		c["device_class"] = class
	}
	return c
}

func (b *builder) stats() {
	s := b.in.Stats
	if s == nil {
		return
	}
	if s.CPU != nil {
		b.sensor("cpu", "CPU", orNone("value_json.cpu", "value_json.cpu.percent"), with(measurement("%", ""), "icon", "mdi:cpu-64-bit"))
	}
	if s.Temperature != nil {
		b.sensor("soc_temperature", "SoC temperature", orNone("value_json.temperature", "value_json.temperature.soc_c"), measurement("°C", "temperature"))
	}
	if s.Memory != nil {
		b.sensor("memory", "Memory used", orNone("value_json.memory", "value_json.memory.used_percent"), with(measurement("%", ""), "icon", "mdi:memory"))
	}
	if s.Swap != nil && s.Swap.TotalBytes > 0 {
		b.sensor("swap", "Swap used", orNone("value_json.swap", "value_json.swap.used_percent"), with(measurement("%", ""), "entity_category", "diagnostic"))
	}
	if s.Load != nil {
		for _, l := range []struct{ id, name string }{{"load1", "Load (1 min)"}, {"load5", "Load (5 min)"}, {"load15", "Load (15 min)"}} {
			b.sensor(l.id, l.name, orNone("value_json.load", "value_json.load."+l.id), with(measurement("", ""), "icon", "mdi:gauge"))
		}
	}
	for _, d := range s.Disks {
		id := "disk_" + slug(d.Mount)
		b.sensor(id, "Disk "+d.Mount, pick("disks", "mount", d.Mount, "used_percent"), with(measurement("%", ""), "icon", "mdi:harddisk"))
	}
	for _, n := range s.Net {
		id := "net_" + slug(n.Interface)
		b.sensor(id+"_rx", n.Interface+" received", pick("net", "interface", n.Interface, "rx_bytes_per_s"),
			with(measurement("B/s", "data_rate"), "suggested_display_precision", 0))
		b.sensor(id+"_tx", n.Interface+" sent", pick("net", "interface", n.Interface, "tx_bytes_per_s"),
			with(measurement("B/s", "data_rate"), "suggested_display_precision", 0))
	}
	for _, w := range s.WiFi {
		b.sensor("wifi_"+slug(w.Interface)+"_signal", w.Interface+" signal", pick("wifi", "interface", w.Interface, "signal_dbm"),
			with(measurement("dBm", "signal_strength"), "entity_category", "diagnostic"))
	}
	if s.Uptime != nil {
		// Home Assistant shows uptime as the boot time ("3 days ago"); a
		// seconds counter would write a state on every sample.
		b.sensor("last_boot", "Last boot", orNone("value_json.uptime and value_json.uptime.boot_time", "value_json.uptime.boot_time"),
			Component{"device_class": "timestamp", "entity_category": "diagnostic"})
	}
	if s.CPUFreq != nil {
		b.sensor("cpu_freq", "CPU frequency", orNone("value_json.cpu_freq", "value_json.cpu_freq.mhz"),
			with(measurement("MHz", "frequency"), "entity_category", "diagnostic"))
	}
	if s.Fan != nil {
		b.sensor("fan", "Fan", orNone("value_json.fan", "value_json.fan.rpm"), with(measurement("rpm", ""), "icon", "mdi:fan"))
	}
}

func with(c Component, k string, v any) Component {
	c[k] = v
	return c
}

func (b *builder) throttle() {
	s := b.in.Stats
	if s == nil || s.Throttle == nil {
		return
	}
	flag := func(name string) string {
		return "{% set t = value_json.throttle %}{{ none if t is none or t.now." + name + " is none else ('ON' if t.now." + name + " else 'OFF') }}"
	}
	attrs := "{{ {'since_boot': value_json.throttle.since_boot if value_json.throttle else none, 'source': value_json.throttle.source if value_json.throttle else none} | tojson }}"
	for _, f := range []struct{ id, name, field string }{
		{"under_voltage", "Under-voltage", "under_voltage"},
		{"throttled", "Throttled", "throttled"},
	} {
		b.add(f.id, "binary_sensor", Component{
			"name":                     f.name,
			"device_class":             "problem",
			"state_topic":              b.topic(contract.TopicStats),
			"value_template":           flag(f.field),
			"payload_on":               "ON",
			"payload_off":              "OFF",
			"expire_after":             b.expireAfter(),
			"json_attributes_topic":    b.topic(contract.TopicStats),
			"json_attributes_template": attrs,
		})
	}
}

func (b *builder) pidoctor() {
	if b.in.Info == nil || !contains(b.in.Info.Apps, PiDoctorApp) {
		return
	}
	b.add("pidoctor", "binary_sensor", Component{
		"name":                     "Diagnostics",
		"device_class":             "problem",
		"state_topic":              b.topic(TopicPiDoctorReport),
		"value_template":           "{{ none if not value_json.summary else ('OFF' if value_json.summary.worst == 'ok' else 'ON') }}",
		"payload_on":               "ON",
		"payload_off":              "OFF",
		"json_attributes_topic":    b.topic(TopicPiDoctorReport),
		"json_attributes_template": "{{ {'worst': value_json.summary.worst if value_json.summary else none, 'counts': value_json.summary.counts if value_json.summary else none, 'ts': value_json.ts} | tojson }}",
		"entity_category":          "diagnostic",
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// GPIO payloads: the set requests Home Assistant sends and the rendered
// states it compares them with.
const (
	payloadOn  = `{"value":1}`
	payloadOff = `{"value":0}`
)

func (b *builder) gpio() {
	if b.in.Pins == nil {
		return
	}
	for _, p := range b.in.Pins.Pins {
		name := p.Name
		if name == "" {
			name = "GPIO " + p.Pin
		}
		id := "gpio_" + slug(p.Pin)
		state := b.topic(contract.TopicGPIOState(p.Pin))
		set := b.topic(contract.TopicGPIOSet(p.Pin))
		value := "{{ none if value_json.error else value_json.value }}"
		switch p.Mode {
		case contract.GPIOModeOut:
			b.add(id, "switch", Component{
				"name": name, "command_topic": set, "payload_on": payloadOn, "payload_off": payloadOff,
				"state_topic": state, "value_template": value, "state_on": "1", "state_off": "0",
			})
		case contract.GPIOModeIn:
			b.add(id, "binary_sensor", Component{
				"name": name, "state_topic": state, "value_template": value, "payload_on": "1", "payload_off": "0",
			})
		case contract.GPIOModePWM:
			b.add(id, "light", Component{
				"name": name, "command_topic": set, "payload_on": payloadOn, "payload_off": payloadOff,
				"state_topic":                 state,
				"state_value_template":        "{{ none if value_json.error else ('" + payloadOn + "' if value_json.value == 1 else '" + payloadOff + "') }}",
				"brightness_command_topic":    set,
				"brightness_command_template": "{{ {'pwm': {'duty': value / 100}} | tojson }}",
				"brightness_scale":            100,
				"brightness_state_topic":      state,
				"brightness_value_template":   "{{ (value_json.pwm.duty * 100) | round(0) | int if value_json.pwm else none }}",
			})
		}
	}
}

func (b *builder) buttons() {
	if b.in.Commands == nil {
		return
	}
	for _, m := range b.in.Commands.Modules {
		for _, c := range m.Commands {
			key := m.ID + "/" + c.ID
			if len(c.Parameters) > 0 || (c.Confirm && !b.in.Settings.ConfirmButtons[key]) || key == b.in.Settings.UpdateCommand {
				continue
			}
			comp := Component{
				"name":          c.Name,
				"command_topic": b.topic(contract.PiControlRunTopic(m.ID, c.ID)),
				"payload_press": "{}",
				// The retained result of the last run, for the attributes.
				"json_attributes_topic":    b.topic(contract.PiControlResultTopic(m.ID, c.ID)),
				"json_attributes_template": "{{ {'status': value_json.status, 'exit_code': value_json.exit_code, 'error': value_json.error, 'ts': value_json.ts} | tojson }}",
			}
			if strings.HasPrefix(c.Icon, "mdi:") {
				comp["icon"] = c.Icon
			}
			if c.ID == "reboot" {
				comp["device_class"] = "restart"
			}
			b.add("cmd_"+slug(m.ID)+"_"+slug(c.ID), "button", comp)
		}
	}
}

func (b *builder) update() {
	if b.in.Info == nil {
		return
	}
	c := Component{
		"name":        "picockpit-client",
		"state_topic": b.topic(contract.TopicInfo),
		// Only the installed version is known: the latest one would need
		// apt's lists (extension point: a latest_version_topic).
		"value_template":  "{{ {'installed_version': value_json.agent, 'title': 'picockpit-client'} | tojson }}",
		"entity_category": "config",
	}
	if b.in.Commands != nil && b.in.Settings.UpdateCommand != "" {
		mod, cmd, _ := strings.Cut(b.in.Settings.UpdateCommand, "/")
		for _, m := range b.in.Commands.Modules {
			for _, cc := range m.Commands {
				if m.ID == mod && cc.ID == cmd && len(cc.Parameters) == 0 {
					c["command_topic"] = b.topic(contract.PiControlRunTopic(mod, cmd))
					c["payload_install"] = "{}"
				}
			}
		}
	}
	b.add("update", "update", c)
}

// slug makes a component id part: lower case [a-z0-9_], "/" alone is "root".
func slug(s string) string {
	if strings.Trim(s, "/") == "" {
		return "root"
	}
	out := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, strings.Trim(s, "/"))
	return out
}

// componentIDs lists the ids of the non-removal components of a published
// payload (what a previous run or instance published), with their platform.
func componentIDs(payload []byte) map[string]string {
	var p struct {
		Components map[string]map[string]any `json:"components"`
		Cmps       map[string]map[string]any `json:"cmps"`
	}
	if len(payload) == 0 || json.Unmarshal(payload, &p) != nil {
		return nil
	}
	out := map[string]string{}
	for _, m := range []map[string]map[string]any{p.Components, p.Cmps} {
		for id, c := range m {
			plat, _ := c["platform"].(string)
			if plat == "" {
				plat, _ = c["p"].(string)
			}
			if plat != "" && len(c) > 1 {
				out[id] = plat
			}
		}
	}
	return out
}

// sortedKeys is for deterministic logs.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
