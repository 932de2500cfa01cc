package agenttest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	schemaOnce sync.Once
	schemaErr  error
	schemaMu   sync.Mutex
	compiler   *jsonschema.Compiler
	schemaIDs  = map[string]string{} // name -> URL to compile
	compiled   = map[string]*jsonschema.Schema{}
)

// SchemaDir returns docs/schemas in the repo.
func SchemaDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "schemas")
}

// loadSchemas adds every docs/schemas/*.schema.json to one compiler under
// its $id, so that schemas can $ref each other by $id.
func loadSchemas() error {
	compiler = jsonschema.NewCompiler()
	compiler.AssertFormat()
	paths, err := filepath.Glob(filepath.Join(SchemaDir(), "*.schema.json"))
	if err != nil {
		return err
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		url := "file://" + p
		if m, ok := doc.(map[string]any); ok {
			if id, ok := m["$id"].(string); ok && id != "" {
				url = id
			}
		}
		if err := compiler.AddResource(url, doc); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		schemaIDs[strings.TrimSuffix(filepath.Base(p), ".schema.json")] = url
	}
	return nil
}

// ValidateSchema fails the test unless payload is valid against
// docs/schemas/<name>.schema.json.
func ValidateSchema(t testing.TB, name string, payload []byte) {
	t.Helper()
	if err := CheckSchema(name, payload); err != nil {
		t.Fatal(err)
	}
}

// CompiledSchema returns docs/schemas/<name>.schema.json compiled, with
// every other schema of that directory available to its $refs. name may end
// in ".schema.json".
func CompiledSchema(name string) (*jsonschema.Schema, error) {
	name = strings.TrimSuffix(name, ".schema.json")
	schemaOnce.Do(func() { schemaErr = loadSchemas() })
	if schemaErr != nil {
		return nil, fmt.Errorf("schemas: %w", schemaErr)
	}
	schemaMu.Lock()
	defer schemaMu.Unlock()
	if sch, ok := compiled[name]; ok {
		return sch, nil
	}
	url, known := schemaIDs[name]
	if !known {
		return nil, fmt.Errorf("no schema docs/schemas/%s.schema.json", name)
	}
	sch, err := compiler.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	compiled[name] = sch
	return sch, nil
}

// CheckSchema validates payload against docs/schemas/<name>.schema.json.
func CheckSchema(name string, payload []byte) error {
	sch, err := CompiledSchema(name)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("%s payload is not JSON: %v: %s", name, err, payload)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s payload does not match docs/schemas/%s.schema.json: %v\npayload: %s", name, name, err, payload)
	}
	return nil
}

// MustSchema is CompiledSchema for tests: it fails t on error.
func MustSchema(t testing.TB, name string) *jsonschema.Schema {
	t.Helper()
	sch, err := CompiledSchema(name)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}
