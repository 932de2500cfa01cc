package homeassistant

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// SectionKey is the main config section of this kind.
const SectionKey = "homeassistant"

// DefaultDiscoveryPrefix is Home Assistant's default discovery prefix.
const DefaultDiscoveryPrefix = "homeassistant"

// DefaultUpdateCommand is the PiControl command the update entity installs
// with (module/command), as shipped in apps/com.picockpit/picontrol/modules/system.json.
const DefaultUpdateCommand = "system/update-picockpit-client"

// Config is the JSON of the main config section "homeassistant". Every field
// is optional; the integration is off unless enabled is true.
type Config struct {
	Enabled *bool `json:"enabled,omitempty"`
	// DiscoveryPrefix is Home Assistant's discovery prefix ("homeassistant").
	DiscoveryPrefix string `json:"discovery_prefix,omitempty"`
	// Name is the device name shown in Home Assistant (default: the host name).
	Name string `json:"name,omitempty"`
	// ConfigurationURL is shown as the device's "Visit" link (http or https).
	ConfigurationURL string `json:"configuration_url,omitempty"`
	// ConfirmButtons lists PiControl commands ("module/command") marked
	// confirm that are still offered as buttons. Home Assistant buttons do
	// not ask before they press, so confirm commands are left out unless
	// listed here.
	ConfirmButtons []string `json:"confirm_buttons,omitempty"`
	// UpdateCommand is the PiControl command ("module/command") the update
	// entity's Install runs; "" means DefaultUpdateCommand, "-" none.
	UpdateCommand string `json:"update_command,omitempty"`
}

// Settings is a validated Config.
type Settings struct {
	Enabled          bool
	Prefix           string
	Name             string
	ConfigurationURL string
	ConfirmButtons   map[string]bool
	UpdateCommand    string
}

func parseConfig(data []byte, file string) (Settings, []modules.Problem) {
	set := Settings{Prefix: DefaultDiscoveryPrefix, UpdateCommand: DefaultUpdateCommand, ConfirmButtons: map[string]bool{}}
	if data == nil {
		return set, nil
	}
	var c Config
	if err := modules.DecodeStrict(data, &c); err != nil {
		return set, []modules.Problem{modules.ProblemFor(file, SectionKey, err)}
	}
	var probs []modules.Problem
	bad := func(field string, err error) {
		probs = append(probs, modules.Problem{File: file, Field: SectionKey + "." + field, Err: err})
	}
	if c.Enabled != nil {
		set.Enabled = *c.Enabled
	}
	if c.DiscoveryPrefix != "" {
		if err := contract.ValidatePrefix(c.DiscoveryPrefix); err != nil {
			bad("discovery_prefix", err)
		}
		set.Prefix = c.DiscoveryPrefix
	}
	set.Name = c.Name
	if c.ConfigurationURL != "" {
		u, err := url.Parse(c.ConfigurationURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("configuration_url", fmt.Errorf("%q is not an http or https URL", c.ConfigurationURL))
		}
		set.ConfigurationURL = c.ConfigurationURL
	}
	for i, b := range c.ConfirmButtons {
		if m, cmd, ok := strings.Cut(b, "/"); !ok || m == "" || cmd == "" || strings.Contains(cmd, "/") {
			bad(fmt.Sprintf("confirm_buttons[%d]", i), fmt.Errorf("%q: want module/command", b))
			continue
		}
		set.ConfirmButtons[b] = true
	}
	switch c.UpdateCommand {
	case "":
	case "-":
		set.UpdateCommand = ""
	default:
		if m, cmd, ok := strings.Cut(c.UpdateCommand, "/"); !ok || m == "" || cmd == "" || strings.Contains(cmd, "/") {
			bad("update_command", fmt.Errorf("%q: want module/command, or \"-\" for none", c.UpdateCommand))
		}
		set.UpdateCommand = c.UpdateCommand
	}
	if len(probs) > 0 {
		return set, probs
	}
	return set, nil
}

var errNoFiles = errors.New("the homeassistant integration is configured in the main config section \"homeassistant\", not in module files")
