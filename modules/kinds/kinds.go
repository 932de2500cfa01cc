// Package kinds is the explicit list of module kinds compiled into
// picockpit-client. Adding a kind means adding it here; nothing registers
// itself from an init function.
package kinds

import "github.com/picockpit/picockpit-client/modules"

// All returns every module kind, in start order.
func All() []modules.Kind {
	return []modules.Kind{}
}
