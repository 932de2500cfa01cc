package gpio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// MaxSetPayload is the largest set payload accepted, in bytes.
const MaxSetPayload = 4096

const setHelp = `send 0, 1, on, off, true, false or JSON such as {"value":1} or {"pwm":{"frequency":100,"duty":0.25}}`

// ParseSet decodes a gpio/{pin}/set payload: 0/1, on/off, true/false (any
// case, surrounding white space ignored), or a JSON object with value (0, 1,
// true, false, "on", "off"), pwm {frequency, duty} and mode (in, out, pwm,
// input, output). Unknown JSON fields are errors. It checks what it can
// without knowing the pin: the pin's own limits are checked when applied.
func ParseSet(payload []byte) (contract.GPIOSet, error) {
	var set contract.GPIOSet
	if len(payload) > MaxSetPayload {
		return set, fmt.Errorf("payload of %d bytes is longer than %d", len(payload), MaxSetPayload)
	}
	b := bytes.TrimSpace(payload)
	if len(b) == 0 {
		return set, errors.New("empty payload: " + setHelp)
	}
	if v, ok := word(string(b)); ok {
		set.Value = &v
		return set, nil
	}
	switch b[0] {
	case '{':
		return parseSetObject(b)
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err == nil {
			if v, ok := word(strings.TrimSpace(s)); ok {
				set.Value = &v
				return set, nil
			}
		}
	}
	return set, fmt.Errorf("cannot read %s: %s", quote(b), setHelp)
}

// word reads the plain text forms.
func word(s string) (int, bool) {
	switch strings.ToLower(s) {
	case "0", "off", "false":
		return 0, true
	case "1", "on", "true":
		return 1, true
	}
	return 0, false
}

func quote(b []byte) string {
	const max = 40
	if len(b) > max {
		return fmt.Sprintf("%q...", b[:max])
	}
	return fmt.Sprintf("%q", b)
}

type rawSet struct {
	Value json.RawMessage `json:"value"`
	PWM   *rawPWM         `json:"pwm"`
	Mode  *string         `json:"mode"`
}

type rawPWM struct {
	Frequency *float64 `json:"frequency"`
	Duty      *float64 `json:"duty"`
}

func parseSetObject(b []byte) (contract.GPIOSet, error) {
	var set contract.GPIOSet
	var raw rawSet
	if err := modules.DecodeStrict(b, &raw); err != nil {
		return set, fmt.Errorf("bad set request: %w", err)
	}
	if raw.Value != nil {
		v, err := jsonValue(raw.Value)
		if err != nil {
			return set, err
		}
		set.Value = &v
	}
	if raw.PWM != nil {
		if raw.PWM.Frequency == nil && raw.PWM.Duty == nil {
			return set, errors.New("pwm: give frequency (Hz) and/or duty (0..1)")
		}
		if f := raw.PWM.Frequency; f != nil {
			if math.IsNaN(*f) || math.IsInf(*f, 0) || *f <= 0 {
				return set, fmt.Errorf("pwm.frequency %v must be a positive number of Hz", *f)
			}
			if *f > MaxHardwarePWMFrequency {
				return set, fmt.Errorf("pwm.frequency %v Hz is above %v", *f, MaxHardwarePWMFrequency)
			}
		}
		if d := raw.PWM.Duty; d != nil && !(*d >= 0 && *d <= 1) {
			return set, fmt.Errorf("pwm.duty %v is outside 0..1", *d)
		}
		set.PWM = &contract.GPIOPWMSet{Frequency: raw.PWM.Frequency, Duty: raw.PWM.Duty}
	}
	if raw.Mode != nil {
		m, ok := normMode(*raw.Mode)
		if !ok {
			return set, fmt.Errorf("mode %q is not one of in, out, pwm", *raw.Mode)
		}
		set.Mode = m
	}
	if set.Value == nil && set.PWM == nil && set.Mode == "" {
		return set, errors.New("empty set request: give value, pwm or mode")
	}
	return set, nil
}

func jsonValue(r json.RawMessage) (int, error) {
	if bytes.Equal(bytes.TrimSpace(r), []byte("null")) {
		return 0, errors.New("value is null: give 0, 1, true, false, \"on\" or \"off\"")
	}
	var n float64
	if err := json.Unmarshal(r, &n); err == nil {
		if n == 0 || n == 1 {
			return int(n), nil
		}
		return 0, fmt.Errorf("value %v is not 0 or 1", n)
	}
	var b bool
	if err := json.Unmarshal(r, &b); err == nil {
		return b2i(b), nil
	}
	var s string
	if err := json.Unmarshal(r, &s); err == nil {
		if v, ok := word(strings.TrimSpace(s)); ok {
			return v, nil
		}
	}
	return 0, fmt.Errorf("value %s is not 0, 1, true, false, \"on\" or \"off\"", quote(r))
}
