package gpio

import (
	"fmt"
	"strings"

	"github.com/picockpit/picockpit-client/modules"
)

// Describe implements modules.Describer: each file with its pins.
func (m *module) Describe() []modules.Loaded {
	var out []modules.Loaded
	for _, p := range m.specs {
		if len(out) == 0 || out[len(out)-1].File != p.file {
			out = append(out, modules.Loaded{File: p.file})
		}
		l := &out[len(out)-1]
		l.Items = append(l.Items, fmt.Sprintf("pin %s %q (%s)", p.id, p.name, strings.Join(p.modes, ", ")))
	}
	return out
}
