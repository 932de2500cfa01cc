//go:build linux

package gpio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warthog618/go-gpiocdev"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// These tests run the gpiocdev backend against the kernel's GPIO simulator
// (CONFIG_GPIO_SIM, configured through configfs). They skip, saying why,
// where the simulator is missing or the test is not root.

const gpioSimConfig = "/sys/kernel/config/gpio-sim"

// simChip is one live gpio-sim chip with named lines.
type simChip struct {
	t    *testing.T
	dir  string // configfs device dir
	chip string // "gpiochipN"
	dev  string // "gpio-sim.N"
}

// newSimChip creates a chip of n lines; names maps offset to line name.
func newSimChip(t *testing.T, n int, names map[int]string) *simChip {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("gpio-sim tests need root (configfs and /dev/gpiochip*)")
	}
	if _, err := os.Stat(gpioSimConfig); err != nil {
		t.Skipf("the kernel has no gpio-sim here (%v): load module gpio-sim and mount configfs to run these tests", err)
	}
	dir := filepath.Join(gpioSimConfig, fmt.Sprintf("picockpit-%d-%d", os.Getpid(), time.Now().UnixNano()))
	s := &simChip{t: t, dir: dir}
	must := func(err error) {
		t.Helper()
		if err != nil {
			s.teardown()
			t.Fatal(err)
		}
	}
	write := func(path, v string) {
		t.Helper()
		must(os.WriteFile(path, []byte(v), 0o644))
	}
	must(os.Mkdir(dir, 0o755))
	bank := filepath.Join(dir, "bank0")
	must(os.Mkdir(bank, 0o755))
	write(filepath.Join(bank, "num_lines"), strconv.Itoa(n))
	write(filepath.Join(bank, "label"), "picockpit-test")
	for off, name := range names {
		ld := filepath.Join(bank, "line"+strconv.Itoa(off))
		must(os.Mkdir(ld, 0o755))
		write(filepath.Join(ld, "name"), name)
	}
	write(filepath.Join(dir, "live"), "1")
	t.Cleanup(s.teardown)
	s.chip = readTrim(t, filepath.Join(bank, "chip_name"))
	s.dev = readTrim(t, filepath.Join(dir, "dev_name"))
	return s
}

func (s *simChip) teardown() {
	_ = os.WriteFile(filepath.Join(s.dir, "live"), []byte("0"), 0o644)
	lines, _ := filepath.Glob(filepath.Join(s.dir, "bank0", "line*"))
	for _, l := range lines {
		_ = os.Remove(l)
	}
	_ = os.Remove(filepath.Join(s.dir, "bank0"))
	_ = os.Remove(s.dir)
}

func (s *simChip) attr(off int, name string) string {
	return filepath.Join("/sys/devices/platform", s.dev, s.chip, "sim_gpio"+strconv.Itoa(off), name)
}

// value reads the level a consumer drives on an output.
func (s *simChip) value(off int) int {
	s.t.Helper()
	v, err := strconv.Atoi(readTrim(s.t, s.attr(off, "value")))
	if err != nil {
		s.t.Fatal(err)
	}
	return v
}

// pull drives an input from outside: "pull-up" or "pull-down".
func (s *simChip) pull(off int, dir string) {
	s.t.Helper()
	if err := os.WriteFile(s.attr(off, "pull"), []byte(dir), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func TestGPIOSimBackend(t *testing.T) {
	sim := newSimChip(t, 28, map[int]string{17: "GPIO17", 22: "GPIO22"})
	b := NewCdev()

	// By name on the chip given, and on every chip when the simulator is
	// the only one (on a Pi the real GPIO17 would be found first).
	chips := []string{sim.chip}
	if all := gpiocdev.Chips(); len(all) == 1 && all[0] == sim.chip {
		chips = append(chips, "")
	}
	for _, chip := range chips {
		l, err := b.Request(LineSpec{Chip: chip, Name: "GPIO17", BCM: 17, Consumer: Consumer, Direction: Output, Initial: 1})
		if err != nil {
			t.Fatalf("chip %q: %v", chip, err)
		}
		if v := sim.value(17); v != 1 {
			t.Errorf("chip %q: initial level %d, want 1", chip, v)
		}
		if err := l.SetValue(0); err != nil {
			t.Fatal(err)
		}
		if v := sim.value(17); v != 0 {
			t.Errorf("chip %q: level %d after SetValue(0)", chip, v)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// An unnamed line on the given chip: the BCM number is the offset.
	l, err := b.Request(LineSpec{Chip: sim.chip, Name: "GPIO5", BCM: 5, Consumer: Consumer, Direction: Output, Initial: 1})
	if err != nil {
		t.Fatal(err)
	}
	if v := sim.value(5); v != 1 {
		t.Errorf("offset fallback: level %d", v)
	}
	l.Close()

	// A line held by another consumer.
	other, err := gpiocdev.RequestLine(sim.chip, 22, gpiocdev.WithConsumer("other-program"), gpiocdev.AsInput)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Request(LineSpec{Chip: sim.chip, Name: "GPIO22", BCM: 22, Consumer: Consumer, Direction: Input})
	var be *BusyError
	if !errors.As(err, &be) || be.Consumer != "other-program" || !errors.Is(err, syscall.EBUSY) {
		t.Errorf("busy line: %v", err)
	}
	other.Close()

	// Input edges, active low with pull-up.
	edges := make(chan Edge, 16)
	in, err := b.Request(LineSpec{Chip: sim.chip, Name: "GPIO22", BCM: 22, Consumer: Consumer, Direction: Input,
		Pull: PullUp, ActiveLow: true, OnEdge: func(e Edge) { edges <- e }})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	sim.pull(22, "pull-down")
	select {
	case e := <-edges:
		if e.Value != 1 {
			t.Errorf("edge to physical low on an active-low line: value %d, want 1", e.Value)
		}
	case <-time.After(waitLong):
		t.Fatal("no edge")
	}
	if v, err := in.Value(); err != nil || v != 1 {
		t.Errorf("value %d %v, want 1", v, err)
	}
}

func TestGPIOSimModule(t *testing.T) {
	sim := newSimChip(t, 28, map[int]string{17: "GPIO17", 22: "GPIO22", 23: "GPIO23", 18: "GPIO18"})
	other, err := gpiocdev.RequestLine(sim.chip, 23, gpiocdev.WithConsumer("pigpiod"), gpiocdev.AsInput)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	h := start(t, fmt.Sprintf(`{"chip":%q,"pins":[
		{"bcm":17,"mode":"output","initial":0,"failsafe":{"value":0,"after":"10s"}},
		{"bcm":22,"mode":"input","pull":"down"},
		{"bcm":23,"mode":"output"},
		{"bcm":18,"mode":"pwm","pwm":{"frequency":100,"duty":0.5}}
	]}`, sim.chip), NewCdev())
	st := h.waitState("23", "seq 1", func(s contract.GPIOState) bool { return s.Seq == 1 })
	if !strings.Contains(st.Error, `held by "pigpiod"`) {
		t.Errorf("busy pin state %+v", st)
	}
	if st := h.mustSet("17", "on"); st.Value != 1 || sim.value(17) != 1 {
		t.Errorf("set on: %+v, sim level %d", st, sim.value(17))
	}
	sim.pull(22, "pull-up")
	h.waitState("22", "edge to 1", func(s contract.GPIOState) bool { return s.Source == contract.GPIOSourceEdge && s.Value == 1 })

	h.bus.SetConnected(false)
	h.clock.waitUntil(t, "failsafe timer", func(pending, _ int) bool { return pending == 1 })
	h.clock.Advance(10 * time.Second)
	h.waitState("17", "failsafe", func(s contract.GPIOState) bool { return s.Failsafe })
	if v := sim.value(17); v != 0 {
		t.Errorf("failsafe level %d", v)
	}
	h.bus.SetConnected(true)
	h.waitState("17", "restore", func(s contract.GPIOState) bool { return s.Source == contract.GPIOSourceRestore })
	if v := sim.value(17); v != 1 {
		t.Errorf("restored level %d", v)
	}

	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	chip, err := gpiocdev.NewChip(sim.chip)
	if err != nil {
		t.Fatal(err)
	}
	defer chip.Close()
	for _, off := range []int{17, 18, 22} {
		info, err := chip.LineInfo(off)
		if err != nil {
			t.Fatal(err)
		}
		if info.Used {
			t.Errorf("line %d still used by %q after Close", off, info.Consumer)
		}
	}
}
