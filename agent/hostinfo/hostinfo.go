// Package hostinfo reads the static facts about a machine under a root
// directory ("/" on a real machine, a fixture tree in tests): model and
// serial number (device tree, then DMI and /proc/cpuinfo), OS, kernel and
// host name. The agent's identity and PiStats both use it, so they always
// agree. It reads a handful of small files; call it once, not per sample.
package hostinfo

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Info is what Read found. A field that could not be read is "" and its
// *Why says why, for payloads that report unavailable values.
type Info struct {
	Model, Serial, OS, Kernel, Hostname   string
	ModelWhy, SerialWhy, OSWhy, KernelWhy string
}

// Read reads the facts under root.
func Read(root string) Info {
	var in Info
	at := func(rel string) string { return filepath.Join(root, rel) }

	in.Model = firstOf(
		at("sys/firmware/devicetree/base/model"),
		at("proc/device-tree/model"),
		at("sys/class/dmi/id/product_name"),
	)
	if in.Model == "" {
		in.Model = cpuinfoField(at("proc/cpuinfo"), "Model") // older Pi kernels
	}
	if in.Model == "" {
		in.ModelWhy = "no device tree model and no DMI product name"
	}
	in.Serial = firstOf(
		at("sys/firmware/devicetree/base/serial-number"),
		at("proc/device-tree/serial-number"),
	)
	if in.Serial == "" {
		in.Serial = cpuinfoField(at("proc/cpuinfo"), "Serial")
		if strings.Trim(in.Serial, "0") == "" {
			in.Serial = "" // an all-zero serial is no serial
		}
	}
	if in.Serial == "" {
		in.SerialWhy = "no device tree serial-number and no Serial in /proc/cpuinfo"
	}
	in.OS = osRelease(at("etc/os-release"))
	if in.OS == "" {
		in.OS = osRelease(at("usr/lib/os-release"))
	}
	if in.OS == "" {
		in.OSWhy = "no PRETTY_NAME in /etc/os-release or /usr/lib/os-release"
	}
	in.Kernel = firstOf(at("proc/sys/kernel/osrelease"))
	if in.Kernel == "" {
		in.KernelWhy = "/proc/sys/kernel/osrelease unreadable"
	}
	in.Hostname = firstOf(at("proc/sys/kernel/hostname"))
	return in
}

// MachineID returns /etc/machine-id under root, or "".
func MachineID(root string) string { return firstOf(filepath.Join(root, "etc/machine-id")) }

// firstOf returns the trimmed content of the first non-empty file, without
// the NUL that terminates device-tree strings.
func firstOf(paths ...string) string {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if v := strings.TrimSpace(string(bytes.TrimRight(b, "\x00"))); v != "" {
			return v
		}
	}
	return ""
}

// cpuinfoField returns the value of the first "name : value" line of
// /proc/cpuinfo, or "".
func cpuinfoField(path, name string) string {
	f, err := os.Open(path)
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

// osRelease returns PRETTY_NAME from an os-release file, unquoted.
func osRelease(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		v, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("PRETTY_NAME="))
		if !ok {
			continue
		}
		s := string(v)
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
		return strings.Trim(s, `'"`)
	}
	return ""
}
