package gpio

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/bustest"
	"github.com/picockpit/picockpit-client/modules/signature"
)

// A pin marked require_signature changes only for a signed set request by a
// key whose scope lists it; other pins are unaffected.
func TestSignedSets(t *testing.T) {
	door := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	now := time.Now()
	v := signature.NewVerifier([]signature.Key{
		{Name: "door", Public: door.Public().(ed25519.PublicKey), Scope: &signature.Scope{Pins: []string{"17"}}},
		{Name: "other", Public: other.Public().(ed25519.PublicKey), Scope: &signature.Scope{Pins: []string{"27"}}},
	}, nil, 0, func() time.Time { return now })
	root := contract.Root{Prefix: "picockpit", Device: "dev"}
	fake := NewFake()
	mod, probs := KindWith(fake).Load(modules.Env{HostRoot: t.TempDir(), Root: root, Signatures: v},
		[]byte(`{"pins":[{"bcm":17,"mode":"output","initial":0,"require_signature":true},{"bcm":27,"mode":"output","initial":0}]}`), "c.json", nil)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	m := mod.(*module)
	h := &harness{t: t, m: m, bus: bustest.New(), clock: newFakeClock(), fake: fake}
	m.clock = h.clock
	t.Cleanup(h.bus.Close)
	if err := m.Start(context.Background(), h.bus); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	h.waitState("17", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	if pins, _ := h.bus.Retained(contract.TopicGPIOPins); !bytes.Contains(pins.Payload, []byte(`"require_signature":true`)) {
		t.Errorf("gpio/pins does not say which pin needs a signature")
	}

	n, nonce := 0, 0
	send := func(pin string, priv ed25519.PrivateKey, key string) (contract.GPIOSetResponse, []contract.Event) {
		n++
		nonce++
		topic, resp := contract.TopicGPIOSet(pin), fmt.Sprintf("picockpit/dev/reply/s%d", n)
		req := &modules.Request{Topic: topic, Payload: []byte("1"), ResponseTopic: resp, CorrelationData: []byte(resp)}
		if priv != nil {
			req.UserProperties = signature.Sign(priv, key, signature.Message{Topic: root.Topic(topic), Payload: req.Payload,
				CorrelationData: req.CorrelationData, ResponseTopic: resp}, now, fmt.Sprintf("nonce-%011d", nonce))
		}
		before := len(h.events())
		for !h.bus.Inject(req) {
			time.Sleep(time.Millisecond)
		}
		var r contract.GPIOSetResponse
		h.bus.WaitFor(waitLong, func(msgs []bustest.Message) bool {
			for _, m := range msgs {
				if m.Reply && m.Topic == resp {
					return json.Unmarshal(m.Payload, &r) == nil
				}
			}
			return false
		})
		// The event of a request for pin 17 (signed or refused) may follow its reply:
		// wait for it (or time out).
		deadline := time.Now().Add(waitLong)
		for pin == "17" && len(h.events()) == before && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		return r, h.events()[before:]
	}
	for _, tc := range []struct {
		name, pin string
		priv      ed25519.PrivateKey
		key       string
		reason    string
	}{
		{"unsigned", "17", nil, "", signature.ReasonUnsigned},
		{"wrong key", "17", other, "door", signature.ReasonBadSignature},
		{"out of scope", "17", other, "other", signature.ReasonOutOfScope},
	} {
		r, evs := send(tc.pin, tc.priv, tc.key)
		if r.Status != contract.StatusRejected || !strings.Contains(r.Error, "signature refused ("+tc.reason+")") {
			t.Errorf("%s: %+v", tc.name, r)
		}
		if len(evs) == 0 || evs[len(evs)-1].Kind != contract.EventRejected || evs[len(evs)-1].Fields["signature"] != tc.reason {
			t.Errorf("%s: events %+v", tc.name, evs)
		}
		if lv := h.fake.Level("GPIO17"); lv != 0 {
			t.Fatalf("%s: the pin moved to %d", tc.name, lv)
		}
	}
	r, evs := send("17", door, "door")
	if r.Status != contract.StatusOK || h.fake.Level("GPIO17") != 1 {
		t.Fatalf("signed set: %+v, level %d", r, h.fake.Level("GPIO17"))
	}
	var audited bool
	for _, ev := range evs {
		audited = audited || ev.Fields["signed_by"] == "door"
	}
	if !audited {
		t.Errorf("no event names the key: %+v", evs)
	}
	// The same nonce again (a new response topic, to tell the replies apart): replayed.
	nonce--
	if r, _ := send("17", door, "door"); r.Status != contract.StatusRejected || !strings.Contains(r.Error, signature.ReasonReplayed) {
		t.Errorf("replay: %+v", r)
	}
	// A pin without require_signature needs none.
	if r, _ := send("27", nil, ""); r.Status != contract.StatusOK {
		t.Errorf("unmarked pin: %+v", r)
	}
}
