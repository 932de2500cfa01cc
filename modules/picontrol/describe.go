package picontrol

import (
	"fmt"
	"strings"

	"github.com/picockpit/picockpit-client/modules"
)

// Describe implements modules.Describer: each module file with its
// commands.
func (m *Module) Describe() []modules.Loaded {
	var out []modules.Loaded
	for _, mod := range m.mods {
		l := modules.Loaded{File: mod.File}
		for _, c := range mod.Commands {
			var notes []string
			notes = append(notes, "as "+c.User.Name)
			if c.Confirm {
				notes = append(notes, "confirm")
			}
			for _, p := range c.Params {
				notes = append(notes, "{"+p.Name+"}")
			}
			l.Items = append(l.Items, fmt.Sprintf("command %s/%s %q (%s)", mod.ID, c.ID, c.Name, strings.Join(notes, ", ")))
		}
		out = append(out, l)
	}
	return out
}
