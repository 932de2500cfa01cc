package connect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Doc is a JSON config document that keeps its keys in file order, so an
// edit changes only the keys it sets or deletes.
type Doc struct{ root *object }

type object struct {
	keys []string
	vals map[string]any // *object, or what encoding/json decodes (numbers as json.Number)
}

func newObject() *object { return &object{vals: map[string]any{}} }

func (o *object) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func (o *object) del(k string) {
	if _, ok := o.vals[k]; !ok {
		return
	}
	delete(o.vals, k)
	for i, x := range o.keys {
		if x == k {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			break
		}
	}
}

// ParseDoc parses a config file's content (empty means an empty object).
func ParseDoc(b []byte) (*Doc, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return &Doc{root: newObject()}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	o, ok := v.(*object)
	if !ok {
		return nil, errors.New("the config is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return &Doc{root: o}, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := newObject()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				o.set(k, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return o, nil
		case '[':
			var arr []any
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if arr == nil {
				arr = []any{}
			}
			return arr, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return tok, nil
	}
}

// Set sets a dotted key ("broker.username"), creating objects on the way.
func (d *Doc) Set(key string, v any) {
	parts := strings.Split(key, ".")
	o := d.root
	for _, p := range parts[:len(parts)-1] {
		sub, ok := o.vals[p].(*object)
		if !ok {
			sub = newObject()
			o.set(p, sub)
		}
		o = sub
	}
	o.set(parts[len(parts)-1], v)
}

// Delete removes a dotted key if present.
func (d *Doc) Delete(key string) {
	parts := strings.Split(key, ".")
	o := d.root
	for _, p := range parts[:len(parts)-1] {
		sub, ok := o.vals[p].(*object)
		if !ok {
			return
		}
		o = sub
	}
	o.del(parts[len(parts)-1])
}

// Get returns a dotted key's value (nil if absent).
func (d *Doc) Get(key string) any {
	parts := strings.Split(key, ".")
	var v any = d.root
	for _, p := range parts {
		o, ok := v.(*object)
		if !ok {
			return nil
		}
		v = o.vals[p]
	}
	if o, ok := v.(*object); ok {
		return o
	}
	return v
}

// Bytes renders the document, two-space indented, keys in order.
func (d *Doc) Bytes() []byte {
	var b bytes.Buffer
	writeValue(&b, d.root, "")
	b.WriteByte('\n')
	return b.Bytes()
}

func writeValue(b *bytes.Buffer, v any, indent string) {
	switch t := v.(type) {
	case *object:
		if len(t.keys) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, k := range t.keys {
			kb, _ := json.Marshal(k)
			b.WriteString(indent + "  ")
			b.Write(kb)
			b.WriteString(": ")
			writeValue(b, t.vals[k], indent+"  ")
			if i < len(t.keys)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "}")
	case []any:
		if len(t) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, x := range t {
			b.WriteString(indent + "  ")
			writeValue(b, x, indent+"  ")
			if i < len(t)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "]")
	case []string:
		arr := make([]any, len(t))
		for i, s := range t {
			arr[i] = s
		}
		writeValue(b, arr, indent)
	default:
		enc := json.NewEncoder(b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(t)
		b.Truncate(b.Len() - 1) // Encode's newline
	}
}

// tempPrefix names the temporary files WriteFileAtomic creates next to the
// target; leftovers of a crash are removed by the next write.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// beforeRename runs between the fsync of the temporary file and the rename
// (tests kill the process here).
var beforeRename = func(tmp string) {}

// WriteFileAtomic replaces path with data so that a crash at any moment
// leaves either the old or the new content, never a mix or an empty file:
// it writes a temporary file in the same directory, sets its mode (and
// owner root when running as root), fsyncs it, renames it over path and
// fsyncs the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	if old, _ := filepath.Glob(filepath.Join(dir, tempPrefix(path)+"*")); len(old) > 0 {
		for _, o := range old {
			_ = os.Remove(o) // left by an interrupted write
		}
	}
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(0, 0); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	beforeRename(tmp)
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil // the rename happened; only its durability is unknown
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}

// EditConfig applies edit to the config file at path (created if missing)
// and writes it back atomically, mode 0600. The file is only replaced when
// edit succeeds.
func EditConfig(path string, edit func(*Doc) error) error {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc, err := ParseDoc(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := edit(doc); err != nil {
		return err
	}
	return WriteFileAtomic(path, doc.Bytes(), 0o600)
}
