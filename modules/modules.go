// Package modules defines what a picockpit-client module is and the Bus it
// talks to. Modules never see MQTT: they publish relative to the device root,
// subscribe to relative filters and reply to requests through a Bus, so they
// can be tested with the in-memory bus in package bustest.
//
// Lifecycle of a module, like caddy's: the Kind decodes its JSON strictly
// (unknown fields are errors) and validates it (users resolved, paths
// absolute), then the agent calls Start once and Close once.
package modules

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules/signature"
)

// Request is one message received on a topic a module subscribed to.
type Request struct {
	// Topic is relative to the device root, e.g. "picontrol/run/system/reboot".
	Topic   string
	Payload []byte
	// ResponseTopic is the full MQTT 5 response topic, already checked to lie
	// below {prefix}/{device}/reply/; empty when the client gave none.
	ResponseTopic   string
	CorrelationData []byte
	// Requester names the client (user property "requester"), or "".
	Requester string
	// Received is when the agent received the message.
	Received time.Time
	// Expires is when the message's MQTT 5 Message Expiry passes; zero if none.
	Expires time.Time
	// UserProperties are the message's MQTT 5 user properties, in order
	// (signed requests carry their signature there: package signature).
	UserProperties []signature.Property
}

// Expired reports whether the request's Message Expiry has passed at now.
func (r *Request) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// Handler handles one request. It runs on the subscription's own worker
// goroutine, one request after another; a handler that starts long work must
// hand it to goroutines of its own so the queue keeps moving.
type Handler func(ctx context.Context, req *Request)

// PublishOptions say how a message is published.
type PublishOptions struct {
	Retain bool
	QoS    byte
	// Expiry sets the MQTT 5 Message Expiry Interval; zero means none.
	Expiry time.Duration
	// ContentType defaults to application/json when empty and Raw is false.
	ContentType string
	// Raw leaves the content type unset (plain text or numbers).
	Raw bool
	// Sticky marks a retained message that stays valid across a reload even
	// when the new module instance does not publish it again (the last result
	// of a command). Other retained topics of a module that it does not
	// publish again soon after a reload are cleared as stale.
	Sticky bool
}

// Bus is how a module talks to the broker. All methods are safe for
// concurrent use. Topics and filters are relative to the device root.
type Bus interface {
	// Publish publishes payload on the relative topic. Retained messages are
	// remembered and published again, latest value only, whenever the
	// connection comes back: a retained publish never fails for being offline.
	// A non-retained publish while offline returns an error.
	Publish(ctx context.Context, topic string, payload []byte, opts PublishOptions) error
	// Subscribe routes messages matching the relative filter to h, through a
	// bounded queue of queueLen requests (0 means the default). When the queue
	// is full the agent answers "busy" itself. Subscriptions end at Close.
	Subscribe(filter string, queueLen int, h Handler) error
	// Reply publishes payload (JSON) on req's response topic with its
	// correlation data, QoS 1, not retained. It does nothing when the request
	// has no response topic.
	Reply(ctx context.Context, req *Request, payload []byte) error
	// Event logs ev and publishes it on the events topic (best effort).
	Event(ev contract.Event)
	// Connection reports whether the broker connection is up now, and a
	// channel that is closed at the next change (call again for the next).
	Connection() (up bool, changed <-chan struct{})
}

// Module is one running module instance.
type Module interface {
	// Start subscribes and starts the module's goroutines; it is called once
	// and must not block. ctx is cancelled when the module is closed.
	// Subscribe before publishing what announces the subscription (a
	// catalogue): a client that sees it may send a request at once, and a
	// request nobody handles yet is answered "rejected".
	Start(ctx context.Context, bus Bus) error
	// Close stops the module and waits for its goroutines; it is called once,
	// after Start, and releases every resource (lines, processes).
	Close() error
}

// Env is what a Kind gets to build its module.
type Env struct {
	Log *slog.Logger
	// HostRoot is the directory /proc, /sys, /etc and the device tree are read
	// under ("/" on a real machine).
	HostRoot string
	// StateDir is the agent's state directory.
	StateDir  string
	ConfigDir string
	Device    contract.Device
	// Root is the device's topic root (for integrations that must publish
	// full topics in their payloads, such as Home Assistant discovery).
	Root contract.Root
	// Signatures verifies signed requests with the keys of
	// <config-dir>/trusted-keys.d; nil when none are trusted.
	Signatures *signature.Verifier
}

// File is one module file as read from disk.
type File struct {
	// Path is the file's path, used in problem reports.
	Path string
	Data []byte
}

// Problem is a configuration error: what was wrong, and where.
type Problem struct {
	File  string // path of the file
	Field string // JSON path of the offending field, e.g. "commands[2].user"; may be empty
	Err   error
}

func (p Problem) Error() string {
	switch {
	case p.File != "" && p.Field != "":
		return fmt.Sprintf("%s: %s: %v", p.File, p.Field, p.Err)
	case p.File != "":
		return fmt.Sprintf("%s: %v", p.File, p.Err)
	case p.Field != "":
		return fmt.Sprintf("%s: %v", p.Field, p.Err)
	}
	return p.Err.Error()
}

func (p Problem) Unwrap() error { return p.Err }

// Kind is one kind of module: the app directory apps/com.picockpit/<Name>/
// and the section <Name> of the main config.
type Kind struct {
	// Name is the app name and, unless Section is set, the main config
	// section key ("picontrol").
	Name string
	// Section is the main config section key when it differs from Name.
	Section string
	// Load decodes the main config section (nil when absent) and the module
	// files strictly and builds the module. A bad file is reported as a
	// Problem and skipped; the rest still load. Load returns a nil Module when
	// there is nothing to run. Load must not start anything.
	Load func(env Env, section []byte, sectionFile string, files []File) (Module, []Problem)
}

// SectionKey is the main config section this kind reads.
func (k Kind) SectionKey() string {
	if k.Section != "" {
		return k.Section
	}
	return k.Name
}

// Describer is implemented by modules that can say what they loaded, so
// that `picockpit-client check` can list it and a file in the wrong place
// shows by its absence.
type Describer interface {
	Describe() []Loaded
}

// Loaded is what one source (a module file or the main config's section)
// gave a module.
type Loaded struct {
	// File is the path of the module file or of the main config; empty for
	// built-in defaults.
	File string
	// Items names what the file defined, one line each ("command reboot
	// (Reboot), confirm").
	Items []string
}

// Discovery is an optional Bus capability for an integration that must
// publish one discovery tree outside the device root (Home Assistant MQTT
// discovery under "homeassistant/"). The agent's Bus implements it; a module
// asserts bus.(modules.Discovery). Only one tree can be claimed per agent,
// it may not overlap the device roots, and nothing else of the broker is
// reachable through it.
type Discovery interface {
	// ClaimDiscoveryTree binds the module to the tree prefix ("homeassistant").
	ClaimDiscoveryTree(prefix string) error
	// PublishDiscovery publishes payload retained (QoS 1) on {tree}/{rel}. Like
	// a retained Publish it is remembered and published again after every
	// reconnect; an empty payload deletes the broker's copy.
	PublishDiscovery(rel string, payload []byte) error
	// PublishedDiscovery returns what the agent last published on {tree}/{rel},
	// or nil.
	PublishedDiscovery(rel string) []byte
	// SubscribeDiscovery calls h with every message on {tree}/{rel}, including
	// a retained one when the subscription is made. h runs on the receive path
	// and must not block.
	SubscribeDiscovery(rel string, h func(payload []byte)) error
	// Retained returns the agent's own latest retained payload on a topic
	// relative to the device root (nil if none), and a channel that is closed
	// at the next change of any of the agent's retained topics.
	Retained(topic string) ([]byte, <-chan struct{})
}
