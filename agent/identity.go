package agent

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// ReadDevice reads the machine's identity under root: serial and model from
// the device tree (then /proc/cpuinfo), hostname, OS and kernel. The device
// id is override when set, else the serial in lower case, else
// /etc/machine-id. It fails only when no id can be found.
func ReadDevice(root, override string) (contract.Device, error) {
	d := contract.Device{Arch: runtime.GOARCH}
	d.Serial = readSerial(root)
	d.Model = readDTString(root, "model")
	if d.Model == "" {
		d.Model = cpuinfoField(root, "Model")
	}
	d.Hostname = readTrimmed(filepath.Join(root, "proc/sys/kernel/hostname"))
	d.Kernel = readTrimmed(filepath.Join(root, "proc/sys/kernel/osrelease"))
	d.OS = osRelease(root)
	switch {
	case override != "":
		d.ID = override
	case d.Serial != "":
		d.ID = strings.ToLower(d.Serial)
	default:
		d.ID = readTrimmed(filepath.Join(root, "etc/machine-id"))
	}
	if d.ID == "" {
		return d, errors.New("no device id: no serial number in the device tree or /proc/cpuinfo, no /etc/machine-id; set device.id")
	}
	if err := contract.ValidateDeviceID(d.ID); err != nil {
		return d, err
	}
	return d, nil
}

func readSerial(root string) string {
	if s := readDTString(root, "serial-number"); s != "" {
		return s
	}
	return cpuinfoField(root, "Serial")
}

// readDTString reads a device-tree string property (NUL terminated).
func readDTString(root, prop string) string {
	for _, dir := range []string{"sys/firmware/devicetree/base", "proc/device-tree"} {
		b, err := os.ReadFile(filepath.Join(root, dir, prop))
		if err == nil {
			return strings.TrimSpace(string(bytes.TrimRight(b, "\x00")))
		}
	}
	return ""
}

func cpuinfoField(root, name string) string {
	f, err := os.Open(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func osRelease(root string) string {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				return strings.Trim(v, `"'`)
			}
		}
	}
	return ""
}
