package picontrol

import (
	"errors"

	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/signature"
)

// verify checks the signature of a request for a command that says
// "require_signature": true, and returns the key's name.
func (m *Module) verify(req *modules.Request, c *command) (string, error) {
	msg := signature.Message{Topic: m.root.Topic(req.Topic), Payload: req.Payload,
		CorrelationData: req.CorrelationData, ResponseTopic: req.ResponseTopic}
	return m.sigs.Verify(msg, req.UserProperties, signature.ScopeCommand, c.Module+"/"+c.ID)
}

// signatureFields adds why a signature was refused, and the key the request
// named, to an event's fields.
func signatureFields(fields map[string]any, err error) {
	var se *signature.Error
	if !errors.As(err, &se) {
		return
	}
	fields["signature"] = se.Reason
	if se.Key != "" {
		fields["key"] = se.Key
	}
}
