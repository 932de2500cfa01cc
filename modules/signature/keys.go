package signature

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// What a key's scope can name.
const (
	ScopeCommand = "command" // a PiControl command, "module/command"
	ScopePin     = "pin"     // a GPIO pin by name
)

// Key is one trusted public key: a file of <config-dir>/trusted-keys.d/.
type Key struct {
	// Name identifies the key in requests (sig-key) and in the audit log.
	Name   string            `json:"name"`
	Public ed25519.PublicKey `json:"-"`
	// Scope limits what the key may sign for; nil means everything.
	Scope *Scope `json:"scope,omitempty"`
}

// Scope lists what a key may be used for. A list that is absent allows
// nothing of its kind once a scope is given; "*" allows all, "module/*"
// every command of a module.
type Scope struct {
	Commands []string `json:"commands,omitempty"`
	Pins     []string `json:"pins,omitempty"`
}

// keyFile is the JSON of a trusted key file.
type keyFile struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Comment   string `json:"comment,omitempty"`
	Scope     *Scope `json:"scope,omitempty"`
}

// DecodeKey decodes a trusted key file strictly:
//
//	{"name": "nodered", "public_key": "<base64 of 32 bytes>",
//	 "scope": {"commands": ["system/reboot", "garage/*"], "pins": ["garage-door"]}}
func DecodeKey(data []byte) (Key, error) {
	var kf keyFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf); err != nil {
		return Key{}, fmt.Errorf("invalid key file: %w", err)
	}
	if dec.More() {
		return Key{}, errors.New("invalid key file: data after the JSON object")
	}
	if !keyNameRE.MatchString(kf.Name) {
		return Key{}, fmt.Errorf("name %q is not a key name (%s)", kf.Name, keyNameRE)
	}
	pub, err := base64.StdEncoding.Strict().DecodeString(kf.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return Key{}, errors.New("public_key is not the base64 of a 32-byte Ed25519 public key")
	}
	if kf.Scope != nil {
		for i, c := range kf.Scope.Commands {
			mod, cmd, ok := strings.Cut(c, "/")
			if c != "*" && (!ok || mod == "" || cmd == "" || strings.ContainsAny(cmd, "/+#") || strings.ContainsAny(mod, "*+#")) {
				return Key{}, fmt.Errorf("scope.commands[%d]: %q: want \"module/command\", \"module/*\" or \"*\"", i, c)
			}
		}
		for i, p := range kf.Scope.Pins {
			if p == "" || strings.ContainsAny(p, "/+#") {
				return Key{}, fmt.Errorf("scope.pins[%d]: %q is not a pin name", i, p)
			}
		}
	}
	return Key{Name: kf.Name, Public: ed25519.PublicKey(pub), Scope: kf.Scope}, nil
}

// EncodeKey returns the trusted key file of pub (what keygen writes).
func EncodeKey(name string, pub ed25519.PublicKey, scope *Scope) ([]byte, error) {
	if !keyNameRE.MatchString(name) {
		return nil, fmt.Errorf("name %q is not a key name (%s)", name, keyNameRE)
	}
	b, err := json.MarshalIndent(keyFile{Name: name, PublicKey: base64.StdEncoding.EncodeToString(pub), Scope: scope}, "", "  ")
	return append(b, '\n'), err
}

// Allows reports whether the key may sign for name of kind (ScopeCommand or
// ScopePin).
func (k Key) Allows(kind, name string) bool {
	if k.Scope == nil {
		return true
	}
	var list []string
	switch kind {
	case ScopeCommand:
		list = k.Scope.Commands
		mod, _, _ := strings.Cut(name, "/")
		if slices.Contains(list, mod+"/*") {
			return true
		}
	case ScopePin:
		list = k.Scope.Pins
	default:
		return false
	}
	return slices.Contains(list, "*") || slices.Contains(list, name)
}

// ValidKeyName reports whether name can name a key.
func ValidKeyName(name string) bool { return keyNameRE.MatchString(name) }
