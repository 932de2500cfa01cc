package contract

import (
	"fmt"
	"strings"
)

// RequestFilters are the topic filters, relative to a device root, that the
// agent subscribes to: everything a client may send it. Broker ACLs grant
// frontends write access to exactly these.
var RequestFilters = []string{TopicPiControlRunFilter, FilterGPIOSet, TopicStatsRefresh}

// MosquittoACL returns a Mosquitto acl_file granting least privilege: the
// device's broker user may read and write its own tree (DeviceRules); the
// frontend user may read every device and write only request topics, never status, state or info. deviceUser is the device's
// broker user name; with perDevicePattern the device rules are written as
// patterns for all devices whose user name is their device id.
func MosquittoACL(prefix, device, deviceUser, frontendUser string, perDevicePattern bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# picockpit-client: Mosquitto ACL (acl_file) for topic prefix %q\n", prefix)
	if perDevicePattern {
		b.WriteString("# every device: broker user name = its device id\n")
		for _, r := range DeviceRules(prefix, "%u") {
			fmt.Fprintf(&b, "pattern %s %s\n", r.access(), r.Topic)
		}
	} else {
		fmt.Fprintf(&b, "# device %s\nuser %s\n", device, deviceUser)
		for _, r := range DeviceRules(prefix, device) {
			fmt.Fprintf(&b, "topic %s %s\n", r.access(), r.Topic)
		}
	}
	if frontendUser != "" {
		fmt.Fprintf(&b, "\n# frontend (dashboards, Node-RED, Home Assistant): read all devices, send requests only\nuser %s\n", frontendUser)
		fmt.Fprintf(&b, "topic read %s/#\n", prefix)
		for _, f := range RequestFilters {
			fmt.Fprintf(&b, "topic write %s/+/%s\n", prefix, f)
		}
	}
	return b.String()
}

func (r ACLRule) access() string {
	switch {
	case r.Read && r.Write:
		return "readwrite"
	case r.Write:
		return "write"
	default:
		return "read"
	}
}
