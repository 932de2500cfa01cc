package modules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
)

// DecodeStrict decodes one JSON value from data into v and reports every
// problem it finds, not only the first: unknown fields, fields given twice
// and type mismatches each become a FieldError naming the field's JSON path
// ("commands[1].argv"), collected in a FieldErrors in document order. A
// syntax error (with line and column) or trailing data stops the decoding
// and is returned alone. Fields that decode are set even when others fail.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty document")
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			line, col := position(data, int64(len(data)))
			return fmt.Errorf("invalid JSON: the document ends early at line %d, column %d (a missing } or ]?)", line, col)
		}
		return describeJSONError(data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decode into a non-pointer %T", v)
	}
	var errs FieldErrors
	decodeValue(raw, rv.Elem(), "", &errs)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Fields returns the top-level fields that err (from DecodeStrict) names,
// so that a caller that goes on checking the rest of a document can leave
// them out; ok is false when err is not a list of field problems (a syntax
// error: nothing was decoded).
func Fields(err error) (names map[string]bool, ok bool) {
	var many FieldErrors
	if !errors.As(err, &many) {
		return nil, false
	}
	names = map[string]bool{}
	for _, fe := range many {
		name, _, _ := strings.Cut(fe.Field, ".")
		name, _, _ = strings.Cut(name, "[")
		names[name] = true
	}
	return names, true
}

// FieldErrors is every field problem of one strict decode.
type FieldErrors []*FieldError

func (e FieldErrors) Error() string {
	msgs := make([]string, len(e))
	for i, fe := range e {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the single errors (for errors.As and errors.Is).
func (e FieldErrors) Unwrap() []error {
	out := make([]error, len(e))
	for i, fe := range e {
		out[i] = fe
	}
	return out
}

func decodeValue(data []byte, v reflect.Value, path string, errs *FieldErrors) {
	bad := func(err error) { *errs = append(*errs, &FieldError{Field: fieldOrDoc(path), Err: err}) }
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(json.Unmarshaler); ok {
			if err := u.UnmarshalJSON(data); err != nil {
				bad(err)
			}
			return
		}
	}
	null := string(data) == "null"
	switch v.Kind() {
	case reflect.Pointer:
		if null {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		decodeValue(data, v.Elem(), path, errs)
	case reflect.Struct:
		if null {
			return
		}
		if data[0] != '{' {
			bad(fmt.Errorf("want an object, got %s", DescribeJSON(data)))
			return
		}
		fields := jsonFields(v.Type())
		seen := map[string]bool{}
		eachMember(data, func(key string, val []byte) {
			f := joinField(path, key)
			idx, ok := fields[key]
			switch {
			case !ok:
				err := errors.New("unknown field (misspelled or not supported here)")
				if near := Closest(key, slices.Collect(maps.Keys(fields)), 2); near != "" {
					err = fmt.Errorf("unknown field (did you mean %q?)", near)
				}
				*errs = append(*errs, &FieldError{Field: f, Err: err})
			case seen[key]:
				*errs = append(*errs, &FieldError{Field: f, Err: errors.New("given twice")})
			default:
				decodeValue(val, v.FieldByIndex(idx), f, errs)
			}
			seen[key] = true
		})
	case reflect.Map:
		if null {
			v.SetZero()
			return
		}
		if data[0] != '{' {
			bad(fmt.Errorf("want an object, got %s", DescribeJSON(data)))
			return
		}
		if v.Type().Key().Kind() != reflect.String {
			decodeScalar(data, v, path, errs)
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		eachMember(data, func(key string, val []byte) {
			ev := reflect.New(v.Type().Elem()).Elem()
			decodeValue(val, ev, joinField(path, key), errs)
			v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), ev)
		})
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			decodeScalar(data, v, path, errs)
			return
		}
		if null {
			v.SetZero()
			return
		}
		if data[0] != '[' {
			bad(fmt.Errorf("want an array, got %s", DescribeJSON(data)))
			return
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(data, &elems); err != nil {
			bad(err)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(elems), len(elems))
		for i, e := range elems {
			decodeValue(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i), errs)
		}
		v.Set(s)
	default:
		decodeScalar(data, v, path, errs)
	}
}

func decodeScalar(data []byte, v reflect.Value, path string, errs *FieldErrors) {
	if err := json.Unmarshal(data, v.Addr().Interface()); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			err = fmt.Errorf("want %s, got %s", wantOf(v.Type()), DescribeJSON(data))
		}
		*errs = append(*errs, &FieldError{Field: fieldOrDoc(path), Err: err})
	}
}

func fieldOrDoc(path string) string {
	if path == "" {
		return "(document)"
	}
	return path
}

// wantOf says in words what JSON a Go type takes.
func wantOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if t == reflect.TypeOf(time.Duration(0)) {
			return `a duration string such as "30s"`
		}
		return "a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another JSON type"
}

// DescribeJSON names a JSON value for an error message: "the number 5",
// "the string \"abc\"", "an object".
func DescribeJSON(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if len(s) > 40 {
				s = s[:40] + "..."
			}
			return fmt.Sprintf("the string %q", s)
		}
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "the boolean " + string(raw)
	case 'n':
		return "null"
	}
	if len(raw) > 40 {
		raw = append(raw[:40:40], "..."...)
	}
	return "the number " + string(raw)
}

// eachMember calls fn for every member of a syntactically valid JSON object,
// in document order.
func eachMember(data []byte, fn func(key string, val []byte)) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '{'
		return
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return
		}
		key, _ := t.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return
		}
		fn(key, val)
	}
}

// jsonFields maps the JSON names of t's fields to their index, following
// encoding/json: a field of an embedded struct is shadowed by one of the
// same name at a shallower depth. Names match exactly (no case folding).
func jsonFields(t reflect.Type) map[string][]int {
	type entry struct {
		index []int
		depth int
	}
	found := map[string]entry{}
	var walk func(t reflect.Type, index []int, depth int)
	walk = func(t reflect.Type, index []int, depth int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), index...), i)
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx, depth+1)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if e, ok := found[name]; ok && e.depth <= depth {
				continue
			}
			found[name] = entry{idx, depth}
		}
	}
	walk(t, nil, 0)
	out := make(map[string][]int, len(found))
	for n, e := range found {
		out[n] = e.index
	}
	return out
}

// Closest returns the candidate nearest to name by edit distance, if it is
// at most maxDist away (ties: the first in sorted order), else "".
func Closest(name string, candidates []string, maxDist int) string {
	best, bestD := "", maxDist+1
	for _, c := range slices.Sorted(slices.Values(candidates)) {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ParseDuration is the one duration syntax of every config file and
// override: a Go duration string such as "30s", "1m30s" or "250ms", not
// negative. What a bare number means would be a guess, so JSON numbers are
// refused (DurationJSON).
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. \"30s\", \"5m\", \"250ms\")", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// DurationJSON decodes a JSON duration: a string for ParseDuration. A
// number is refused with a hint ("write \"30s\"").
func DurationJSON(raw []byte) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		return ParseDuration(s)
	}
	return 0, DurationTypeError(raw)
}

// DurationTypeError is the error for a duration given as a non-string JSON
// value.
func DurationTypeError(raw []byte) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return fmt.Errorf("want a duration string such as \"30s\", got the number %s (write \"%ss\" for seconds)", raw, raw)
	}
	return fmt.Errorf("want a duration string such as \"30s\", got %s", DescribeJSON(raw))
}

// FieldError is a decoding error tied to one field.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func describeJSONError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset-1) // Offset counts the bad character
		return fmt.Errorf("invalid JSON at line %d, column %d: %w", line, col, err)
	case errors.As(err, &typ):
		f := typ.Field
		if f == "" {
			f = "(document)"
		}
		return &FieldError{Field: f, Err: fmt.Errorf("want %s, got JSON %s", wantOf(typ.Type), typ.Value)}
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name := strings.Trim(rest, `"`)
		return &FieldError{Field: name, Err: errors.New("unknown field (misspelled or not supported here)")}
	}
	return err
}

func position(data []byte, off int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < off && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// ProblemsFor turns err into Problems for file: one per FieldError when err
// holds several (FieldErrors), else one; prefix is prepended to the fields.
func ProblemsFor(file, prefix string, err error) []Problem {
	var many FieldErrors
	if errors.As(err, &many) {
		out := make([]Problem, len(many))
		for i, fe := range many {
			out[i] = ProblemFor(file, prefix, fe)
		}
		return out
	}
	return []Problem{ProblemFor(file, prefix, err)}
}

// ProblemFor turns err into a Problem for file, taking the field from a
// FieldError when there is one; prefix is prepended to the field.
func ProblemFor(file, prefix string, err error) Problem {
	var fe *FieldError
	if errors.As(err, &fe) {
		return Problem{File: file, Field: joinField(prefix, fe.Field), Err: fe.Err}
	}
	return Problem{File: file, Field: prefix, Err: err}
}

func joinField(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}
