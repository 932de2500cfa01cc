package picontrol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxPayload is the largest request payload accepted.
const MaxPayload = 64 << 10

// paramError is a request problem tied to one parameter.
type paramError struct {
	Param string
	Err   error
}

func (e *paramError) Error() string { return fmt.Sprintf("parameter %q: %v", e.Param, e.Err) }
func (e *paramError) Unwrap() error { return e.Err }

// decodePayload decodes a request payload: empty (or only white space) for
// no parameters, or one JSON object mapping parameter names to JSON values.
// Duplicate names, trailing data and anything that is not an object are
// errors.
func decodePayload(payload []byte) (map[string]json.RawMessage, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("payload of %d bytes is larger than %d", len(payload), MaxPayload)
	}
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	if !utf8.Valid(trimmed) {
		return nil, errors.New("payload is not valid UTF-8")
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("payload must be empty or a JSON object of parameters, got %s", describeJSON(trimmed))
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("payload is not valid JSON: %w", err)
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("payload is not valid JSON: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("payload is not valid JSON: expected a parameter name")
		}
		if name == "" {
			return nil, errors.New("payload has a parameter with an empty name")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("payload is not valid JSON: parameter %q: %w", truncate(name, 40), err)
		}
		if _, dup := out[name]; dup {
			return nil, &paramError{Param: truncate(name, 64), Err: errors.New("given twice")}
		}
		out[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("payload is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("payload has data after the JSON object")
	}
	return out, nil
}

// bindJSON checks decoded request parameters against the command and returns
// the canonical values by name.
func (c *command) bindJSON(raw map[string]json.RawMessage) (map[string]string, error) {
	return c.bind(slices.Sorted(maps.Keys(raw)), func(p *param) (string, bool, error) {
		v, ok := raw[p.Name]
		if !ok {
			return "", false, nil
		}
		s, err := p.fromJSON(v)
		return s, true, err
	})
}

// bindStrings is bindJSON for values given as text (the command line).
func (c *command) bindStrings(vals map[string]string) (map[string]string, error) {
	return c.bind(slices.Sorted(maps.Keys(vals)), func(p *param) (string, bool, error) {
		v, ok := vals[p.Name]
		if !ok {
			return "", false, nil
		}
		s, err := p.fromString(v)
		return s, true, err
	})
}

func (c *command) bind(given []string, get func(*param) (string, bool, error)) (map[string]string, error) {
	known := map[string]bool{}
	for _, p := range c.Params {
		known[p.Name] = true
	}
	for _, name := range given {
		if known[name] {
			continue
		}
		if len(c.Params) == 0 {
			return nil, &paramError{Param: truncate(name, 64), Err: errors.New("unknown parameter: this command takes none")}
		}
		return nil, &paramError{Param: truncate(name, 64), Err: fmt.Errorf("unknown parameter (known: %s)", strings.Join(c.paramNames(), ", "))}
	}
	out := make(map[string]string, len(c.Params))
	for _, p := range c.Params {
		v, ok, err := get(p)
		switch {
		case err != nil:
			return nil, &paramError{Param: p.Name, Err: err}
		case ok:
			out[p.Name] = v
		case p.Default != nil:
			out[p.Name] = *p.Default
		case p.Required:
			return nil, &paramError{Param: p.Name, Err: errors.New("required but missing")}
		}
	}
	return out, nil
}

func (c *command) paramNames() []string {
	names := make([]string, len(c.Params))
	for i, p := range c.Params {
		names[i] = p.Name
	}
	return names
}

// build returns argv and the extra environment for bound values. An optional
// parameter without a value drops its argv element and sets no variable.
func (c *command) build(vals map[string]string) (argv, env []string) {
	for _, e := range c.Argv {
		if e.param == "" {
			argv = append(argv, e.lit)
			continue
		}
		if v, ok := vals[e.param]; ok {
			argv = append(argv, v)
		}
	}
	env = append(env, c.Env...)
	for _, p := range c.Params {
		if v, ok := vals[p.Name]; ok && p.Env != "" {
			env = append(env, p.Env+"="+v)
		}
	}
	return argv, env
}
