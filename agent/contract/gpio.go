package contract

import "time"

// GPIO topics relative to the device root. {pin} is the BCM number as the
// header shows it ("17"), never a chip offset.
const (
	// TopicGPIOPins carries the retained GPIOPins catalogue.
	TopicGPIOPins = "gpio/pins"
	// FilterGPIOSet matches every pin's set topic.
	FilterGPIOSet = "gpio/+/set"
	// FilterGPIOState matches every pin's retained state topic.
	FilterGPIOState = "gpio/+/state"
)

// TopicGPIOState returns the retained state topic of pin ("17").
func TopicGPIOState(pin string) string { return "gpio/" + pin + "/state" }

// TopicGPIOSet returns the topic clients publish set requests for pin on.
func TopicGPIOSet(pin string) string { return "gpio/" + pin + "/set" }

// GPIOPinFromTopic returns the pin of a relative gpio/{pin}/set or
// gpio/{pin}/state topic, and false for any other topic.
func GPIOPinFromTopic(rel string) (string, bool) {
	const pre = "gpio/"
	if len(rel) <= len(pre) || rel[:len(pre)] != pre {
		return "", false
	}
	rest := rel[len(pre):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '/' {
			pin, tail := rest[:i], rest[i+1:]
			if pin == "" || (tail != "set" && tail != "state") {
				return "", false
			}
			return pin, true
		}
	}
	return "", false
}

// Pin modes as published in GPIOState.Mode and GPIOPin.Mode.
const (
	GPIOModeIn  = "in"
	GPIOModeOut = "out"
	GPIOModePWM = "pwm"
)

// Pull settings as published in GPIOPin.Pull.
const (
	GPIOPullNone = "none"
	GPIOPullUp   = "up"
	GPIOPullDown = "down"
)

// Capabilities listed in GPIOPin.Capabilities.
const (
	GPIOCapRead        = "read"         // the value can be read (every pin)
	GPIOCapWrite       = "write"        // 0/1 can be set (out mode allowed)
	GPIOCapEdges       = "edges"        // input edges are published at once (in mode allowed)
	GPIOCapPWM         = "pwm"          // software PWM (pwm mode allowed)
	GPIOCapHardwarePWM = "hardware-pwm" // PWM by a /sys/class/pwm channel
	GPIOCapFailsafe    = "failsafe"     // a failsafe value is configured
)

// Sources of a state change, in GPIOState.Source.
const (
	GPIOSourceInit     = "init"     // the pin was requested at start
	GPIOSourceSet      = "set"      // a client's set request
	GPIOSourceEdge     = "edge"     // a (debounced) input edge
	GPIOSourceFailsafe = "failsafe" // the broker link was down too long
	GPIOSourceRestore  = "restore"  // the link came back; the value before failsafe is back
)

// GPIOPins is the retained catalogue on TopicGPIOPins.
type GPIOPins struct {
	Pins []GPIOPin `json:"pins"`
	// Epoch identifies this start of the gpio module (Unix milliseconds); it
	// is repeated in every GPIOState.
	Epoch int64     `json:"epoch"`
	TS    time.Time `json:"ts"`
}

// GPIOPin describes one exposed pin.
type GPIOPin struct {
	// Pin is the topic id: the BCM number as text ("17").
	Pin  string `json:"pin"`
	BCM  int    `json:"bcm"`
	Name string `json:"name"`
	// Line is the kernel line name the pin was looked up by ("GPIO17").
	Line string `json:"line"`
	// Mode is the configured start mode: in, out or pwm.
	Mode string `json:"mode"`
	// Modes lists the modes a set request may switch the pin to.
	Modes        []string `json:"modes"`
	Pull         string   `json:"pull"`
	ActiveLow    bool     `json:"active_low"`
	DebounceMS   float64  `json:"debounce_ms,omitempty"`
	Capabilities []string `json:"capabilities"`
	// PWM holds the pwm defaults and limits when the pin may run PWM.
	PWM *GPIOPWMLimits `json:"pwm,omitempty"`
	// Failsafe is the value applied when the broker link is down longer
	// than AfterMS; nil when none is configured.
	Failsafe *GPIOFailsafe `json:"failsafe,omitempty"`
	// Error says why the pin is unavailable (e.g. the line is held by
	// another program); empty when the pin works.
	Error string `json:"error,omitempty"`
	// RequireSignature: only signed set requests change the pin
	// (user properties sig-key, sig-time, sig-nonce, sig; docs/security.md).
	RequireSignature bool `json:"require_signature,omitempty"`
}

// GPIOPWMLimits are a pin's PWM defaults and limits.
type GPIOPWMLimits struct {
	Frequency    float64 `json:"frequency"`
	Duty         float64 `json:"duty"`
	MinFrequency float64 `json:"min_frequency"`
	MaxFrequency float64 `json:"max_frequency"`
	Hardware     bool    `json:"hardware"`
}

// GPIOFailsafe is a pin's failsafe configuration.
type GPIOFailsafe struct {
	Value   int     `json:"value"`
	AfterMS float64 `json:"after_ms"`
}

// GPIOPWM is a PWM setting: frequency in Hz and duty cycle from 0 to 1.
type GPIOPWM struct {
	Frequency float64 `json:"frequency"`
	Duty      float64 `json:"duty"`
}

// GPIOState is the retained payload on TopicGPIOState: the single source of
// truth every frontend shows. Order states of a pin by (Epoch, Seq).
type GPIOState struct {
	Pin  string `json:"pin"`
	Mode string `json:"mode"`
	// Value is the active (logical) level, 0 or 1: active_low is already
	// applied. In pwm mode it is 1 while PWM runs and 0 when stopped.
	Value int `json:"value"`
	// PWM is the current PWM setting in pwm mode (kept while stopped).
	PWM *GPIOPWM `json:"pwm,omitempty"`
	// Seq increases by one with every change of this pin, from any source;
	// it starts at 1 when the module starts.
	Seq   uint64    `json:"seq"`
	Epoch int64     `json:"epoch"`
	TS    time.Time `json:"ts"`
	// Source says what caused this state (init, set, edge, failsafe, restore).
	Source string `json:"source"`
	// Requester names the client of a set (user property), when known.
	Requester string `json:"requester,omitempty"`
	// Failsafe is true while the failsafe value is applied.
	Failsafe bool `json:"failsafe,omitempty"`
	// Error says why the pin is unavailable; Value is then meaningless.
	Error string `json:"error,omitempty"`
}

// GPIOSet is a decoded set request. Nil fields are left unchanged; at least
// one field is set.
type GPIOSet struct {
	Value *int        `json:"value,omitempty"`
	PWM   *GPIOPWMSet `json:"pwm,omitempty"`
	// Mode switches the pin to in, out or pwm where the config allows it.
	Mode string `json:"mode,omitempty"`
}

// GPIOPWMSet changes PWM frequency and/or duty; nil fields keep their value.
type GPIOPWMSet struct {
	Frequency *float64 `json:"frequency,omitempty"`
	Duty      *float64 `json:"duty,omitempty"`
}

// GPIOSetResponse answers a set request on its Response Topic: status ok with
// the resulting state, or rejected with an error (and nothing changed).
type GPIOSetResponse struct {
	Response
	Pin   string     `json:"pin"`
	State *GPIOState `json:"state,omitempty"`
}
