// Package signature signs and verifies end-to-end signed requests: an
// Ed25519 signature by a trusted key over the request's topic, payload,
// correlation data, response topic, a timestamp and a nonce, carried in MQTT 5
// user properties. A broker (or anyone with full access to it) can read and
// replay such a request but cannot forge, alter, redirect or reuse one.
//
// The package is pure (no MQTT, no files): the agent reads the trusted keys,
// modules (picontrol, gpio) call Verifier.Verify. docs/security.md describes
// the scheme; Node's crypto can produce it (docs/node-red/sign-example.json).
package signature

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// The user properties of a signed request.
const (
	PropKey   = "sig-key"   // name of the trusted key
	PropTime  = "sig-time"  // signing time, Unix milliseconds (decimal)
	PropNonce = "sig-nonce" // 16 to 64 characters [A-Za-z0-9_-], new for every request
	PropSig   = "sig"       // base64 (standard, padded) of the 64-byte Ed25519 signature
)

// Domain starts every signed message, so that a signature made for anything
// else never verifies here.
const Domain = "picockpit-signed-request-v1"

// DefaultWindow is how far a request's signing time may lie from the
// agent's clock (either way).
const DefaultWindow = 60 * time.Second

var (
	keyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	nonceRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)
)

// Property is one MQTT 5 user property.
type Property struct {
	Key, Value string
}

// Message is what a signature covers besides its time and nonce.
type Message struct {
	// Topic is the full MQTT topic ("picockpit/<device>/picontrol/run/m/c").
	Topic           string
	Payload         []byte
	CorrelationData []byte
	// ResponseTopic is the full response topic, or "".
	ResponseTopic string
}

// SignedBytes is the exact byte string that is signed: Domain, then each of
// topic, payload, correlation data, response topic, time and nonce as a
// 4-byte big-endian length and the bytes. Lengths make the encoding
// unambiguous (no field can spill into the next).
func SignedBytes(m Message, timeMS int64, nonce string) []byte {
	ts := strconv.FormatInt(timeMS, 10)
	fields := [][]byte{[]byte(m.Topic), m.Payload, m.CorrelationData, []byte(m.ResponseTopic), []byte(ts), []byte(nonce)}
	n := len(Domain)
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	out = append(out, Domain...)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// Sign returns the user properties that sign m with priv, as key keyName,
// at time at with the given nonce.
func Sign(priv ed25519.PrivateKey, keyName string, m Message, at time.Time, nonce string) []Property {
	ms := at.UnixMilli()
	sig := ed25519.Sign(priv, SignedBytes(m, ms, nonce))
	return []Property{
		{PropKey, keyName},
		{PropTime, strconv.FormatInt(ms, 10)},
		{PropNonce, nonce},
		{PropSig, base64.StdEncoding.EncodeToString(sig)},
	}
}

// Signed is the signature part of a request, decoded from its properties.
type Signed struct {
	Key    string
	TimeMS int64
	Nonce  string
	Sig    []byte
}

// Parse decodes the signature properties from props (other properties are
// ignored). It returns ErrUnsigned when none of them is there; every other
// problem (one missing, given twice, malformed) is a malformed error.
func Parse(props []Property) (Signed, error) {
	var s Signed
	seen := map[string]string{}
	for _, p := range props {
		switch p.Key {
		case PropKey, PropTime, PropNonce, PropSig:
			if _, dup := seen[p.Key]; dup {
				return s, refused(ReasonMalformed, "", "user property %s given twice", p.Key)
			}
			seen[p.Key] = p.Value
		}
	}
	if len(seen) == 0 {
		return s, ErrUnsigned
	}
	for _, k := range []string{PropKey, PropTime, PropNonce, PropSig} {
		if _, ok := seen[k]; !ok {
			return s, refused(ReasonMalformed, "", "user property %s missing", k)
		}
	}
	s.Key = seen[PropKey]
	if !keyNameRE.MatchString(s.Key) {
		return s, refused(ReasonMalformed, "", "%s is not a key name (%s)", PropKey, keyNameRE)
	}
	ts := seen[PropTime]
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(ts) > 16 || ms <= 0 || ts[0] == '+' || ts[0] == '0' {
		return s, refused(ReasonMalformed, s.Key, "%s is not Unix milliseconds", PropTime)
	}
	s.TimeMS = ms
	s.Nonce = seen[PropNonce]
	if !nonceRE.MatchString(s.Nonce) {
		return s, refused(ReasonMalformed, s.Key, "%s must be 16 to 64 characters of A-Z a-z 0-9 _ -", PropNonce)
	}
	sig := seen[PropSig]
	if len(sig) != base64.StdEncoding.EncodedLen(ed25519.SignatureSize) {
		return s, refused(ReasonMalformed, s.Key, "%s is not a base64 Ed25519 signature", PropSig)
	}
	s.Sig, err = base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || len(s.Sig) != ed25519.SignatureSize {
		return s, refused(ReasonMalformed, s.Key, "%s is not a base64 Ed25519 signature", PropSig)
	}
	return s, nil
}

// Reasons a signature is refused (also the "signature" field of the event).
const (
	ReasonUnsigned     = "unsigned"
	ReasonMalformed    = "malformed"
	ReasonUnknownKey   = "unknown-key"
	ReasonBadSignature = "bad-signature"
	ReasonOutOfScope   = "out-of-scope"
	ReasonExpired      = "expired"
	ReasonReplayed     = "replayed"
	ReasonBusy         = "replay-cache-full"
)

// Error is a refused signature.
type Error struct {
	Reason string // one of the Reason constants
	Key    string // the key the request named, if any
	Detail string
}

func (e *Error) Error() string {
	return "signature refused (" + e.Reason + "): " + e.Detail
}

// ErrUnsigned is returned for a request that carries no signature.
var ErrUnsigned = &Error{Reason: ReasonUnsigned, Detail: "this requires a signed request (user properties " +
	PropKey + ", " + PropTime + ", " + PropNonce + ", " + PropSig + ")"}

func refused(reason, key, format string, a ...any) error {
	return &Error{Reason: reason, Key: key, Detail: fmt.Sprintf(format, a...)}
}

// Reason returns the reason of a refusal, or "".
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
