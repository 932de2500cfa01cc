package pistats

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// systemInfo holds the static facts, read once.
type systemInfo struct {
	model, serial, os, kernel          string
	modelWhy, serialWhy, osWhy, kerWhy string
}

// readSystemInfo reads model and serial from the device tree (falling back to
// /proc/device-tree, DMI and /proc/cpuinfo), the OS from os-release and the
// kernel release, all under root.
func readSystemInfo(root string) systemInfo {
	var si systemInfo
	at := func(rel string) string { return filepath.Join(root, rel) }

	si.model, si.modelWhy = firstOf(
		at("sys/firmware/devicetree/base/model"),
		at("proc/device-tree/model"),
		at("sys/class/dmi/id/product_name"),
	)
	if si.model == "" {
		si.modelWhy = "no device tree model and no DMI product name"
	}
	si.serial, _ = firstOf(
		at("sys/firmware/devicetree/base/serial-number"),
		at("proc/device-tree/serial-number"),
	)
	if si.serial == "" {
		si.serial = cpuinfoSerial(at("proc/cpuinfo"))
	}
	if si.serial == "" {
		si.serialWhy = "no device tree serial-number and no Serial in /proc/cpuinfo"
	}
	si.os = osRelease(at("etc/os-release"))
	if si.os == "" {
		si.os = osRelease(at("usr/lib/os-release"))
	}
	if si.os == "" {
		si.osWhy = "no PRETTY_NAME in /etc/os-release or /usr/lib/os-release"
	}
	k, err := readSmall(at("proc/sys/kernel/osrelease"))
	if err != nil || k == "" {
		si.kerWhy = "/proc/sys/kernel/osrelease unreadable"
	}
	si.kernel = k
	return si
}

func firstOf(paths ...string) (string, string) {
	for _, p := range paths {
		if v, err := readSmall(p); err == nil && v != "" {
			return v, ""
		}
	}
	return "", "not found"
}

// cpuinfoSerial returns the "Serial" value of /proc/cpuinfo (older Pi
// kernels), or "". An all-zero serial is no serial.
func cpuinfoSerial(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "Serial" {
			v = strings.TrimSpace(v)
			if strings.Trim(v, "0") == "" {
				return ""
			}
			return v
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

func (s *Sampler) sampleSystem() {
	si := &s.sys
	out := &s.store.system
	*out = contract.StatsSystem{}
	set := func(dst **string, v *string, key, why string) {
		if *v != "" {
			*dst = v
		} else {
			s.unav[key] = why
		}
	}
	set(&out.Model, &si.model, "system.model", si.modelWhy)
	set(&out.Serial, &si.serial, "system.serial", si.serialWhy)
	set(&out.OS, &si.os, "system.os", si.osWhy)
	set(&out.Kernel, &si.kernel, "system.kernel", si.kerWhy)
	s.out.System = out
}
