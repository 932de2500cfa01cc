package gpio

import (
	"errors"
	"fmt"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/signature"
)

// verify checks the signature of a set request for a pin that says
// "require_signature": true and returns the key's name ("" for other pins).
func (m *module) verify(req *modules.Request, p *pin) (string, error) {
	if !p.spec.requireSig {
		return "", nil
	}
	msg := signature.Message{Topic: m.root.Topic(req.Topic), Payload: req.Payload,
		CorrelationData: req.CorrelationData, ResponseTopic: req.ResponseTopic}
	return m.sigs.Verify(msg, req.UserProperties, signature.ScopePin, p.spec.id)
}

// auditSigned records a signed set that was applied, naming the key.
func (m *module) auditSigned(req *modules.Request, pin, key string) {
	if key == "" {
		return
	}
	m.bus.Event(contract.Event{TS: m.clock.Now().UTC(), Kind: contract.EventCommand, Module: Name,
		Message: fmt.Sprintf("gpio %s set, signed by %s", pin, key), Topic: req.Topic, Requester: req.Requester,
		Fields: map[string]any{"pin": pin, "signed_by": key}})
}

// signatureFields are the event fields of a refused signature, or nil.
func signatureFields(err error) map[string]any {
	var se *signature.Error
	if !errors.As(err, &se) {
		return nil
	}
	f := map[string]any{"signature": se.Reason}
	if se.Key != "" {
		f["key"] = se.Key
	}
	return f
}
