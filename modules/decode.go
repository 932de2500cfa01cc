package modules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// DecodeStrict decodes one JSON value from data into v. Unknown fields,
// trailing data and type mismatches are errors; the error names the field
// where encoding/json tells it (FieldError extracts it).
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
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
	return nil
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
		line, col := position(data, syn.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %w", line, col, err)
	case errors.As(err, &typ):
		f := typ.Field
		if f == "" {
			f = "(document)"
		}
		return &FieldError{Field: f, Err: fmt.Errorf("expected %s, got JSON %s", typ.Type, typ.Value)}
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
