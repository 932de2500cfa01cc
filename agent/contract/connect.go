package contract

// TopicConnectProbe is where `picockpit-client connect` tests a login: it
// publishes a short-lived, non-retained message to
// {prefix}/{device}/connect/probe/{nonce} and reads it back. Frontends ignore it.
const TopicConnectProbe = "connect/probe"

// ACLRule is one grant of a broker account: a topic filter and whether the
// account may read (subscribe and receive) and write (publish) it.
type ACLRule struct {
	Topic       string
	Read, Write bool
}

// DeviceRules are the grants of a device's own broker account: its whole
// tree, read and write. Reading its own tree lets `connect` test a login by
// reading back what it published and lets `disconnect` find and clear every
// retained message the device left. `picockpit-client acl` prints these
// rules and `connect --provision` gives them to the role it creates.
// device may be a pattern placeholder such as "%u".
func DeviceRules(prefix, device string) []ACLRule {
	return []ACLRule{{Topic: prefix + "/" + device + "/#", Read: true, Write: true}}
}
