package pistats

import (
	"github.com/picockpit/picockpit-client/agent/contract"
)

func (s *Sampler) sampleSystem() {
	si := &s.sys
	out := &s.store.system
	*out = contract.StatsSystem{}
	set := func(dst **string, v *string, key, why string) {
		if *v != "" {
			*dst = v
		} else {
			s.unav[key] = why
		}
	}
	set(&out.Model, &si.Model, "system.model", si.ModelWhy)
	set(&out.Serial, &si.Serial, "system.serial", si.SerialWhy)
	set(&out.OS, &si.OS, "system.os", si.OSWhy)
	set(&out.Kernel, &si.Kernel, "system.kernel", si.KernelWhy)
	s.out.System = out
}
