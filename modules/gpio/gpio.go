// Package gpio exposes Raspberry Pi GPIO pins over the bus: a retained
// catalogue on gpio/pins, one retained state per pin on gpio/{pin}/state
// (the single source of truth every frontend shows, ordered by a per-pin
// seq) and set requests on gpio/{pin}/set. Lines are requested through a
// small Line interface, implemented by *gpiocdev.Line (backend "gpiocdev")
// or the in-memory Fake (backend "fake"). Output pins can run software PWM
// or a /sys/class/pwm channel, and can fall back to a failsafe value while
// the broker link is down.
//
// Each pin is owned by one goroutine: set requests, debounced input edges,
// failsafe and restore are applied there one after another, and the state of
// every change is published, retained, in seq order before the next one is
// applied. Concurrent sets from many clients therefore converge: the last
// retained state is the pin's real state and carries the highest seq.
package gpio

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"

	"github.com/picockpit/picockpit-client/modules"
)

// Name is the kind name: the app directory apps/com.picockpit/gpio and the
// main config section "gpio".
const Name = "gpio"

// Consumer is the consumer label the agent's lines carry in the kernel.
const Consumer = "picockpit-client"

// Kind returns the gpio module kind. The backend comes from the config
// (gpio.backend): "gpiocdev" (default) or "fake".
func Kind() modules.Kind {
	return modules.Kind{Name: Name, Load: func(env modules.Env, section []byte, sectionFile string, files []modules.File) (modules.Module, []modules.Problem) {
		return load(env, section, sectionFile, files, nil)
	}}
}

// KindWith returns the gpio module kind with a given backend, whatever the
// config says: for tests of the whole agent that drive a Fake.
func KindWith(b Backend) modules.Kind {
	return modules.Kind{Name: Name, Load: func(env modules.Env, section []byte, sectionFile string, files []modules.File) (modules.Module, []modules.Problem) {
		return load(env, section, sectionFile, files, b)
	}}
}

func load(env modules.Env, section []byte, sectionFile string, files []modules.File, backend Backend) (modules.Module, []modules.Problem) {
	var problems []modules.Problem
	seen := map[int]string{}
	var cfg Config
	var specs []*pinSpec
	if section != nil {
		c, pins, err := decodeFile(sectionFile, section, true, seen)
		if err != nil {
			problems = append(problems, modules.ProblemsFor(sectionFile, Name, err)...)
		} else {
			cfg = *c
			specs = append(specs, pins...)
		}
	}
	for _, f := range files {
		_, pins, err := decodeFile(f.Path, f.Data, false, seen)
		if err != nil {
			problems = append(problems, modules.ProblemsFor(f.Path, "", err)...)
			continue
		}
		specs = append(specs, pins...)
	}
	if len(specs) == 0 {
		return nil, problems
	}
	if backend == nil {
		switch cfg.Backend {
		case BackendFake:
			f := NewFake()
			for _, j := range cfg.FakeJumpers {
				f.Jumper(lineOf(specs, j.From), lineOf(specs, j.To))
			}
			backend = f
		default:
			b, err := newCdev()
			if err != nil {
				problems = append(problems, modules.Problem{File: sectionFile, Field: Name + ".backend", Err: err})
				return nil, problems
			}
			backend = b
		}
	}
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := env.HostRoot
	if root == "" {
		root = "/"
	}
	m := &module{
		log:     log.With("module", Name, "backend", backend.Name()),
		backend: backend,
		chip:    cfg.Chip,
		specs:   specs,
		clock:   realClock{},
		pwmRoot: filepath.Join(root, "sys", "class", "pwm"),
		root:    env.Root,
		sigs:    env.Signatures,
	}
	for _, s := range specs {
		m.log.Debug("pin configured", "pin", s.id, "mode", s.mode, "file", s.file)
	}
	return m, problems
}

// lineOf returns the line name of the configured pin bcm, or the default
// name when the pin is not configured.
func lineOf(specs []*pinSpec, bcm int) string {
	for _, s := range specs {
		if s.bcm == bcm {
			return s.line
		}
	}
	return "GPIO" + strconv.Itoa(bcm)
}

func (p *pinSpec) String() string { return fmt.Sprintf("pin %s (%s)", p.id, p.name) }
