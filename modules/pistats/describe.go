package pistats

import (
	"fmt"
	"strings"

	"github.com/picockpit/picockpit-client/modules"
)

// Describe implements modules.Describer: the settings in effect.
func (m *module) Describe() []modules.Loaded {
	metrics := "all metrics"
	if m.set.metrics != nil {
		metrics = "metrics " + strings.Join(m.set.metrics, ", ")
	}
	return []modules.Loaded{{Items: []string{fmt.Sprintf("stats every %s, %s", m.set.interval, metrics)}}}
}
