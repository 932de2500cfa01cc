package gpio

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// Backend names for config gpio.backend.
const (
	BackendGpiocdev = "gpiocdev"
	BackendFake     = "fake"
)

// MaxBCM is the highest BCM number accepted (BCM2711 has 58 lines, the
// header shows 0..27).
const MaxBCM = 57

// Config is the gpio section of the main config.
type Config struct {
	// Backend is "gpiocdev" (default) or "fake".
	Backend string `json:"backend,omitempty"`
	// Chip restricts the line search to one chip ("gpiochip0"); there the
	// BCM number is used as offset when no line carries the name.
	Chip string      `json:"chip,omitempty"`
	Pins []PinConfig `json:"pins,omitempty"`
	// FakeJumpers join pins of the fake backend as a jumper wire on a
	// breadboard would: the input pin To reads the level the output pin From
	// drives (make demo). Only with backend "fake".
	FakeJumpers []Jumper `json:"fake_jumpers,omitempty"`
}

// Jumper joins the output pin From to the input pin To (BCM numbers).
type Jumper struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// FileConfig is one module file apps/com.picockpit/gpio/modules/*.json.
type FileConfig struct {
	Pins []PinConfig `json:"pins"`
}

// PinConfig is one exposed pin.
type PinConfig struct {
	// BCM is the pin's BCM number (required); its topic id is its text.
	BCM *int `json:"bcm"`
	// Name is shown by frontends; default "GPIO<bcm>".
	Name string `json:"name,omitempty"`
	// Line is the kernel line name; default "GPIO<bcm>".
	Line string `json:"line,omitempty"`
	// Mode is the start mode: input, output or pwm (also in, out).
	Mode string `json:"mode"`
	// Modes lists the modes a set request may switch to; default [Mode].
	Modes []string `json:"modes,omitempty"`
	// Pull is up, down or none (default).
	Pull      string `json:"pull,omitempty"`
	ActiveLow bool   `json:"active_low,omitempty"`
	// Debounce is how long an input must be stable before its new value is
	// published ("20ms"); default none.
	Debounce Duration `json:"debounce,omitempty"`
	// Initial is the start value of an output (0 or 1) and whether PWM runs
	// at start (default 1 for pwm). Absent for an output, the level the line
	// already drives is kept (0 if it was no output).
	Initial  *int            `json:"initial,omitempty"`
	Failsafe *FailsafeConfig `json:"failsafe,omitempty"`
	PWM      *PWMConfig      `json:"pwm,omitempty"`
	// RequireSignature: only signed set requests change the pin (signed.go).
	RequireSignature bool `json:"require_signature,omitempty"`
}

// FailsafeConfig is applied when the broker connection is down longer than
// After; the value before it is restored when the connection is back.
type FailsafeConfig struct {
	Value *int     `json:"value"`
	After Duration `json:"after"`
}

// PWMConfig holds a pin's PWM defaults.
type PWMConfig struct {
	// Frequency in Hz at start; default 100.
	Frequency float64 `json:"frequency,omitempty"`
	// Duty at start, 0..1; default 0.
	Duty float64 `json:"duty,omitempty"`
	// MaxFrequency caps what set requests may ask; default 1000 (software
	// PWM) and never above 5000.
	MaxFrequency float64 `json:"max_frequency,omitempty"`
	// Hardware uses a /sys/class/pwm channel instead of software PWM; the
	// pin must be muxed to PWM (dtoverlay=pwm or pwm-2chan) and is then pwm
	// only.
	Hardware *HardwarePWM `json:"hardware,omitempty"`
}

// HardwarePWM names a channel of /sys/class/pwm/pwmchip<Chip>.
type HardwarePWM struct {
	Chip    int `json:"chip"`
	Channel int `json:"channel"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	v, err := modules.DurationJSON(b)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// pinSpec is a validated pin.
type pinSpec struct {
	id        string // "17"
	bcm       int
	name      string
	line      string
	mode      string // contract mode
	modes     []string
	pull      Pull
	activeLow bool
	debounce  time.Duration
	initial   *int
	failsafe  *failsafeSpec
	pwm       pwmSpec // defaults, valid when modes include pwm
	hw        *HardwarePWM
	file      string // where it was configured
	// requireSig: set requests must be signed (signed.go).
	requireSig bool
}

type failsafeSpec struct {
	value int
	after time.Duration
}

type pwmSpec struct {
	freq, duty, max float64
}

func normMode(m string) (string, bool) {
	switch m {
	case "input", contract.GPIOModeIn:
		return contract.GPIOModeIn, true
	case "output", contract.GPIOModeOut:
		return contract.GPIOModeOut, true
	case contract.GPIOModePWM:
		return contract.GPIOModePWM, true
	}
	return "", false
}

func bit(v int) error {
	if v != 0 && v != 1 {
		return fmt.Errorf("value %d is not 0 or 1", v)
	}
	return nil
}

// validatePin checks one pin config and turns it into a pinSpec. The error
// is a modules.FieldErrors: the problems of bcm, mode, modes and pull are
// all reported; the checks that depend on them stop at the first.
func validatePin(c PinConfig) (*pinSpec, error) {
	var errs modules.FieldErrors
	fe := func(field string, format string, a ...any) error {
		errs = append(errs, &modules.FieldError{Field: field, Err: fmt.Errorf(format, a...)})
		return errs
	}
	bcm := 0
	if c.BCM == nil {
		fe("bcm", "missing: the pin's BCM number is required")
	} else if bcm = *c.BCM; bcm < 0 || bcm > MaxBCM {
		fe("bcm", "%d is outside 0..%d", bcm, MaxBCM)
	}
	p := &pinSpec{bcm: bcm, id: strconv.Itoa(bcm), name: c.Name, line: c.Line,
		activeLow: c.ActiveLow, debounce: time.Duration(c.Debounce), initial: c.Initial, requireSig: c.RequireSignature}
	if p.name == "" {
		p.name = "GPIO" + p.id
	}
	if p.line == "" {
		p.line = "GPIO" + p.id
	}
	var ok bool
	if p.mode, ok = normMode(c.Mode); !ok {
		if c.Mode == "" {
			fe("mode", "missing: one of input, output, pwm")
		} else {
			fe("mode", "%q is not one of input, output, pwm", c.Mode)
		}
	}
	p.modes = []string{p.mode}
	if len(c.Modes) > 0 {
		p.modes = nil
		for i, m := range c.Modes {
			n, ok := normMode(m)
			if !ok {
				fe(fmt.Sprintf("modes[%d]", i), "%q is not one of input, output, pwm", m)
				continue
			}
			if !slices.Contains(p.modes, n) {
				p.modes = append(p.modes, n)
			}
		}
		if p.mode != "" && !slices.Contains(p.modes, p.mode) {
			fe("modes", "does not contain the start mode %q", c.Mode)
		}
	}
	switch c.Pull {
	case "", "none":
		p.pull = PullNone
	case "up":
		p.pull = PullUp
	case "down":
		p.pull = PullDown
	default:
		fe("pull", "%q is not one of up, down, none", c.Pull)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if p.debounce > 0 && !slices.Contains(p.modes, contract.GPIOModeIn) {
		return nil, fe("debounce", "only inputs are debounced")
	}
	if p.debounce > 10*time.Second {
		return nil, fe("debounce", "%s is longer than 10s", p.debounce)
	}
	if c.Initial != nil {
		if err := bit(*c.Initial); err != nil {
			return nil, fe("initial", "%w", err)
		}
		if p.mode == contract.GPIOModeIn {
			return nil, fe("initial", "an input has no initial value")
		}
	}
	canDrive := slices.Contains(p.modes, contract.GPIOModeOut) || slices.Contains(p.modes, contract.GPIOModePWM)
	if c.Failsafe != nil {
		if !canDrive {
			return nil, fe("failsafe", "an input-only pin cannot have a failsafe value")
		}
		if c.Failsafe.Value == nil {
			return nil, fe("failsafe.value", "missing: 0 or 1")
		}
		if err := bit(*c.Failsafe.Value); err != nil {
			return nil, fe("failsafe.value", "%w", err)
		}
		if c.Failsafe.After <= 0 {
			return nil, fe("failsafe.after", `missing: how long the link may be down, e.g. "30s"`)
		}
		p.failsafe = &failsafeSpec{value: *c.Failsafe.Value, after: time.Duration(c.Failsafe.After)}
	}
	p.pwm = pwmSpec{freq: DefaultPWMFrequency, max: DefaultMaxPWMFrequency}
	if c.PWM != nil {
		if !slices.Contains(p.modes, contract.GPIOModePWM) {
			return nil, fe("pwm", "pwm settings on a pin whose modes do not include pwm")
		}
		limit := MaxPWMFrequency
		if c.PWM.Hardware != nil {
			limit = MaxHardwarePWMFrequency
			p.pwm.max = limit
		}
		if c.PWM.MaxFrequency != 0 {
			p.pwm.max = c.PWM.MaxFrequency
		}
		if p.pwm.max < MinPWMFrequency || p.pwm.max > limit || math.IsNaN(p.pwm.max) {
			return nil, fe("pwm.max_frequency", "%v is outside %v..%v Hz", p.pwm.max, MinPWMFrequency, limit)
		}
		if c.PWM.Frequency != 0 {
			p.pwm.freq = c.PWM.Frequency
		}
		if p.pwm.freq < MinPWMFrequency || p.pwm.freq > p.pwm.max {
			return nil, fe("pwm.frequency", "%v is outside %v..%v Hz", p.pwm.freq, MinPWMFrequency, p.pwm.max)
		}
		if c.PWM.Duty < 0 || c.PWM.Duty > 1 {
			return nil, fe("pwm.duty", "%v is outside 0..1", c.PWM.Duty)
		}
		p.pwm.duty = c.PWM.Duty
		if h := c.PWM.Hardware; h != nil {
			if len(p.modes) != 1 {
				return nil, fe("pwm.hardware", "a hardware PWM pin is muxed to PWM and cannot switch to in or out")
			}
			if h.Chip < 0 || h.Channel < 0 {
				return nil, fe("pwm.hardware", "chip and channel must not be negative")
			}
			p.hw = h
		}
	}
	if p.pwm.freq > p.pwm.max {
		p.pwm.freq = p.pwm.max
	}
	return p, nil
}

// decodeFile decodes and validates one file's pins; seen holds the pins of
// files loaded before (a pin configured twice makes the later file bad).
func decodeFile(path string, data []byte, section bool, seen map[int]string) (*Config, []*pinSpec, error) {
	// Pins are decoded one by one so that an error names its pin.
	var raw struct {
		Backend     string            `json:"backend,omitempty"`
		Chip        string            `json:"chip,omitempty"`
		Pins        []json.RawMessage `json:"pins"`
		FakeJumpers []Jumper          `json:"fake_jumpers,omitempty"`
	}
	var cfg Config
	// Every problem of the file is collected (as modules.FieldErrors); the
	// file loads only when there are none. A syntax error stops here.
	var errs modules.FieldErrors
	topErr := func(err error) error {
		if _, ok := modules.Fields(err); !ok {
			return err
		}
		errs = append(errs, err.(modules.FieldErrors)...)
		return nil
	}
	if section {
		if err := modules.DecodeStrict(data, &raw); err != nil && topErr(err) != nil {
			return nil, nil, err
		}
		cfg.Backend, cfg.Chip, cfg.FakeJumpers = raw.Backend, raw.Chip, raw.FakeJumpers
	} else {
		var fc struct {
			Pins []json.RawMessage `json:"pins"`
		}
		if err := modules.DecodeStrict(data, &fc); err != nil && topErr(err) != nil {
			return nil, nil, err
		}
		raw.Pins = fc.Pins
	}
	addAll := func(prefix string, err error) {
		for _, p := range modules.ProblemsFor("", prefix, err) {
			errs = append(errs, &modules.FieldError{Field: p.Field, Err: p.Err})
		}
	}
	undecoded := map[int]bool{}
	for i, rp := range raw.Pins {
		var pc PinConfig
		if err := modules.DecodeStrict(rp, &pc); err != nil {
			addAll(fmt.Sprintf("pins[%d]", i), err)
			undecoded[i] = true
		}
		cfg.Pins = append(cfg.Pins, pc)
	}
	switch cfg.Backend {
	case "", BackendGpiocdev, BackendFake:
	default:
		errs = append(errs, &modules.FieldError{Field: "backend", Err: fmt.Errorf("%q is not one of gpiocdev, fake", cfg.Backend)})
	}
	for i, j := range cfg.FakeJumpers {
		field := fmt.Sprintf("fake_jumpers[%d]", i)
		switch {
		case cfg.Backend != BackendFake:
			errs = append(errs, &modules.FieldError{Field: field, Err: fmt.Errorf("jumpers join pins of the fake backend only (backend %q)", BackendFake)})
		case j.From < 0 || j.From > MaxBCM || j.To < 0 || j.To > MaxBCM:
			errs = append(errs, &modules.FieldError{Field: field, Err: fmt.Errorf("from and to are BCM numbers 0..%d", MaxBCM)})
		case j.From == j.To:
			errs = append(errs, &modules.FieldError{Field: field, Err: fmt.Errorf("from and to are the same pin %d", j.From)})
		}
	}
	var pins []*pinSpec
	mine := map[int]bool{}
	for i, pc := range cfg.Pins {
		prefix := fmt.Sprintf("pins[%d]", i)
		if undecoded[i] {
			continue // reported above
		}
		p, err := validatePin(pc)
		if err != nil {
			addAll(prefix, err)
			continue
		}
		if mine[p.bcm] {
			errs = append(errs, &modules.FieldError{Field: prefix + ".bcm", Err: fmt.Errorf("pin %d is configured twice in this file", p.bcm)})
			continue
		}
		if other, ok := seen[p.bcm]; ok {
			errs = append(errs, &modules.FieldError{Field: prefix + ".bcm", Err: fmt.Errorf("pin %d is already configured in %s", p.bcm, filepath.Base(other))})
			continue
		}
		mine[p.bcm] = true
		p.file = path
		pins = append(pins, p)
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	for _, p := range pins {
		seen[p.bcm] = path
	}
	return &cfg, pins, nil
}
