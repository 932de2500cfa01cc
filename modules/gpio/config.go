package gpio

import (
	"encoding/json"
	"errors"
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
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`expected a duration string such as "30s" or "20ms"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: %w", s, err)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", s)
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

func bit(field string, v int) error {
	if v != 0 && v != 1 {
		return &modules.FieldError{Field: field, Err: fmt.Errorf("value %d is not 0 or 1", v)}
	}
	return nil
}

// validatePin checks one pin config and turns it into a pinSpec.
func validatePin(c PinConfig) (*pinSpec, error) {
	fe := func(field string, format string, a ...any) error {
		return &modules.FieldError{Field: field, Err: fmt.Errorf(format, a...)}
	}
	if c.BCM == nil {
		return nil, fe("bcm", "missing: the pin's BCM number is required")
	}
	if *c.BCM < 0 || *c.BCM > MaxBCM {
		return nil, fe("bcm", "%d is outside 0..%d", *c.BCM, MaxBCM)
	}
	p := &pinSpec{bcm: *c.BCM, id: strconv.Itoa(*c.BCM), name: c.Name, line: c.Line,
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
			return nil, fe("mode", "missing: one of input, output, pwm")
		}
		return nil, fe("mode", "%q is not one of input, output, pwm", c.Mode)
	}
	p.modes = []string{p.mode}
	if len(c.Modes) > 0 {
		p.modes = nil
		for i, m := range c.Modes {
			n, ok := normMode(m)
			if !ok {
				return nil, fe(fmt.Sprintf("modes[%d]", i), "%q is not one of input, output, pwm", m)
			}
			if !slices.Contains(p.modes, n) {
				p.modes = append(p.modes, n)
			}
		}
		if !slices.Contains(p.modes, p.mode) {
			return nil, fe("modes", "does not contain the start mode %q", c.Mode)
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
		return nil, fe("pull", "%q is not one of up, down, none", c.Pull)
	}
	if p.debounce > 0 && !slices.Contains(p.modes, contract.GPIOModeIn) {
		return nil, fe("debounce", "only inputs are debounced")
	}
	if p.debounce > 10*time.Second {
		return nil, fe("debounce", "%s is longer than 10s", p.debounce)
	}
	if c.Initial != nil {
		if err := bit("initial", *c.Initial); err != nil {
			return nil, err
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
		if err := bit("failsafe.value", *c.Failsafe.Value); err != nil {
			return nil, err
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
		Backend string            `json:"backend,omitempty"`
		Chip    string            `json:"chip,omitempty"`
		Pins    []json.RawMessage `json:"pins"`
	}
	var cfg Config
	if section {
		if err := modules.DecodeStrict(data, &raw); err != nil {
			return nil, nil, err
		}
		cfg.Backend, cfg.Chip = raw.Backend, raw.Chip
	} else {
		var fc struct {
			Pins []json.RawMessage `json:"pins"`
		}
		if err := modules.DecodeStrict(data, &fc); err != nil {
			return nil, nil, err
		}
		raw.Pins = fc.Pins
	}
	for i, rp := range raw.Pins {
		var pc PinConfig
		if err := modules.DecodeStrict(rp, &pc); err != nil {
			var fe *modules.FieldError
			if errors.As(err, &fe) {
				return nil, nil, &modules.FieldError{Field: fmt.Sprintf("pins[%d].%s", i, fe.Field), Err: fe.Err}
			}
			return nil, nil, &modules.FieldError{Field: fmt.Sprintf("pins[%d]", i), Err: err}
		}
		cfg.Pins = append(cfg.Pins, pc)
	}
	switch cfg.Backend {
	case "", BackendGpiocdev, BackendFake:
	default:
		return nil, nil, &modules.FieldError{Field: "backend", Err: fmt.Errorf("%q is not one of gpiocdev, fake", cfg.Backend)}
	}
	var pins []*pinSpec
	mine := map[int]bool{}
	for i, pc := range cfg.Pins {
		prefix := fmt.Sprintf("pins[%d]", i)
		p, err := validatePin(pc)
		if err != nil {
			var fe *modules.FieldError
			if errors.As(err, &fe) {
				return nil, nil, &modules.FieldError{Field: prefix + "." + fe.Field, Err: fe.Err}
			}
			return nil, nil, &modules.FieldError{Field: prefix, Err: err}
		}
		if mine[p.bcm] {
			return nil, nil, &modules.FieldError{Field: prefix + ".bcm", Err: fmt.Errorf("pin %d is configured twice in this file", p.bcm)}
		}
		if other, ok := seen[p.bcm]; ok {
			return nil, nil, &modules.FieldError{Field: prefix + ".bcm", Err: fmt.Errorf("pin %d is already configured in %s", p.bcm, filepath.Base(other))}
		}
		mine[p.bcm] = true
		p.file = path
		pins = append(pins, p)
	}
	for _, p := range pins {
		seen[p.bcm] = path
	}
	return &cfg, pins, nil
}
