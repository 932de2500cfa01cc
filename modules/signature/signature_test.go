package signature

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

var (
	seedA = bytes.Repeat([]byte{1}, ed25519.SeedSize)
	seedB = bytes.Repeat([]byte{2}, ed25519.SeedSize)
	privA = ed25519.NewKeyFromSeed(seedA)
	privB = ed25519.NewKeyFromSeed(seedB)
	t0    = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
)

func msg() Message {
	return Message{Topic: "picockpit/pi1/picontrol/run/system/reboot", Payload: []byte(`{}`),
		CorrelationData: []byte("c1"), ResponseTopic: "picockpit/pi1/reply/ui/1"}
}

func keys() []Key {
	return []Key{
		{Name: "admin", Public: privA.Public().(ed25519.PublicKey)},
		{Name: "garage", Public: privB.Public().(ed25519.PublicKey), Scope: &Scope{Commands: []string{"garage/*"}, Pins: []string{"door"}}},
	}
}

func set(props []Property, key, value string) []Property {
	out := append([]Property(nil), props...)
	for i := range out {
		if out[i].Key == key {
			out[i].Value = value
		}
	}
	return out
}

func TestVerify(t *testing.T) {
	const nonce = "0123456789abcdef"
	good := Sign(privA, "admin", msg(), t0, nonce)
	altered := func(f func(*Message)) Message { m := msg(); f(&m); return m }
	for _, tc := range []struct {
		name       string
		m          Message
		props      []Property
		kind, what string
		reason     string // "" = accepted
	}{
		{"valid", msg(), good, ScopeCommand, "system/reboot", ""},
		{"other properties ignored", msg(), append([]Property{{"requester", "ui"}}, good...), ScopeCommand, "system/reboot", ""},
		{"unsigned", msg(), []Property{{"requester", "ui"}}, ScopeCommand, "system/reboot", ReasonUnsigned},
		{"no properties", msg(), nil, ScopeCommand, "system/reboot", ReasonUnsigned},
		{"missing nonce", msg(), good[:2], ScopeCommand, "system/reboot", ReasonMalformed},
		{"twice", msg(), append(good, good[0]), ScopeCommand, "system/reboot", ReasonMalformed},
		{"other topic", altered(func(m *Message) { m.Topic = "picockpit/pi2/picontrol/run/system/reboot" }), good, ScopeCommand, "system/reboot", ReasonBadSignature},
		{"other payload", altered(func(m *Message) { m.Payload = []byte(`{"x":1}`) }), good, ScopeCommand, "system/reboot", ReasonBadSignature},
		{"other correlation", altered(func(m *Message) { m.CorrelationData = []byte("c2") }), good, ScopeCommand, "system/reboot", ReasonBadSignature},
		{"other response topic", altered(func(m *Message) { m.ResponseTopic = "picockpit/pi1/reply/evil" }), good, ScopeCommand, "system/reboot", ReasonBadSignature},
		{"other time", msg(), set(good, PropTime, "1795953600001"), ScopeCommand, "system/reboot", ReasonBadSignature},
		{"other nonce", msg(), set(good, PropNonce, "0123456789abcdeg"), ScopeCommand, "system/reboot", ReasonBadSignature},
		{"claims another key", msg(), set(good, PropKey, "garage"), ScopeCommand, "garage/open", ReasonBadSignature},
		{"untrusted key", msg(), Sign(privB, "stranger", msg(), t0, nonce), ScopeCommand, "system/reboot", ReasonUnknownKey},
		{"out of scope", msg(), Sign(privB, "garage", msg(), t0, nonce), ScopeCommand, "system/reboot", ReasonOutOfScope},
		{"in scope", msg(), Sign(privB, "garage", msg(), t0, nonce), ScopeCommand, "garage/open", ""},
		{"pin in scope", msg(), Sign(privB, "garage", msg(), t0, nonce), ScopePin, "door", ""},
		{"pin out of scope", msg(), Sign(privB, "garage", msg(), t0, nonce), ScopePin, "led", ReasonOutOfScope},
		{"expired", msg(), Sign(privA, "admin", msg(), t0.Add(-61*time.Second), nonce), ScopeCommand, "system/reboot", ReasonExpired},
		{"from the future", msg(), Sign(privA, "admin", msg(), t0.Add(61*time.Second), nonce), ScopeCommand, "system/reboot", ReasonExpired},
		{"edge of window", msg(), Sign(privA, "admin", msg(), t0.Add(-60*time.Second), nonce), ScopeCommand, "system/reboot", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(keys(), nil, 0, func() time.Time { return t0 })
			key, err := v.Verify(tc.m, tc.props, tc.kind, tc.what)
			if got := Reason(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			if tc.reason == "" && key == "" {
				t.Fatal("accepted without a key name")
			}
		})
	}
}

func TestReplay(t *testing.T) {
	now := t0
	v := NewVerifier(keys(), NewReplayCache(2), time.Minute, func() time.Time { return now })
	sign := func(nonce string) []Property { return Sign(privA, "admin", msg(), now, nonce) }
	first := sign("nonce-0000000001")
	if _, err := v.Verify(msg(), first, ScopeCommand, "x/y"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(msg(), first, ScopeCommand, "x/y"); Reason(err) != ReasonReplayed {
		t.Fatalf("replay: %v", err)
	}
	// The same nonce of another key is another nonce.
	if _, err := v.Verify(msg(), Sign(privB, "garage", msg(), now, "nonce-0000000001"), ScopeCommand, "garage/x"); err != nil {
		t.Fatal(err)
	}
	// Full of nonces that could still be replayed: fail closed.
	if _, err := v.Verify(msg(), sign("nonce-0000000002"), ScopeCommand, "x/y"); Reason(err) != ReasonBusy {
		t.Fatalf("full cache: %v", err)
	}
	// Past the window the old signature is expired anyway, and its nonce is
	// forgotten to make room.
	now = now.Add(2*time.Minute + time.Millisecond)
	if _, err := v.Verify(msg(), first, ScopeCommand, "x/y"); Reason(err) != ReasonExpired {
		t.Fatalf("old replay: %v", err)
	}
	if _, err := v.Verify(msg(), sign("nonce-0000000002"), ScopeCommand, "x/y"); err != nil {
		t.Fatal(err)
	}
	if n := v.replay.Len(); n != 1 {
		t.Fatalf("cache holds %d", n)
	}
}

func TestNilVerifierRefuses(t *testing.T) {
	var v *Verifier
	if _, err := v.Verify(msg(), Sign(privA, "admin", msg(), t0, "0123456789abcdef"), ScopeCommand, "a/b"); Reason(err) != ReasonUnknownKey {
		t.Fatal(err)
	}
}

func TestParse(t *testing.T) {
	good := Sign(privA, "admin", msg(), t0, "0123456789abcdef")
	for _, tc := range []struct {
		name  string
		props []Property
		err   string
	}{
		{"good", good, ""},
		{"bad key name", set(good, PropKey, "Admin Key"), "not a key name"},
		{"time not a number", set(good, PropTime, "noon"), "Unix milliseconds"},
		{"time with plus", set(good, PropTime, "+1795953600000"), "Unix milliseconds"},
		{"time zero padded", set(good, PropTime, "01795953600000"), "Unix milliseconds"},
		{"negative time", set(good, PropTime, "-1"), "Unix milliseconds"},
		{"short nonce", set(good, PropNonce, "abc"), "16 to 64"},
		{"nonce with space", set(good, PropNonce, "0123456789abcde f"), "16 to 64"},
		{"sig not base64", set(good, PropSig, strings.Repeat("!", 88)), "base64"},
		{"sig short", set(good, PropSig, base64.StdEncoding.EncodeToString(make([]byte, 63))), "base64"},
		{"sig url alphabet", set(good, PropSig, strings.Repeat("_", 86)+"=="), "base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.props)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

func TestDecodeKey(t *testing.T) {
	pub := base64.StdEncoding.EncodeToString(privA.Public().(ed25519.PublicKey))
	for _, tc := range []struct {
		name, data, err string
	}{
		{"minimal", `{"name":"admin","public_key":"` + pub + `"}`, ""},
		{"scoped", `{"name":"ui","public_key":"` + pub + `","scope":{"commands":["system/reboot","garage/*"],"pins":["door"]}}`, ""},
		{"unknown field", `{"name":"admin","public_key":"` + pub + `","private_key":"x"}`, "unknown field"},
		{"bad name", `{"name":"../x","public_key":"` + pub + `"}`, "not a key name"},
		{"short key", `{"name":"a","public_key":"AAAA"}`, "32-byte"},
		{"bad scope command", `{"name":"a","public_key":"` + pub + `","scope":{"commands":["reboot"]}}`, "scope.commands[0]"},
		{"wildcard module", `{"name":"a","public_key":"` + pub + `","scope":{"commands":["*/reboot"]}}`, "scope.commands[0]"},
		{"bad pin", `{"name":"a","public_key":"` + pub + `","scope":{"pins":["a/b"]}}`, "scope.pins[0]"},
		{"trailing", `{"name":"a","public_key":"` + pub + `"} {}`, "after the JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeKey([]byte(tc.data))
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
	b, err := EncodeKey("admin", privA.Public().(ed25519.PublicKey), &Scope{Pins: []string{"door"}})
	if err != nil {
		t.Fatal(err)
	}
	k, err := DecodeKey(b)
	if err != nil || k.Name != "admin" || !k.Public.Equal(privA.Public()) || !k.Allows(ScopePin, "door") || k.Allows(ScopePin, "led") {
		t.Fatalf("round trip: %+v %v", k, err)
	}
}

// SignedBytes is what other signers (Node-RED, scripts) reproduce: pin it.
func TestSignedBytesLayout(t *testing.T) {
	got := SignedBytes(Message{Topic: "t", Payload: []byte("pp"), ResponseTopic: "r"}, 5, "n")
	want := Domain + "\x00\x00\x00\x01t" + "\x00\x00\x00\x02pp" + "\x00\x00\x00\x00" + "\x00\x00\x00\x01r" + "\x00\x00\x00\x015" + "\x00\x00\x00\x01n"
	if string(got) != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	good := Sign(privA, "admin", msg(), t0, "0123456789abcdef")
	f.Add(good[0].Value, good[1].Value, good[2].Value, good[3].Value)
	f.Add("", "", "", "")
	f.Add("a", "-1", "x", "====")
	v := NewVerifier(keys(), nil, 0, func() time.Time { return t0 })
	f.Fuzz(func(t *testing.T, key, ts, nonce, sig string) {
		props := []Property{{PropKey, key}, {PropTime, ts}, {PropNonce, nonce}, {PropSig, sig}}
		s, err := Parse(props)
		if err == nil {
			if !keyNameRE.MatchString(s.Key) || !nonceRE.MatchString(s.Nonce) || len(s.Sig) != ed25519.SignatureSize || s.TimeMS <= 0 {
				t.Fatalf("accepted %+v", s)
			}
		} else if Reason(err) == "" {
			t.Fatalf("untyped error %v", err)
		}
		if k, err := v.Verify(msg(), props, ScopeCommand, "system/reboot"); err == nil && (k != "admin" || sig != good[3].Value) {
			t.Fatalf("verified a signature not made by the test: %q %q", k, sig)
		}
	})
}

func FuzzDecodeKey(f *testing.F) {
	f.Add([]byte(`{"name":"a","public_key":"` + base64.StdEncoding.EncodeToString(privA.Public().(ed25519.PublicKey)) + `","scope":{"commands":["a/*"],"pins":["p"]}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := DecodeKey(data)
		if err == nil && (!ValidKeyName(k.Name) || len(k.Public) != ed25519.PublicKeySize) {
			t.Fatalf("accepted %+v", k)
		}
	})
}

// A request signed before the process started is refused: its nonce may
// have been used by the process before.
func TestSignedBeforeStart(t *testing.T) {
	c := NewReplayCache(0)
	c.Since = t0
	v := NewVerifier(keys(), c, time.Minute, func() time.Time { return t0.Add(time.Second) })
	if _, err := v.Verify(msg(), Sign(privA, "admin", msg(), t0.Add(-time.Millisecond), "0123456789abcdef"), ScopeCommand, "a/b"); Reason(err) != ReasonExpired || !strings.Contains(err.Error(), "before the agent started") {
		t.Fatalf("signed before start: %v", err)
	}
	if _, err := v.Verify(msg(), Sign(privA, "admin", msg(), t0, "0123456789abcdef"), ScopeCommand, "a/b"); err != nil {
		t.Fatalf("signed at start: %v", err)
	}
}
