package agenttest

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	schemaMu    sync.Mutex
	schemaCache = map[string]*jsonschema.Schema{}
)

// SchemaPath returns docs/schemas/<name>.schema.json in the repo.
func SchemaPath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "schemas", name+".schema.json")
}

// ValidateSchema fails the test unless payload is valid against
// docs/schemas/<name>.schema.json.
func ValidateSchema(t testing.TB, name string, payload []byte) {
	t.Helper()
	schemaMu.Lock()
	sch, ok := schemaCache[name]
	if !ok {
		path := SchemaPath(name)
		f, err := os.Open(path)
		if err != nil {
			schemaMu.Unlock()
			t.Fatalf("schema %s: %v", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			schemaMu.Unlock()
			t.Fatalf("schema %s: %v", name, err)
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		if err := c.AddResource(path, doc); err != nil {
			schemaMu.Unlock()
			t.Fatalf("schema %s: %v", name, err)
		}
		sch, err = c.Compile(path)
		if err != nil {
			schemaMu.Unlock()
			t.Fatalf("schema %s: %v", name, err)
		}
		schemaCache[name] = sch
	}
	schemaMu.Unlock()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("%s payload is not JSON: %v: %s", name, err, payload)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("%s payload does not match docs/schemas/%s.schema.json: %v\npayload: %s", name, name, err, payload)
	}
}
