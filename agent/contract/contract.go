// Package contract is the one place where the open MQTT topic contract of
// picockpit-client lives: topic names relative to a device root, and the
// payload types published on them. docs/contract.md is its normative text and
// docs/schemas/*.json the JSON Schemas of the payloads.
//
// Modules and the agent import this package; it imports nothing of theirs.
package contract

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version is the contract version announced in the info payload.
const Version = 1

// Topics relative to the device root {prefix}/{device}/.
const (
	TopicStatus  = "status"
	TopicInfo    = "info"
	TopicEvents  = "events"
	ReplyPrefix  = "reply/"
	StatusOnline = "online"
	// StatusOffline is both the Will payload and what a clean stop publishes.
	StatusOffline = "offline"
)

// ContentTypeJSON is set on every JSON response.
const ContentTypeJSON = "application/json"

// UserPropertyRequester is the MQTT 5 user property a client may set on a
// request to name itself in the audit trail (events). Absent, the agent records
// "unknown".
const UserPropertyRequester = "requester"

// Root is the topic root of one device: {Prefix}/{Device}/.
type Root struct {
	Prefix string
	Device string
}

// Topic returns the full topic for a topic relative to the root.
func (r Root) Topic(rel string) string { return r.Prefix + "/" + r.Device + "/" + rel }

// Base returns the root itself without a trailing slash.
func (r Root) Base() string { return r.Prefix + "/" + r.Device }

// Rel returns the topic relative to the root, and false if full is not below it.
func (r Root) Rel(full string) (string, bool) {
	p := r.Prefix + "/" + r.Device + "/"
	if !strings.HasPrefix(full, p) {
		return "", false
	}
	return full[len(p):], true
}

// IsReplyTopic reports whether full is a topic where the agent may publish a
// response: {prefix}/{device}/reply/ followed by at least one character and no
// wildcard. The agent is never a publishing proxy for other trees.
func (r Root) IsReplyTopic(full string) bool {
	rel, ok := r.Rel(full)
	if !ok || !strings.HasPrefix(rel, ReplyPrefix) || len(rel) == len(ReplyPrefix) {
		return false
	}
	return !strings.ContainsAny(full, "+#\x00")
}

// ValidateDeviceID checks that id is usable as exactly one topic level.
func ValidateDeviceID(id string) error {
	switch {
	case id == "":
		return errors.New("device id is empty")
	case strings.ContainsAny(id, "+#/\x00"):
		return fmt.Errorf("device id %q contains one of + # / or NUL", id)
	case strings.TrimSpace(id) != id:
		return fmt.Errorf("device id %q has leading or trailing white space", id)
	}
	return nil
}

// ValidatePrefix checks a topic prefix: one or more levels separated by "/",
// none empty, no wildcards, no NUL, not starting with "$".
func ValidatePrefix(p string) error {
	if p == "" {
		return errors.New("topic prefix is empty")
	}
	if strings.HasPrefix(p, "$") {
		return fmt.Errorf("topic prefix %q starts with $ (reserved for broker topics)", p)
	}
	if strings.ContainsAny(p, "+#\x00") {
		return fmt.Errorf("topic prefix %q contains a wildcard or NUL", p)
	}
	for _, lvl := range strings.Split(p, "/") {
		if lvl == "" {
			return fmt.Errorf("topic prefix %q has an empty level", p)
		}
	}
	return nil
}

// Device describes the machine the agent runs on.
type Device struct {
	ID       string `json:"id"`
	Serial   string `json:"serial,omitempty"`
	Model    string `json:"model,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	OS       string `json:"os,omitempty"`
	Kernel   string `json:"kernel,omitempty"`
	Arch     string `json:"arch"`
}

// Info is the retained payload on TopicInfo.
type Info struct {
	Contract  int       `json:"contract"`
	Agent     string    `json:"agent"`
	Device    Device    `json:"device"`
	Apps      []string  `json:"apps"`
	StartedAt time.Time `json:"started_at"`
	// ReplyPrefix is the full topic prefix under which the agent accepts
	// Response Topics, as the agent itself names it ("{prefix}/{device}/reply/").
	// Behind a bridge that remaps topics, frontends see the agent's topics
	// under another prefix but must still set Response Topics that start
	// with this one (see docs/bridging.md).
	ReplyPrefix string `json:"reply_prefix"`
}

// Event kinds published on TopicEvents.
const (
	EventStarted  = "started"
	EventReloaded = "reloaded"
	EventRejected = "rejected"
	EventBusy     = "busy"
	EventError    = "error"
	EventCommand  = "command"
	EventModule   = "module"
)

// Event is one entry of the JSON event log on TopicEvents (not retained).
type Event struct {
	TS      time.Time `json:"ts"`
	Kind    string    `json:"kind"`
	Module  string    `json:"module,omitempty"`
	Message string    `json:"message"`
	// Topic is the relative topic of the request the event is about, if any.
	Topic     string         `json:"topic,omitempty"`
	Requester string         `json:"requester,omitempty"`
	Fields    map[string]any `json:"fields,omitempty"`
}

// Response statuses shared by all request/response exchanges.
const (
	StatusAccepted = "accepted"
	StatusRunning  = "running"
	StatusDone     = "done"
	StatusFailed   = "failed"
	StatusRejected = "rejected"
	StatusBusy     = "busy"
	StatusOK       = "ok"
)

// Response is the envelope every response payload carries. Module specific
// responses embed it so that every payload is complete in itself.
type Response struct {
	Status string `json:"status"`
	// Topic is the relative request topic this answers.
	Topic string    `json:"topic,omitempty"`
	Error string    `json:"error,omitempty"`
	TS    time.Time `json:"ts"`
}

// IsFinal reports whether status ends an exchange.
func IsFinal(status string) bool {
	switch status {
	case StatusDone, StatusFailed, StatusRejected, StatusBusy, StatusOK:
		return true
	}
	return false
}
