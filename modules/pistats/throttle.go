package pistats

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// get_throttled bits (Raspberry Pi firmware): 0..3 now, 16..19 the same
// conditions "has occurred" (sticky).
const (
	bitUnderVoltage  = 1 << 0
	bitFreqCapped    = 1 << 1
	bitThrottled     = 1 << 2
	bitSoftTempLimit = 1 << 3
	nowMask          = 0xf
	stickyShift      = 16
)

// firmwareThrottleGlobs are where the raspberrypi-firmware driver's
// get_throttled attribute lives (the platform device name differs by SoC:
// "soc:firmware" on BCM2835..2711, "soc@107c000000:firmware" on BCM2712).
var firmwareThrottleGlobs = []string{
	"sys/devices/platform/soc/soc:firmware/get_throttled",
	"sys/devices/platform/*/*:firmware/get_throttled",
	"sys/bus/platform/drivers/raspberrypi-firmware/*/get_throttled",
}

// throttleStateFile keeps the throttle history of the current boot.
const throttleStateFile = "pistats-throttle.json"

type throttleState struct {
	source string
	path   hostPath
	reason string

	history      uint64 // conditions seen since watchedSince (bits 0..3)
	watchedSince time.Time
	bootID       string
	statePath    string
	rawVal       uint64
	rawStr       string
}

type throttleFile struct {
	BootID       string    `json:"boot_id"`
	History      uint64    `json:"history"`
	WatchedSince time.Time `json:"watched_since"`
}

func (s *Sampler) discoverThrottle() throttleState {
	root := s.cfg.Root
	var ts throttleState
	if src := s.cfg.ThrottleSource; src == ThrottleAuto || src == ThrottleFirmware {
		for _, g := range firmwareThrottleGlobs {
			m, _ := filepath.Glob(filepath.Join(root, g))
			if len(m) > 0 {
				rel, err := filepath.Rel(root, m[0])
				if err == nil {
					ts.source = contract.ThrottleSourceFirmware
					ts.path = newHostPath(root, "/"+rel)
					break
				}
			}
		}
	}
	if src := s.cfg.ThrottleSource; ts.source == "" && (src == ThrottleAuto || src == ThrottleHwmon) {
		names, _ := readDirNames(filepath.Join(root, "sys/class/hwmon"))
		for _, n := range names {
			v, err := readSmall(filepath.Join(root, "sys/class/hwmon", n, "name"))
			if err != nil || v != "rpi_volt" {
				continue
			}
			p := newHostPath(root, "/sys/class/hwmon/"+n+"/in0_lcrit_alarm")
			if _, err := os.Stat(p.Full()); err == nil {
				ts.source = contract.ThrottleSourceHwmon
				ts.path = p
				break
			}
		}
	}
	if ts.source == "" {
		switch s.cfg.ThrottleSource {
		case ThrottleFirmware:
			ts.reason = "no firmware get_throttled file in sysfs (throttle_source is \"firmware\")"
		case ThrottleHwmon:
			ts.reason = "no rpi_volt hwmon device (throttle_source is \"hwmon\")"
		default:
			ts.reason = "no firmware get_throttled file and no rpi_volt hwmon device (not a Raspberry Pi kernel?)"
		}
		return ts
	}

	ts.watchedSince = s.now().UTC()
	if id, err := readSmall(filepath.Join(root, "proc/sys/kernel/random/boot_id")); err == nil && id != "" && s.cfg.StateDir != "" {
		ts.bootID = id
		ts.statePath = filepath.Join(s.cfg.StateDir, throttleStateFile)
		if b, err := os.ReadFile(ts.statePath); err == nil {
			var f throttleFile
			if json.Unmarshal(b, &f) == nil && f.BootID == id && !f.WatchedSince.IsZero() {
				ts.history = f.History & nowMask
				ts.watchedSince = f.WatchedSince
			}
		}
	}
	return ts
}

// saveThrottle writes the history of this boot so that a restarted agent
// still knows what happened before it.
func (s *Sampler) saveThrottle() {
	ts := &s.thr
	if ts.statePath == "" {
		return
	}
	b, _ := json.Marshal(throttleFile{BootID: ts.bootID, History: ts.history, WatchedSince: ts.watchedSince})
	tmp := ts.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		s.log.Warn("cannot save throttle history", "err", err)
		return
	}
	if err := os.Rename(tmp, ts.statePath); err != nil {
		s.log.Warn("cannot save throttle history", "err", err)
	}
}

func (s *Sampler) sampleThrottle() {
	ts := &s.thr
	if ts.reason != "" {
		s.unav[contract.MetricThrottle] = ts.reason
		return
	}
	b, err := s.rd.read(ts.path)
	if err != nil {
		s.unav[contract.MetricThrottle] = s.reason(err, "")
		return
	}
	out := &s.store.throttle
	fl := &s.store.flags
	*out = contract.StatsThrottle{Source: ts.source, WatchedSince: ts.watchedSince}
	var seen uint64
	switch ts.source {
	case contract.ThrottleSourceFirmware:
		v, ok := parseHex(trimSpace(b))
		if !ok || v > 0xffffffff {
			s.unav[contract.MetricThrottle] = ts.path.Rel + ": unexpected format"
			return
		}
		if v != ts.rawVal || ts.rawStr == "" {
			ts.rawVal = v
			ts.rawStr = "0x" + strconv.FormatUint(v, 16)
		}
		out.Raw = &ts.rawStr
		seen = v&nowMask | (v>>stickyShift)&nowMask
		for i := range 4 {
			fl[i] = v&(1<<i) != 0
		}
		out.Now = contract.ThrottleFlags{UnderVoltage: &fl[0], FreqCapped: &fl[1], Throttled: &fl[2], SoftTempLimit: &fl[3]}
	case contract.ThrottleSourceHwmon:
		v, ok := parseUint(trimSpace(b))
		if !ok || v > 1 {
			s.unav[contract.MetricThrottle] = ts.path.Rel + ": unexpected format"
			return
		}
		fl[0] = v == 1
		if fl[0] {
			seen = bitUnderVoltage
		}
		out.Now = contract.ThrottleFlags{UnderVoltage: &fl[0]}
		const why = "the rpi_volt hwmon alarm tells under-voltage only"
		s.unav["throttle.freq_capped"] = why
		s.unav["throttle.throttled"] = why
		s.unav["throttle.soft_temp_limit"] = why
	}
	if seen&^ts.history != 0 {
		ts.history |= seen
		s.saveThrottle()
	}
	for i := range 4 {
		fl[4+i] = ts.history&(1<<i) != 0
	}
	if ts.source == contract.ThrottleSourceFirmware {
		out.SinceBoot = contract.ThrottleFlags{UnderVoltage: &fl[4], FreqCapped: &fl[5], Throttled: &fl[6], SoftTempLimit: &fl[7]}
	} else {
		out.SinceBoot = contract.ThrottleFlags{UnderVoltage: &fl[4]}
	}
	s.out.Throttle = out
}

// --- fan ---

type fanSource struct {
	name   string
	rpm    hostPath
	pwm    hostPath
	hasPWM bool
	reason string
}

// discoverFan finds a hwmon device with a fan1_input, preferring the Pi 5's
// "pwmfan" (cooling_fan).
func discoverFan(root string) fanSource {
	dir := filepath.Join(root, "sys/class/hwmon")
	names, err := readDirNames(dir)
	if err != nil {
		return fanSource{reason: "no fan (no readable /sys/class/hwmon)"}
	}
	var best fanSource
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n, "fan1_input")); err != nil {
			continue
		}
		name, _ := readSmall(filepath.Join(dir, n, "name"))
		if best.rpm.c != nil && name != "pwmfan" {
			continue
		}
		best = fanSource{name: name, rpm: newHostPath(root, "/sys/class/hwmon/"+n+"/fan1_input")}
		if _, err := os.Stat(filepath.Join(dir, n, "pwm1")); err == nil {
			best.pwm, best.hasPWM = newHostPath(root, "/sys/class/hwmon/"+n+"/pwm1"), true
		}
		if name == "pwmfan" {
			break
		}
	}
	if best.rpm.c == nil {
		return fanSource{reason: "no fan (no hwmon device with fan1_input)"}
	}
	return best
}

func (s *Sampler) sampleFan() {
	f := &s.fan
	if f.reason != "" {
		s.unav[contract.MetricFan] = f.reason
		return
	}
	b, err := s.rd.read(f.rpm)
	if err != nil {
		s.unav[contract.MetricFan] = s.reason(err, "")
		return
	}
	rpm, ok := parseUint(trimSpace(b))
	if !ok {
		s.unav[contract.MetricFan] = f.rpm.Rel + ": unexpected format"
		return
	}
	out := &s.store.fan
	*out = contract.StatsFan{RPM: float64(rpm), Hwmon: f.name}
	if !f.hasPWM {
		s.unav["fan.pwm_percent"] = "the fan's hwmon device has no pwm1"
	} else if b, err := s.rd.read(f.pwm); err != nil {
		s.unav["fan.pwm_percent"] = s.reason(err, "")
	} else if v, ok := parseUint(trimSpace(b)); !ok || v > 255 {
		s.unav["fan.pwm_percent"] = f.pwm.Rel + ": unexpected format"
	} else {
		s.store.fanPWM = round(float64(v)/255*100, 1)
		out.PWMPercent = &s.store.fanPWM
	}
	s.out.Fan = out
}
