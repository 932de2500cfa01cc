package pistats

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/picockpit/picockpit-client/agent/agenttest"
)

func validate(t *testing.T, sch *jsonschema.Schema, name string, data []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("%s does not validate: %v", name, err)
	}
}

// TestGoldenSnapshotsValidate validates every golden snapshot against
// docs/schemas/stats.schema.json.
func TestGoldenSnapshotsValidate(t *testing.T) {
	sch := agenttest.MustSchema(t, "stats.schema.json")
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if filepath.Base(f) == "throttle.json" {
			continue // a map of throttle objects, not a snapshot
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		validate(t, sch, f, b)
		n++
	}
	if n < 2*len(fixtures) {
		t.Errorf("validated %d golden snapshots, want at least %d", n, 2*len(fixtures))
	}
}

// TestSchemaRejects makes sure the schema is not vacuous: made-up or
// mistyped values must fail.
func TestSchemaRejects(t *testing.T) {
	sch := agenttest.MustSchema(t, "stats.schema.json")
	good, err := os.ReadFile(filepath.Join("testdata", "golden", "pi4.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(m map[string]any){
		"missing metric key":   func(m map[string]any) { delete(m, "temperature") },
		"unknown key":          func(m map[string]any) { m["bogus"] = 1 },
		"percent above 100":    func(m map[string]any) { m["cpu"].(map[string]any)["percent"] = 140 },
		"string for a number":  func(m map[string]any) { m["load"].(map[string]any)["load1"] = "0.4" },
		"bad throttle source":  func(m map[string]any) { m["throttle"].(map[string]any)["source"] = "vcgencmd" },
		"reason not a string":  func(m map[string]any) { m["unavailable"] = map[string]any{"fan": nil} },
		"negative disk total":  func(m map[string]any) { m["disks"].([]any)[0].(map[string]any)["total_bytes"] = -1 },
		"timestamp not a date": func(m map[string]any) { m["ts"] = "yesterday" },
	}
	for name, mutate := range cases {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(good, &m); err != nil {
				t.Fatal(err)
			}
			mutate(m)
			b, _ := json.Marshal(m)
			v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err := sch.Validate(v); err == nil {
				t.Errorf("schema accepted a snapshot with %s", name)
			}
		})
	}
}
