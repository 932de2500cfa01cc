package pistats

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// Config is the JSON of the main config section "stats" (or of the one
// optional module file apps/*/pistats/modules/*.json). Every field is
// optional.
type Config struct {
	// Enabled turns the module off when false (default true).
	Enabled *bool `json:"enabled,omitempty"`
	// Interval is a Go duration string, "5s" by default, 1s..1h.
	Interval durationText `json:"interval,omitempty"`
	// Metrics lists the metric names to read (contract.StatsMetrics); absent
	// means all.
	Metrics []string `json:"metrics,omitempty"`
	// Mounts lists absolute mount points for disk usage; absent means "/"
	// plus "/boot/firmware" (or "/boot") when mounted.
	Mounts []string `json:"mounts,omitempty"`
	// Interfaces lists network interfaces; absent means all but loopback.
	Interfaces []string `json:"interfaces,omitempty"`
	// FlatTopics also publishes stats/<name> topics with plain numbers.
	FlatTopics bool `json:"flat_topics,omitempty"`
	// ThrottleSource is "auto" (default: firmware get_throttled, else the
	// rpi_volt hwmon alarm), "firmware" or "hwmon".
	ThrottleSource string `json:"throttle_source,omitempty"`
}

// durationText is a duration kept as written; a JSON number is refused
// with the same message as every other duration of the config.
type durationText string

// UnmarshalJSON implements json.Unmarshaler.
func (d *durationText) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) == 0 || b[0] != '"' || json.Unmarshal(b, &s) != nil {
		return modules.DurationTypeError(b)
	}
	*d = durationText(s)
	return nil
}

// Defaults.
const (
	DefaultInterval = 5 * time.Second
	MinInterval     = time.Second
	MaxInterval     = time.Hour
)

// settings is a validated Config.
type settings struct {
	enabled    bool
	interval   time.Duration
	metrics    []string // nil: all
	mounts     []string // nil: default
	interfaces []string // nil: all but loopback
	flat       bool
	throttle   string
}

func defaultSettings() settings {
	return settings{enabled: true, interval: DefaultInterval, throttle: ThrottleAuto}
}

// parseConfig decodes data strictly and validates it. Problems name file and
// the field, with prefix prepended ("stats" for the main config section).
// The interval must be at least minInterval (MinInterval but in tests).
func parseConfig(data []byte, file, prefix string, minInterval time.Duration) (settings, []modules.Problem) {
	var c Config
	if err := modules.DecodeStrict(data, &c); err != nil {
		return settings{}, modules.ProblemsFor(file, prefix, err)
	}
	return c.validate(file, prefix, minInterval)
}

func (c Config) validate(file, prefix string, minInterval time.Duration) (settings, []modules.Problem) {
	set := defaultSettings()
	var probs []modules.Problem
	bad := func(field string, err error) {
		probs = append(probs, modules.ProblemFor(file, prefix, &modules.FieldError{Field: field, Err: err}))
	}
	if c.Enabled != nil {
		set.enabled = *c.Enabled
	}
	if c.Interval != "" {
		d, err := modules.ParseDuration(string(c.Interval))
		switch {
		case err != nil:
			bad("interval", err)
		case d < minInterval || d > MaxInterval:
			bad("interval", fmt.Errorf("%s is out of range %s..%s", d, minInterval, MaxInterval))
		default:
			set.interval = d
		}
	}
	if c.Metrics != nil {
		if len(c.Metrics) == 0 {
			bad("metrics", errors.New("empty list; leave the field out to read every metric, or set enabled to false"))
		}
		seen := map[string]bool{}
		for i, m := range c.Metrics {
			f := fmt.Sprintf("metrics[%d]", i)
			switch {
			case !slices.Contains(contract.StatsMetrics, m):
				bad(f, fmt.Errorf("unknown metric %q (known: %s)", m, strings.Join(contract.StatsMetrics, ", ")))
			case seen[m]:
				bad(f, fmt.Errorf("metric %q is listed twice", m))
			}
			seen[m] = true
		}
		set.metrics = c.Metrics
	}
	if c.Mounts != nil {
		seen := map[string]bool{}
		set.mounts = []string{}
		for i, m := range c.Mounts {
			f := fmt.Sprintf("mounts[%d]", i)
			cl := filepath.Clean(m)
			switch {
			case m == "" || !filepath.IsAbs(m):
				bad(f, fmt.Errorf("mount point %q is not an absolute path", m))
			case strings.ContainsRune(m, 0):
				bad(f, errors.New("mount point contains NUL"))
			case seen[cl]:
				bad(f, fmt.Errorf("mount point %q is listed twice", m))
			default:
				set.mounts = append(set.mounts, cl)
			}
			seen[cl] = true
		}
	}
	if c.Interfaces != nil {
		seen := map[string]bool{}
		set.interfaces = []string{}
		for i, n := range c.Interfaces {
			f := fmt.Sprintf("interfaces[%d]", i)
			switch {
			case n == "" || len(n) > 15 || n == "." || n == ".." || strings.ContainsAny(n, "/: \t\n\x00"):
				bad(f, fmt.Errorf("%q is not a valid interface name", n))
			case seen[n]:
				bad(f, fmt.Errorf("interface %q is listed twice", n))
			default:
				set.interfaces = append(set.interfaces, n)
			}
			seen[n] = true
		}
	}
	set.flat = c.FlatTopics
	switch c.ThrottleSource {
	case "":
	case ThrottleAuto, ThrottleFirmware, ThrottleHwmon:
		set.throttle = c.ThrottleSource
	default:
		bad("throttle_source", fmt.Errorf("%q is not one of auto, firmware, hwmon", c.ThrottleSource))
	}
	if len(probs) > 0 {
		return settings{}, probs
	}
	return set, nil
}
