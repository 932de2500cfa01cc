package homeassistant

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func ptr[T any](v T) *T { return &v }

// fixtureInput is a Pi 4 with two mounts, Ethernet and Wi-Fi, throttling
// readable, one pin of each mode, the shipped system commands plus one with
// a parameter, PiDoctor configured, and one component left over from before.
func fixtureInput() Input {
	root := contract.Root{Prefix: "picockpit", Device: "10000000a1b2c3d4"}
	dev := contract.Device{ID: root.Device, Serial: "10000000a1b2c3d4", Model: "Raspberry Pi 4 Model B Rev 1.4", Hostname: "kitchen-pi", Arch: "arm64"}
	ts := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	boot := ts.Add(-3 * time.Hour)
	f := false
	return Input{
		Root:   root,
		Device: dev,
		Info:   &contract.Info{Contract: 1, Agent: "1.4.0", Device: dev, Apps: []string{"gpio", "homeassistant", "picontrol", "pidoctor", "stats"}, StartedAt: ts},
		Stats: &contract.Stats{TS: ts, Seq: 1, IntervalS: 5,
			CPU:         &contract.StatsCPU{Percent: 12.5, Cores: 4},
			Uptime:      &contract.StatsUptime{Seconds: 10800, BootTime: &boot},
			Load:        &contract.StatsLoad{Load1: 0.5},
			Memory:      &contract.StatsMemory{TotalBytes: 4 << 30},
			Swap:        &contract.StatsMemory{TotalBytes: 100 << 20},
			Disks:       []contract.StatsDisk{{Mount: "/"}, {Mount: "/boot/firmware"}},
			Net:         []contract.StatsNet{{Interface: "eth0"}, {Interface: "wlan0"}},
			Temperature: &contract.StatsTemperature{SoCCelsius: 47.2, Zone: "cpu-thermal"},
			CPUFreq:     &contract.StatsCPUFreq{MHz: 1500},
			Throttle:    &contract.StatsThrottle{Source: contract.ThrottleSourceFirmware, Now: contract.ThrottleFlags{UnderVoltage: &f, Throttled: &f}},
			WiFi:        []contract.StatsWiFi{{Interface: "wlan0", SignalDBm: -61}},
		},
		Pins: &contract.GPIOPins{Pins: []contract.GPIOPin{
			{Pin: "17", BCM: 17, Name: "relay", Mode: contract.GPIOModeOut},
			{Pin: "27", BCM: 27, Name: "door", Mode: contract.GPIOModeIn},
			{Pin: "18", BCM: 18, Name: "fan", Mode: contract.GPIOModePWM},
		}},
		Commands: &contract.PiControlCatalogue{Contract: 1, Modules: []contract.PiControlModule{{ID: "system", Name: "System", Commands: []contract.PiControlCommand{
			{ID: "poweroff", Name: "Power off", Icon: "mdi:power", Confirm: true, Topic: "picontrol/run/system/poweroff"},
			{ID: "reboot", Name: "Reboot", Icon: "mdi:restart", Confirm: true, Topic: "picontrol/run/system/reboot"},
			{ID: "update-picockpit-client", Name: "Update picockpit-client", Topic: "picontrol/run/system/update-picockpit-client"},
			{ID: "hello", Name: "Say hello", Topic: "picontrol/run/system/hello"},
			{ID: "greet", Name: "Greet", Topic: "picontrol/run/system/greet", Parameters: []contract.PiControlParameter{{Name: "who", Type: "string"}}},
		}}}},
		Settings: Settings{Enabled: true, Prefix: "homeassistant", ConfirmButtons: map[string]bool{"system/reboot": true},
			UpdateCommand: DefaultUpdateCommand, ConfigurationURL: "http://kitchen-pi.local:1880/dashboard/pi"},
		Removed: map[string]string{"gpio_22": "switch"},
	}
}

func TestBuildGolden(t *testing.T) {
	p, _ := Build(fixtureInput())
	got, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "device.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("payload differs from %s (go test -update to accept):\n%s", golden, got)
	}
}

// platformSchema is what Home Assistant documents for each platform used
// (home-assistant.io source/_integrations/{sensor,binary_sensor,switch,
// light,button,update}.mqtt.markdown, Home Assistant 2025.x; the device
// based discovery payload from mqtt.markdown, Home Assistant 2024.11+).
// required lists keys that must be present in a component, allowed every
// key a component may carry here (including the discovery-only "platform"
// and the shared options inherited from the device payload). kind gives
// each key's JSON type.
type platformSchema struct {
	required []string
	allowed  []string
}

var commonKeys = []string{"platform", "unique_id", "name", "icon", "entity_category", "availability", "availability_topic",
	"json_attributes_topic", "json_attributes_template", "qos", "device_class", "enabled_by_default", "object_id", "default_entity_id"}

var schemas = map[string]platformSchema{
	"sensor": {required: []string{"state_topic"}, allowed: []string{"state_topic", "value_template", "unit_of_measurement",
		"state_class", "expire_after", "force_update", "suggested_display_precision", "last_reset_value_template", "options"}},
	"binary_sensor": {required: []string{"state_topic"}, allowed: []string{"state_topic", "value_template", "payload_on",
		"payload_off", "expire_after", "off_delay", "force_update"}},
	"switch": {required: []string{"command_topic"}, allowed: []string{"command_topic", "command_template", "state_topic",
		"value_template", "payload_on", "payload_off", "state_on", "state_off", "optimistic", "retain"}},
	"light": {required: []string{"command_topic"}, allowed: []string{"command_topic", "state_topic", "state_value_template",
		"payload_on", "payload_off", "brightness_command_topic", "brightness_command_template", "brightness_scale",
		"brightness_state_topic", "brightness_value_template", "on_command_type", "optimistic", "retain", "schema"}},
	"button": {required: []string{"command_topic"}, allowed: []string{"command_topic", "command_template", "payload_press", "retain"}},
	"update": {required: []string{}, allowed: []string{"state_topic", "value_template", "command_topic", "payload_install",
		"latest_version_topic", "latest_version_template", "release_summary", "release_url", "title", "entity_picture", "retain"}},
}

// Documented values (device classes, state classes, entity categories).
var (
	sensorDeviceClasses = map[string]bool{"temperature": true, "data_rate": true, "signal_strength": true, "timestamp": true, "frequency": true}
	binaryDeviceClasses = map[string]bool{"problem": true}
	buttonDeviceClasses = map[string]bool{"restart": true, "identify": true, "update": true}
	stateClasses        = map[string]bool{"measurement": true, "total": true, "total_increasing": true}
	entityCategories    = map[string]bool{"config": true, "diagnostic": true}
	safe                = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

func TestPayloadFieldsMatchHomeAssistantSchema(t *testing.T) {
	in := fixtureInput()
	p, _ := Build(in)
	raw, _ := json.Marshal(p)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	// Root of a device discovery payload: device and origin are required.
	for _, k := range []string{"device", "origin", "components"} {
		if _, ok := doc[k]; !ok {
			t.Fatalf("payload has no %q", k)
		}
	}
	for k := range doc {
		switch k {
		case "device", "origin", "components", "availability", "availability_mode", "qos", "state_topic", "command_topic", "encoding":
		default:
			t.Errorf("root key %q is not a documented shared option", k)
		}
	}
	dev := doc["device"].(map[string]any)
	ids, ok := dev["identifiers"].([]any)
	if !ok || len(ids) != 1 || ids[0] != NodeID(in.Root.Device) {
		t.Errorf("device.identifiers = %v", dev["identifiers"])
	}
	for k, v := range dev {
		switch k {
		case "identifiers", "name", "model", "manufacturer", "serial_number", "sw_version", "configuration_url":
			if _, isList := v.([]any); k != "identifiers" && !isList {
				if _, isStr := v.(string); !isStr {
					t.Errorf("device.%s is %T, want a string", k, v)
				}
			}
		default:
			t.Errorf("device key %q not documented", k)
		}
	}
	want := map[string]string{"model": in.Device.Model, "serial_number": in.Device.Serial, "sw_version": "1.4.0", "name": "kitchen-pi",
		"manufacturer": "Raspberry Pi Ltd", "configuration_url": in.Settings.ConfigurationURL}
	for k, v := range want {
		if dev[k] != v {
			t.Errorf("device.%s = %v, want %q", k, dev[k], v)
		}
	}
	origin := doc["origin"].(map[string]any)
	if origin["name"] != OriginName || origin["sw_version"] != "1.4.0" || len(origin) != 2 {
		t.Errorf("origin = %v", origin)
	}
	av := doc["availability"].([]any)
	if len(av) != 1 || av[0].(map[string]any)["topic"] != in.Root.Topic("status") ||
		av[0].(map[string]any)["payload_available"] != "online" || av[0].(map[string]any)["payload_not_available"] != "offline" {
		t.Errorf("availability = %v", av)
	}

	comps := doc["components"].(map[string]any)
	uniq := map[string]string{}
	for id, cv := range comps {
		c := cv.(map[string]any)
		plat, _ := c["platform"].(string)
		if !safe.MatchString(id) {
			t.Errorf("component id %q has characters outside [a-zA-Z0-9_-]", id)
		}
		if len(c) == 1 {
			continue // a removal: platform only
		}
		s, ok := schemas[plat]
		if !ok {
			t.Errorf("%s: platform %q not used by this schema check", id, plat)
			continue
		}
		for _, k := range append([]string{"unique_id", "platform", "name"}, s.required...) {
			if _, ok := c[k]; !ok {
				t.Errorf("%s (%s): required %q missing", id, plat, k)
			}
		}
		allowed := map[string]bool{}
		for _, k := range append(append([]string{}, commonKeys...), s.allowed...) {
			allowed[k] = true
		}
		for k, v := range c {
			if !allowed[k] {
				t.Errorf("%s (%s): key %q is not documented for the platform", id, plat, k)
			}
			switch {
			case strings.HasSuffix(k, "_topic"):
				top, _ := v.(string)
				if !strings.HasPrefix(top, in.Root.Base()+"/") || strings.ContainsAny(top, "+#") {
					t.Errorf("%s: %s %q is not a topic below the device root", id, k, top)
				}
			case strings.HasSuffix(k, "_template"):
				tmpl, _ := v.(string)
				if strings.Count(tmpl, "{%") != strings.Count(tmpl, "%}") || !strings.Contains(tmpl, "{{") || !strings.HasSuffix(tmpl, "}}") {
					t.Errorf("%s: %s %q is not a balanced template", id, k, tmpl)
				}
			case k == "expire_after" || k == "brightness_scale" || k == "suggested_display_precision":
				if n, ok := v.(float64); !ok || n < 0 || n != float64(int(n)) {
					t.Errorf("%s: %s = %v, want a non-negative integer", id, k, v)
				}
			case k == "device_class":
				classes := map[string]map[string]bool{"sensor": sensorDeviceClasses, "binary_sensor": binaryDeviceClasses, "button": buttonDeviceClasses}[plat]
				if !classes[v.(string)] {
					t.Errorf("%s: device_class %q not documented for %s", id, v, plat)
				}
			case k == "state_class":
				if !stateClasses[v.(string)] {
					t.Errorf("%s: state_class %v", id, v)
				}
			case k == "entity_category":
				if !entityCategories[v.(string)] {
					t.Errorf("%s: entity_category %v", id, v)
				}
			default:
				if _, ok := v.(string); !ok {
					t.Errorf("%s: %s is %T, want a string", id, k, v)
				}
			}
		}
		u := c["unique_id"].(string)
		if other, dup := uniq[u]; dup {
			t.Errorf("unique_id %q used by %s and %s", u, other, id)
		}
		uniq[u] = id
		// A sensor with a unit or class of measurement says so.
		if plat == "sensor" && c["unit_of_measurement"] != nil && c["device_class"] != "timestamp" && c["state_class"] == nil {
			t.Errorf("%s: unit without state_class", id)
		}
	}

	// The entities the issue asks for, with their documented classes.
	expect := map[string]map[string]any{
		"cpu":                    {"platform": "sensor", "unit_of_measurement": "%", "state_class": "measurement"},
		"soc_temperature":        {"platform": "sensor", "device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement"},
		"memory":                 {"platform": "sensor", "unit_of_measurement": "%"},
		"disk_root":              {"platform": "sensor", "unit_of_measurement": "%"},
		"disk_boot_firmware":     {"platform": "sensor", "unit_of_measurement": "%"},
		"load1":                  {"platform": "sensor", "state_class": "measurement"},
		"net_eth0_rx":            {"platform": "sensor", "device_class": "data_rate", "unit_of_measurement": "B/s"},
		"net_wlan0_tx":           {"platform": "sensor", "device_class": "data_rate", "unit_of_measurement": "B/s"},
		"wifi_wlan0_signal":      {"platform": "sensor", "device_class": "signal_strength", "unit_of_measurement": "dBm"},
		"last_boot":              {"platform": "sensor", "device_class": "timestamp"},
		"under_voltage":          {"platform": "binary_sensor", "device_class": "problem"},
		"throttled":              {"platform": "binary_sensor", "device_class": "problem"},
		"pidoctor":               {"platform": "binary_sensor", "device_class": "problem", "state_topic": in.Root.Topic("pidoctor/report")},
		"gpio_17":                {"platform": "switch", "command_topic": in.Root.Topic("gpio/17/set"), "state_topic": in.Root.Topic("gpio/17/state"), "payload_on": `{"value":1}`, "state_on": "1"},
		"gpio_27":                {"platform": "binary_sensor", "state_topic": in.Root.Topic("gpio/27/state"), "payload_on": "1"},
		"gpio_18":                {"platform": "light", "brightness_command_topic": in.Root.Topic("gpio/18/set"), "brightness_scale": float64(100)},
		"cmd_system_reboot":      {"platform": "button", "command_topic": in.Root.Topic("picontrol/run/system/reboot"), "device_class": "restart"},
		"cmd_system_hello":       {"platform": "button", "payload_press": "{}"},
		"update":                 {"platform": "update", "state_topic": in.Root.Topic("info"), "command_topic": in.Root.Topic("picontrol/run/system/update-picockpit-client")},
		"gpio_22":                {"platform": "switch"},
		"cmd_system_poweroff":    nil, // confirm, not opted in
		"cmd_system_greet":       nil, // has parameters
		"cmd_system_update_pico": nil,
	}
	for id, fields := range expect {
		c, ok := comps[id].(map[string]any)
		if fields == nil {
			if ok {
				t.Errorf("component %s should not exist", id)
			}
			continue
		}
		if !ok {
			t.Errorf("component %s missing", id)
			continue
		}
		for k, v := range fields {
			if c[k] != v {
				t.Errorf("%s.%s = %v, want %v", id, k, c[k], v)
			}
		}
	}
	if len(comps["gpio_22"].(map[string]any)) != 1 {
		t.Errorf("removed component gpio_22 must carry only its platform: %v", comps["gpio_22"])
	}
	if _, ok := comps["cmd_system_update_picockpit_client"]; ok {
		t.Error("the update command is the update entity's install, not a button")
	}
}

func TestNodeID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10000000a1b2c3d4", "picockpit_10000000a1b2c3d4"},
		{"pi-a_1", "picockpit_pi-a_1"},
	} {
		if got := NodeID(tc.in); got != tc.want {
			t.Errorf("NodeID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	a, b := NodeID("kitchen.pi"), NodeID("kitchen_pi")
	if a == b || !safe.MatchString(a) || !strings.HasPrefix(a, "picockpit_kitchen_pi_") {
		t.Errorf("unsafe ids must map to distinct safe ids: %q %q", a, b)
	}
	if !safe.MatchString(NodeID("ü ber")) {
		t.Errorf("NodeID keeps unsafe characters: %q", NodeID("ü ber"))
	}
}

func TestNoStatsNoSensors(t *testing.T) {
	in := fixtureInput()
	in.Stats, in.Pins, in.Commands, in.Info, in.Removed = nil, nil, nil, nil, nil
	p, _ := Build(in)
	if len(p.Components) != 0 {
		t.Errorf("components without any source: %v", p.Components)
	}
	if p.Device["name"] != "kitchen-pi" {
		t.Errorf("device name = %v", p.Device["name"])
	}
}

func TestComponentIDs(t *testing.T) {
	got := componentIDs([]byte(`{"components":{"a":{"platform":"sensor","unique_id":"x"},"gone":{"platform":"switch"}},"cmps":{"b":{"p":"button","uniq_id":"y"}}}`))
	if len(got) != 2 || got["a"] != "sensor" || got["b"] != "button" {
		t.Errorf("componentIDs = %v", got)
	}
	if componentIDs([]byte("not json")) != nil || componentIDs(nil) != nil {
		t.Error("garbage gives ids")
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
		check             func(Settings) bool
	}{
		{"absent", "", "", func(s Settings) bool {
			return !s.Enabled && s.Prefix == "homeassistant" && s.UpdateCommand == DefaultUpdateCommand
		}},
		{"enabled", `{"enabled":true,"discovery_prefix":"ha/disc","confirm_buttons":["system/reboot"]}`, "",
			func(s Settings) bool { return s.Enabled && s.Prefix == "ha/disc" && s.ConfirmButtons["system/reboot"] }},
		{"no update", `{"update_command":"-"}`, "", func(s Settings) bool { return s.UpdateCommand == "" }},
		{"unknown key", `{"enable":true}`, "homeassistant.enable: unknown field", nil},
		{"bad prefix", `{"discovery_prefix":"home/#"}`, "homeassistant.discovery_prefix", nil},
		{"bad url", `{"configuration_url":"ftp://x"}`, "homeassistant.configuration_url", nil},
		{"bad button", `{"confirm_buttons":["reboot"]}`, "homeassistant.confirm_buttons[0]", nil},
		{"bad update", `{"update_command":"a/b/c"}`, "homeassistant.update_command", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var data []byte
			if tc.in != "" {
				data = []byte(tc.in)
			}
			s, probs := parseConfig(data, "/etc/picockpit-client/picockpit-client.config.json")
			if tc.wantErr != "" {
				if len(probs) == 0 || !strings.Contains(probs[0].Error(), tc.wantErr) || !strings.Contains(probs[0].Error(), "picockpit-client.config.json") {
					t.Fatalf("problems %v, want %q", probs, tc.wantErr)
				}
				return
			}
			if len(probs) > 0 || !tc.check(s) {
				t.Fatalf("settings %+v problems %v", s, probs)
			}
		})
	}
}
