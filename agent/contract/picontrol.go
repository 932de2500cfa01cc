package contract

import (
	"strings"
	"time"
)

// PiControl topics relative to the device root.
const (
	// TopicPiControlCommands carries the retained catalogue (PiControlCatalogue).
	TopicPiControlCommands = "picontrol/commands"
	// TopicPiControlRunFilter is what the agent subscribes to for requests:
	// picontrol/run/{module}/{command}.
	TopicPiControlRunFilter = "picontrol/run/+/+"
	// TopicPiControlRunPrefix starts every request topic.
	TopicPiControlRunPrefix = "picontrol/run/"
	// TopicPiControlResultPrefix starts the retained result topics:
	// picontrol/result/{module}/{command}.
	TopicPiControlResultPrefix = "picontrol/result/"
)

// PiControlRunTopic returns the relative request topic of one command.
func PiControlRunTopic(module, command string) string {
	return TopicPiControlRunPrefix + module + "/" + command
}

// PiControlResultTopic returns the relative retained result topic of one command.
func PiControlResultTopic(module, command string) string {
	return TopicPiControlResultPrefix + module + "/" + command
}

// ParsePiControlRunTopic splits a relative request topic into module and
// command ids; ok is false when topic is not picontrol/run/{module}/{command}.
func ParsePiControlRunTopic(topic string) (module, command string, ok bool) {
	rest, found := strings.CutPrefix(topic, TopicPiControlRunPrefix)
	if !found {
		return "", "", false
	}
	module, command, found = strings.Cut(rest, "/")
	if !found || module == "" || command == "" || strings.Contains(command, "/") {
		return "", "", false
	}
	return module, command, true
}

// PiControl parameter types.
const (
	PiControlParamString  = "string"
	PiControlParamInteger = "integer"
	PiControlParamBoolean = "boolean"
)

// PiControlCatalogue is the retained payload on TopicPiControlCommands. It
// never contains a command line, user or environment: only what a frontend
// needs to show a button and a form.
type PiControlCatalogue struct {
	Contract int               `json:"contract"`
	Modules  []PiControlModule `json:"modules"`
	TS       time.Time         `json:"ts"`
}

// PiControlModule is one module (one JSON file) of the catalogue.
type PiControlModule struct {
	ID          string             `json:"id"`
	Name        string             `json:"name"`
	Description string             `json:"description,omitempty"`
	Icon        string             `json:"icon,omitempty"`
	Commands    []PiControlCommand `json:"commands"`
}

// PiControlCommand is one command of the catalogue.
type PiControlCommand struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Icon        string `json:"icon,omitempty"`
	// Confirm asks frontends to ask the user before they send the request.
	Confirm bool `json:"confirm"`
	// Topic is the relative request topic, picontrol/run/{module}/{command}.
	Topic      string               `json:"topic"`
	Parameters []PiControlParameter `json:"parameters"`
	// RequireSignature: only requests signed by a trusted key run it
	// (user properties sig-key, sig-time, sig-nonce, sig; docs/security.md).
	RequireSignature bool `json:"require_signature,omitempty"`
}

// PiControlParameter describes one typed parameter a request may carry.
type PiControlParameter struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // PiControlParam*
	Description string `json:"description,omitempty"`
	Required    bool   `json:"required"`
	// Default is the value used when the request omits the parameter.
	Default any `json:"default,omitempty"`
	// Pattern is the RE2 regular expression a string must match as a whole.
	Pattern   string   `json:"pattern,omitempty"`
	Enum      []string `json:"enum,omitempty"`
	MaxLength int      `json:"max_length,omitempty"`
	Min       *int64   `json:"min,omitempty"`
	Max       *int64   `json:"max,omitempty"`
}

// Output streams named in PiControlReply.Stream.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// PiControlReply is every payload of a PiControl exchange: accepted and
// running (one chunk of output) for commands that outlast the reply grace
// period, and the final done, failed or rejected. The final
// payload is also retained on the command's result topic. Fields that do not
// apply to a status are omitted.
type PiControlReply struct {
	Response
	Module  string `json:"module,omitempty"`
	Command string `json:"command,omitempty"`
	// Seq numbers the messages of one exchange from 0 upwards, so a client
	// can order chunks. A command that ends within the reply grace period
	// gets only its final reply, seq 0; a longer one gets accepted (seq 0),
	// running chunks, then the final reply.
	Seq int `json:"seq"`
	// Parameter names the offending parameter of a rejected request.
	Parameter string `json:"parameter,omitempty"`

	// Stream and Data carry one chunk of output (status running). Bytes that
	// are not valid UTF-8 are replaced by U+FFFD.
	Stream string `json:"stream,omitempty"`
	Data   string `json:"data,omitempty"`

	// Final results of a run (done, and failed after the command started).
	ExitCode   *int   `json:"exit_code,omitempty"`
	Signal     string `json:"signal,omitempty"`
	DurationMS *int64 `json:"duration_ms,omitempty"`
	Stdout     string `json:"stdout,omitempty"`
	Stderr     string `json:"stderr,omitempty"`
	// Truncated is true when Stdout or Stderr holds only the first part of
	// the output (every chunk was still streamed).
	Truncated bool `json:"truncated,omitempty"`
}
