package gpio

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// MaxHardwarePWMFrequency caps hardware PWM (a /sys/class/pwm channel).
const MaxHardwarePWMFrequency = 1e6

// sysfsPWM drives a channel of /sys/class/pwm/pwmchipN. The pin must be
// muxed to its PWM function (dtoverlay=pwm or pwm-2chan); no GPIO line is
// requested for it.
type sysfsPWM struct {
	chip     string // <root>/sys/class/pwm/pwmchipN
	channel  int
	exported bool // we exported the channel (and unexport it on Close)
}

func newSysfsPWM(pwmRoot string, hw HardwarePWM) *sysfsPWM {
	return &sysfsPWM{chip: filepath.Join(pwmRoot, "pwmchip"+strconv.Itoa(hw.Chip)), channel: hw.Channel}
}

func (s *sysfsPWM) dir() string { return filepath.Join(s.chip, "pwm"+strconv.Itoa(s.channel)) }

func (s *sysfsPWM) write(name, value string) error {
	p := filepath.Join(s.dir(), name)
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("hardware pwm: write %s to %s: %w", value, p, err)
	}
	return nil
}

// open exports the channel if needed and waits for its directory.
func (s *sysfsPWM) open() error {
	if _, err := os.Stat(s.dir()); err == nil {
		return nil
	}
	exp := filepath.Join(s.chip, "export")
	if err := os.WriteFile(exp, []byte(strconv.Itoa(s.channel)), 0); err != nil {
		return fmt.Errorf("hardware pwm: export channel %d on %s: %w", s.channel, s.chip, err)
	}
	s.exported = true
	// udev may still be adjusting the new directory.
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(filepath.Join(s.dir(), "enable")); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("hardware pwm: %s did not appear after export", s.dir())
}

func (s *sysfsPWM) period() (int64, error) {
	b, err := os.ReadFile(filepath.Join(s.dir(), "period"))
	if err != nil {
		return 0, fmt.Errorf("hardware pwm: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// setNs programs period and duty in ns and enables the channel. The duty is
// zeroed first because the kernel refuses a period shorter than the duty.
func (s *sysfsPWM) setNs(period, duty int64) error {
	if err := s.open(); err != nil {
		return err
	}
	if err := s.write("duty_cycle", "0"); err != nil {
		cur, perr := s.period()
		if perr != nil || cur != 0 {
			return err
		}
		// A fresh channel has period 0: duty cannot be written before it.
	}
	if err := s.write("period", strconv.FormatInt(period, 10)); err != nil {
		return err
	}
	if err := s.write("duty_cycle", strconv.FormatInt(duty, 10)); err != nil {
		return err
	}
	return s.write("enable", "1")
}

func (s *sysfsPWM) Set(freq, duty float64) error {
	if math.IsNaN(freq) || freq < MinPWMFrequency || freq > MaxHardwarePWMFrequency {
		return fmt.Errorf("pwm frequency %v Hz is outside %v..%v", freq, MinPWMFrequency, MaxHardwarePWMFrequency)
	}
	if math.IsNaN(duty) || duty < 0 || duty > 1 {
		return fmt.Errorf("pwm duty %v is outside 0..1", duty)
	}
	period := int64(math.Round(1e9 / freq))
	return s.setNs(period, int64(math.Round(duty*float64(period))))
}

// Stop holds the output at level: duty 0 or 100 % with the channel enabled
// (a disabled channel's level is undefined on some controllers).
func (s *sysfsPWM) Stop(level int) error {
	if err := s.open(); err != nil {
		return err
	}
	period, err := s.period()
	if err != nil {
		return err
	}
	if period <= 0 {
		period = int64(1e9 / DefaultPWMFrequency)
	}
	duty := int64(0)
	if level == 1 {
		duty = period
	}
	return s.setNs(period, duty)
}

func (s *sysfsPWM) Close() error {
	if _, err := os.Stat(s.dir()); err != nil {
		return nil
	}
	err := s.write("enable", "0")
	if s.exported {
		p := filepath.Join(s.chip, "unexport")
		if uerr := os.WriteFile(p, []byte(strconv.Itoa(s.channel)), 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("hardware pwm: unexport: %w", uerr))
		}
		s.exported = false
	}
	return err
}
