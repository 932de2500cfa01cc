package connect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// Probe tests a login for real: it connects (trying the URLs in order),
// subscribes to a probe topic in the device's own tree, publishes to it and
// waits for the message to come back. It returns the URL that worked, or an
// *Error saying what failed: DNS, refused, timeout, TLS, credentials, or an
// ACL refusing the subscription, the publish or the read.
func Probe(ctx context.Context, t Target, root contract.Root) (string, error) {
	s, err := dial(ctx, t)
	if err != nil {
		return "", err
	}
	defer s.close()
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	topic := root.Topic(contract.TopicConnectProbe + "/" + hex.EncodeToString(nonce))
	if err := s.subscribe(ctx, topic, 2); err != nil {
		return s.url, err
	}
	expiry := uint32(30)
	if err := s.publish(ctx, &paho.Publish{Topic: topic, Payload: nonce, Properties: &paho.PublishProperties{MessageExpiry: &expiry}}); err != nil {
		return s.url, err
	}
	patience := t.ProbeWait
	if patience <= 0 {
		patience = t.timeout()
	}
	wait := time.NewTimer(patience)
	defer wait.Stop()
	for {
		select {
		case p := <-s.in:
			if p.Topic == topic && string(p.Payload) == string(nonce) {
				return s.url, nil
			}
		case <-wait.C:
			return s.url, &Error{Kind: KindReadDenied, URL: s.url,
				Detail: fmt.Sprintf("the broker accepted a publish to %s and the subscription to it, but the message never came back in %s: the ACL lets this user write but not read its own topics (see `picockpit-client acl`)", topic, patience)}
		case <-ctx.Done():
			return s.url, &Error{Kind: KindTimeout, URL: s.url, Detail: "interrupted", Err: ctx.Err()}
		}
	}
}
