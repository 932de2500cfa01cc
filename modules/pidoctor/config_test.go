package pidoctor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/modules"
)

// TestBrokenRuleReportedOthersLoad: a broken rule is reported with file and
// field; the file's other checks and the other files still load.
func TestBrokenRuleReportedOthersLoad(t *testing.T) {
	broken := `{"id":"a","name":"A","checks":[
	  {"id":"good","name":"Good","builtin":"memory_available"},
	  {"id":"bad","name":"Bad","argv":["/bin/true"],"rule":{"number":{"warn_above":"high"}}},
	  {"id":"also-good","name":"Also good","argv":["/bin/true"],"rule":{"exit_codes":{"0":"ok"}}}
	]}`
	other := `{"id":"b","name":"B","checks":[{"id":"x","name":"X","builtin":"reboot_required"}]}`
	m, probs := load(modules.Env{HostRoot: t.TempDir()}, nil, "", []modules.File{
		{Path: "/etc/picockpit-client/apps/com.picockpit/pidoctor/modules/a.json", Data: []byte(broken)},
		{Path: "/etc/picockpit-client/apps/com.picockpit/pidoctor/modules/b.json", Data: []byte(other)},
	})
	if len(probs) != 1 {
		t.Fatalf("problems %v, want exactly one", probs)
	}
	p := probs[0]
	if p.File != "/etc/picockpit-client/apps/com.picockpit/pidoctor/modules/a.json" || p.Field != "checks[1].rule.number.warn_above" {
		t.Errorf("problem at %s %s, want a.json checks[1].rule.number.warn_above: %v", p.File, p.Field, p)
	}
	if got := m.Checks(); !slices.Equal(got, []string{"a/good", "a/also-good", "b/x"}) {
		t.Errorf("loaded %v", got)
	}
}

// TestCheckProblems: each mistake is named with its field.
func TestCheckProblems(t *testing.T) {
	for _, tc := range []struct {
		check, field, want string
	}{
		{`{"id":"c","name":"C","builtin":"memory_available","colour":1}`, "checks[0].colour", "not for a built-in check"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"colour":1}`, "checks[0].colour", "unknown field"},
		{`{"id":"c","name":"C","argv":["true"]}`, "checks[0].argv[0]", "not an absolute path"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"user":"no-such-user-here"}`, "checks[0].user", "no-such-user-here"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"timeout":"soon"}`, "checks[0].timeout", "duration"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"confirm":true}`, "checks[0].confirm", "not supported in a check"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"require_signature":true}`, "checks[0].require_signature", "not supported in a check"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"options":{}}`, "checks[0].options", "only for built-in checks"},
		{`{"id":"c","name":"C","builtin":"vcgencmd"}`, "checks[0].builtin", "not a built-in check"},
		{`{"id":"c","name":"C","builtin":"throttling","options":{"condition":"hot"}}`, "checks[0].options.condition", "want under_voltage"},
		{`{"id":"c","name":"C","builtin":"memory_available","options":{"mount":"/"}}`, "checks[0].options.mount", "not an option"},
		{`{"id":"c","name":"C","builtin":"disk_free","options":{"mount":"data"}}`, "checks[0].options.mount", "absolute"},
		{`{"id":"c","name":"C","builtin":"disk_free","options":{"mnt":"/"}}`, "checks[0].options.mnt", "unknown field"},
		{`{"id":"c","name":"C","builtin":"soc_temperature","rule":{"exit_codes":{"0":"ok"}}}`, "checks[0].rule.exit_codes", "no exit code"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{}}`, "checks[0].rule", "exactly one of"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"exit_codes":{"0":"ok"},"number":{"warn_above":1}}}`, "checks[0].rule", "exactly one of"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"exit_codes":{"0":"good"}}}`, "checks[0].rule.exit_codes.0", "want ok, warn, fail or error"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"exit_codes":{"256":"ok"}}}`, "checks[0].rule.exit_codes.256", "exit code"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"match":[{"pattern":"(","verdict":"fail"}]}}`, "checks[0].rule.match[0].pattern", "missing closing )"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"match":[{"pattern":"x","verdict":"bad"}]}}`, "checks[0].rule.match[0].verdict", "want ok"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"number":{}}}`, "checks[0].rule.number", "at least one"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"number":{"warn_above":9,"fail_above":5}}}`, "checks[0].rule.number.warn_above", "above fail_above"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"number":{"pattern":"(a)(b)","warn_above":1}}}`, "checks[0].rule.number.pattern", "one capture group"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"rule":{"number":{"warn_above":1},"default":"ok"}}`, "checks[0].rule.default", "only with match"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"message":"{valeu}"}`, "checks[0].message", "unknown placeholder {valeu}"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"remedy":{"fial":"x"}}`, "checks[0].remedy.fial", "unknown field"},
		{`{"id":"c","name":"C","argv":["/bin/true"],"category":"Power Supply"}`, "checks[0].category", "not a valid category"},
		{`{"id":"C C","name":"C","builtin":"memory_available"}`, "checks[0].id", "not a valid id"},
	} {
		_, probs := tryDecode(tc.check)
		found := false
		for _, p := range probs {
			if p.File == "m.json" && p.Field == tc.field && strings.Contains(p.Err.Error(), tc.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: problems %v; want %s: ...%s...", tc.check, probs, tc.field, tc.want)
		}
	}
}

func TestConfigSection(t *testing.T) {
	cfg, probs := decodeConfig([]byte(`{"interval":"5m","max_parallel":2,"default_timeout":"20s","kill_grace":"2s","output_limit":4096}`), "c.json")
	if len(probs) > 0 || cfg.Interval != 5*time.Minute || cfg.MaxParallel != 2 || cfg.DefaultTimeout != 20*time.Second || cfg.OutputLimit != 4096 {
		t.Errorf("config %+v, %v", cfg, probs)
	}
	if cfg, _ := decodeConfig(nil, ""); cfg.Interval != 0 || cfg.MaxParallel != DefaultMaxParallel {
		t.Errorf("default config %+v: the periodic run must be off by default", cfg)
	}
	for in, field := range map[string]string{
		`{"interval":"1s"}`:       "pidoctor.interval",
		`{"max_parallel":0}`:      "pidoctor.max_parallel",
		`{"default_timeout":"x"}`: "pidoctor.default_timeout",
		`{"intervall":"1m"}`:      "pidoctor.intervall",
	} {
		_, probs := decodeConfig([]byte(in), "c.json")
		if len(probs) != 1 || probs[0].Field != field || probs[0].File != "c.json" {
			t.Errorf("%s: %v, want one problem at %s", in, probs, field)
		}
	}
}

func schemaErr(sch *jsonschema.Schema, data []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

// TestShippedChecks: the shipped files load without a problem and validate
// against the module schema, which refuses what the decoder refuses.
func TestShippedChecks(t *testing.T) {
	paths, _ := filepath.Glob("../../etc/picockpit-client/apps/com.picockpit/pidoctor/modules/*.json")
	if len(paths) == 0 {
		t.Fatal("no shipped checks")
	}
	sch := agenttest.MustSchema(t, "pidoctor-module")
	var files []modules.File
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemaErr(sch, b); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		files = append(files, modules.File{Path: p, Data: b})
	}
	m, probs := load(modules.Env{HostRoot: t.TempDir()}, nil, "", files)
	if len(probs) > 0 {
		t.Errorf("shipped checks: %v", probs)
	}
	// Everything the issue lists has a check.
	for _, want := range []string{"hardware/under-voltage", "hardware/soc-temperature", "hardware/sd-card-errors", "hardware/wifi-signal",
		"system/disk-root", "system/read-only-root", "system/memory-available", "system/memory-pressure", "system/reboot-required",
		"system/clock-synchronized", "system/failed-units", "system/pending-updates", "system/default-password"} {
		if !slices.Contains(m.Checks(), want) {
			t.Errorf("no shipped check %s", want)
		}
	}
	cat, _ := json.Marshal(m.catalogue())
	if err := schemaErr(agenttest.MustSchema(t, "pidoctor-checks"), cat); err != nil {
		t.Errorf("catalogue: %v", err)
	}
	if bytes.Contains(cat, []byte("argv")) || bytes.Contains(cat, []byte("journalctl")) || bytes.Contains(cat, []byte(`"user"`)) || bytes.Contains(cat, []byte("/bin/")) {
		t.Errorf("the catalogue shows command details: %s", cat)
	}
	for name, bad := range map[string]string{
		"unknown field":      `{"id":"m","name":"M","checks":[{"id":"c","name":"C","builtin":"memory_available","colour":1}]}`,
		"command on builtin": `{"id":"m","name":"M","checks":[{"id":"c","name":"C","builtin":"memory_available","argv":["/bin/true"]}]}`,
		"two rule kinds":     `{"id":"m","name":"M","checks":[{"id":"c","name":"C","argv":["/bin/true"],"rule":{"exit_codes":{"0":"ok"},"match":[{"pattern":"x","verdict":"ok"}]}}]}`,
		"bad verdict":        `{"id":"m","name":"M","checks":[{"id":"c","name":"C","argv":["/bin/true"],"rule":{"exit_codes":{"0":"good"}}}]}`,
		"parameters":         `{"id":"m","name":"M","checks":[{"id":"c","name":"C","argv":["/bin/true"],"parameters":[]}]}`,
		"exit codes builtin": `{"id":"m","name":"M","checks":[{"id":"c","name":"C","builtin":"soc_temperature","rule":{"exit_codes":{"0":"ok"}}}]}`,
		"no program":         `{"id":"m","name":"M","checks":[{"id":"c","name":"C"}]}`,
		"relative program":   `{"id":"m","name":"M","checks":[{"id":"c","name":"C","argv":["true"]}]}`,
		"no checks":          `{"id":"m","name":"M","checks":[]}`,
	} {
		if schemaErr(sch, []byte(bad)) == nil {
			t.Errorf("%s: the schema accepts %s", name, bad)
		}
		l := &loader{cfg: defaultConfig()}
		if _, probs := l.decodeModule(modules.File{Path: "x.json", Data: []byte(bad)}); len(probs) == 0 {
			t.Errorf("%s: the decoder accepts %s", name, bad)
		}
	}
	cfgSch := agenttest.MustSchema(t, "pidoctor-config")
	good := `{"interval":"15m","max_parallel":4,"default_timeout":"30s","kill_grace":"5s","output_limit":65536}`
	if err := schemaErr(cfgSch, []byte(good)); err != nil {
		t.Errorf("config schema: %v", err)
	}
	if _, probs := decodeConfig([]byte(good), "c.json"); len(probs) > 0 {
		t.Errorf("the decoder refuses what the schema accepts: %v", probs)
	}
}

func TestDescribe(t *testing.T) {
	m, probs := load(modules.Env{HostRoot: t.TempDir()}, []byte(`{"interval":"15m"}`), "c.json", []modules.File{{Path: "a.json",
		Data: []byte(`{"id":"a","name":"A","checks":[{"id":"t","name":"Temp","category":"thermal","builtin":"soc_temperature"},
		{"id":"e","name":"Echo","argv":["/bin/echo"],"timeout":"5s"}]}`)}})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	got := m.Describe()
	want := []modules.Loaded{{Items: []string{"periodic run every 15m0s, 4 checks at once"}},
		{File: "a.json", Items: []string{`check a/t "Temp" (thermal, builtin soc_temperature)`, `check a/e "Echo" (general, as root, timeout 5s)`}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Describe() = %q\nwant %q", got, want)
	}
}

// TestEveryMisspelledKeyReported: two unknown keys in a file are two
// problems, each with its field, not the first alone.
func TestEveryMisspelledKeyReported(t *testing.T) {
	_, probs := load(modules.Env{HostRoot: t.TempDir()}, nil, "", []modules.File{
		{Path: "m.json", Data: []byte(`{"id":"a","name":"A","descripton":"x","chekcs":[]}`)}})
	fields := map[string]bool{}
	for _, p := range probs {
		fields[p.Field] = true
	}
	if !fields["descripton"] || !fields["chekcs"] {
		t.Errorf("problems %v, want one for descripton and one for chekcs", probs)
	}
}
