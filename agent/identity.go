package agent

import (
	"errors"
	"runtime"
	"strings"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/agent/hostinfo"
)

// ReadDevice reads the machine's identity under root (see package
// hostinfo). The device id is override when set, else the serial in lower
// case, else /etc/machine-id. It fails only when no id can be found.
func ReadDevice(root, override string) (contract.Device, error) {
	in := hostinfo.Read(root)
	d := contract.Device{Arch: runtime.GOARCH, Serial: in.Serial, Model: in.Model, Hostname: in.Hostname, OS: in.OS, Kernel: in.Kernel}
	switch {
	case override != "":
		d.ID = override
	case d.Serial != "":
		d.ID = strings.ToLower(d.Serial)
	default:
		d.ID = hostinfo.MachineID(root)
	}
	if d.ID == "" {
		return d, errors.New("no device id: no serial number in the device tree or /proc/cpuinfo, no /etc/machine-id; set device.id")
	}
	if err := contract.ValidateDeviceID(d.ID); err != nil {
		return d, err
	}
	return d, nil
}
