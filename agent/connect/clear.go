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

// DefaultHADiscoveryPrefix is Home Assistant's default discovery prefix.
const DefaultHADiscoveryPrefix = "homeassistant"

// HADiscoveryTopic is the retained device discovery topic of Home Assistant
// for a device under discoveryPrefix (configured as homeassistant.discovery_prefix).
func HADiscoveryTopic(discoveryPrefix, device string) string {
	return discoveryPrefix + "/device/picockpit_" + device + "/config"
}

// ClearRetained deletes every retained message under the device's root
// and the given extra topics (Home Assistant discovery; skipped when the
// login may not write them, as when it never published them), so the device
// leaves no ghost on dashboards. It subscribes to {root}/#; the broker
// sends the retained messages first, and a marker published after the
// subscription tells when all of them have arrived. It returns the topics
// it cleared.
func ClearRetained(ctx context.Context, t Target, root contract.Root, extra ...string) ([]string, error) {
	s, err := dial(ctx, t)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.subscribe(ctx, root.Topic("#"), 0); err != nil {
		return nil, err
	}
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	marker := root.Topic(contract.TopicConnectProbe + "/" + hex.EncodeToString(nonce))
	expiry := uint32(30)
	if err := s.publish(ctx, &paho.Publish{Topic: marker, Payload: nonce, Properties: &paho.PublishProperties{MessageExpiry: &expiry}}); err != nil {
		return nil, err
	}
	var retained []string
	seen := map[string]bool{}
	wait := time.NewTimer(s.t.timeout())
	defer wait.Stop()
collect:
	for {
		select {
		case p := <-s.in:
			if p.Topic == marker {
				break collect
			}
			if p.Retain && len(p.Payload) > 0 && !seen[p.Topic] {
				seen[p.Topic] = true
				retained = append(retained, p.Topic)
			}
		case <-wait.C:
			return nil, &Error{Kind: KindReadDenied, URL: s.url,
				Detail: fmt.Sprintf("subscribed to %s but our own marker never arrived: this login may not read the device's topics", root.Topic("#"))}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var cleared []string
	for _, topic := range retained {
		if err := s.publish(ctx, &paho.Publish{Topic: topic, Retain: true}); err != nil {
			return cleared, err
		}
		cleared = append(cleared, topic)
	}
	for _, topic := range extra {
		// Outside the device's tree the login may not write, e.g. Home
		// Assistant discovery when it was never enabled: nothing to clear.
		if err := s.publish(ctx, &paho.Publish{Topic: topic, Retain: true}); err != nil {
			if KindOf(err) == KindPublishDenied {
				continue
			}
			return cleared, err
		}
		cleared = append(cleared, topic)
	}
	if n := s.dropped.Load(); n > 0 {
		return cleared, fmt.Errorf("%d messages arrived faster than they could be handled; run disconnect again to clear the rest", n)
	}
	return cleared, nil
}
