package picontrol

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/picockpit/picockpit-client/modules"
)

// FuzzDecodeModule feeds arbitrary module files to the loader: it must never
// panic, and whatever it accepts must be safe to run and to publish.
func FuzzDecodeModule(f *testing.F) {
	f.Add([]byte(paramModule))
	f.Add([]byte(streamModule))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, probs := load(testEnv(), nil, "", []modules.File{{Path: "fuzz.json", Data: data}})
		for _, p := range probs {
			if p.File != "fuzz.json" || p.Err == nil {
				t.Fatalf("problem without file or error: %+v", p)
			}
		}
		if len(probs) > 0 && len(m.commands) > 0 {
			t.Fatalf("a file with problems loaded commands %v", m.Commands())
		}
		for id, c := range m.commands {
			if !strings.HasPrefix(c.Path, "/") || !modules.ValidID(c.ID) || !modules.ValidID(c.Module) {
				t.Fatalf("%s: accepted path %q id %q module %q", id, c.Path, c.ID, c.Module)
			}
			if c.Timeout <= 0 || c.Timeout > MaxTimeout {
				t.Fatalf("%s: accepted timeout %v", id, c.Timeout)
			}
			for _, e := range c.Argv {
				if e.param == "" && strings.ContainsRune(e.lit, 0) {
					t.Fatalf("%s: NUL in argv", id)
				}
			}
			for _, p := range c.Params {
				if p.Type == "string" && p.re == nil && p.Enum == nil {
					t.Fatalf("%s: free string parameter %q", id, p.Name)
				}
			}
		}
		if _, err := json.Marshal(m.catalogue()); err != nil {
			t.Fatalf("catalogue does not encode: %v", err)
		}
	})
}

var fuzzCommand = sync.OnceValue(func() *command {
	m, probs := load(testEnv(), nil, "", []modules.File{{Path: "svc.json", Data: []byte(paramModule)}})
	if len(probs) > 0 {
		panic(probs[0].Error())
	}
	return m.commands["svc/restart"]
})

// FuzzDecodeRequest feeds arbitrary request payloads through the payload
// decoder and parameter binding of one command: whatever is accepted must fit
// the declared parameters exactly.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"name":"web-1","mode":"fast","n":3,"flag":true}`))
	f.Add([]byte(`{"name":"; rm -rf /"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		c := fuzzCommand()
		raw, err := decodePayload(payload)
		if err != nil {
			return
		}
		vals, err := c.bindJSON(raw)
		if err != nil {
			var pe *paramError
			if !errors.As(err, &pe) || pe.Param == "" {
				t.Fatalf("binding error without a parameter name: %v", err)
			}
			return
		}
		argv, env := c.build(vals)
		if argv[0] != "/bin/echo" || len(argv) < 2 || len(argv) > 4 {
			t.Fatalf("argv %q", argv)
		}
		if !c.Params[0].re.MatchString(argv[1]) || argv[1] != vals["name"] {
			t.Fatalf("name %q accepted against %s", argv[1], c.Params[0].Pattern)
		}
		if m, ok := vals["mode"]; ok && m != "fast" && m != "slow" {
			t.Fatalf("mode %q accepted", m)
		}
		for _, s := range append(argv, env...) {
			if checkStringValue(s) != nil {
				t.Fatalf("control character or bad UTF-8 accepted: %q", s)
			}
		}
	})
}
