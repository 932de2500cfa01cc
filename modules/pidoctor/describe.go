package pidoctor

import (
	"fmt"

	"github.com/picockpit/picockpit-client/modules"
)

// Describe implements modules.Describer: the settings in effect, then each
// module file with its checks.
func (m *Module) Describe() []modules.Loaded {
	interval := "off"
	if m.cfg.Interval > 0 {
		interval = "every " + m.cfg.Interval.String()
	}
	out := []modules.Loaded{{Items: []string{fmt.Sprintf("periodic run %s, %d checks at once", interval, m.cfg.MaxParallel)}}}
	for _, mod := range m.mods {
		l := modules.Loaded{File: mod.File}
		for _, c := range mod.Checks {
			how := "builtin " + c.Builtin
			if p, ok := c.probe.(*externalProbe); ok {
				how = fmt.Sprintf("as %s, timeout %v", p.cmd.User(), p.cmd.Timeout())
			}
			l.Items = append(l.Items, fmt.Sprintf("check %s/%s %q (%s, %s)", mod.ID, c.ID, c.Name, c.Category, how))
		}
		out = append(out, l)
	}
	return out
}
