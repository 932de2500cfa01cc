// Package kinds is the explicit list of module kinds compiled into
// picockpit-client. Adding a kind means adding it here; nothing registers
// itself from an init function.
package kinds

import (
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/gpio"
	"github.com/picockpit/picockpit-client/modules/homeassistant"
	"github.com/picockpit/picockpit-client/modules/picontrol"
	"github.com/picockpit/picockpit-client/modules/pistats"
)

// All returns every module kind.
func All() []modules.Kind {
	stats := pistats.Kind()
	stats.Section = pistats.SectionKey
	return []modules.Kind{picontrol.Kind(), stats, gpio.Kind(), homeassistant.Kind()}
}
