//go:build linux

package gpio

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/warthog618/go-gpiocdev"
)

// Line is implemented by *gpiocdev.Line.
var _ Line = (*gpiocdev.Line)(nil)

// Cdev is the backend on the kernel's GPIO character device (go-gpiocdev,
// uAPI v2 where the kernel has it, else v1).
// Chips are the /dev/gpiochip* devices.
type Cdev struct{}

// NewCdev returns the gpiocdev backend.
func NewCdev() *Cdev { return &Cdev{} }

// Name implements Backend.
func (*Cdev) Name() string { return BackendGpiocdev }

func (c *Cdev) chips(spec LineSpec) []string {
	if spec.Chip != "" {
		return []string{spec.Chip}
	}
	return gpiocdev.Chips()
}

// find returns the chip and offset of spec's line: by name on every chip
// (or spec.Chip), else the BCM number as offset on spec.Chip or the first chip.
func (c *Cdev) find(spec LineSpec) (string, int, error) {
	chips := c.chips(spec)
	if len(chips) == 0 {
		return "", 0, errors.New("no GPIO chip found (no /dev/gpiochip*)")
	}
	for _, name := range chips {
		ch, err := gpiocdev.NewChip(name)
		if err != nil {
			if spec.Chip != "" {
				return "", 0, fmt.Errorf("open %s: %w", name, err)
			}
			continue
		}
		off, err := ch.FindLine(spec.Name)
		n := ch.Lines()
		ch.Close()
		if err == nil {
			return name, off, nil
		}
		if spec.Chip != "" && spec.BCM < n {
			// Old kernels name no lines: on the Pi's main chip the offset
			// is the BCM number.
			return name, spec.BCM, nil
		}
	}
	if spec.Chip == "" {
		return "", 0, fmt.Errorf("no GPIO line named %q on %v (set gpio.chip to use the BCM number as offset)", spec.Name, chips)
	}
	return "", 0, fmt.Errorf("no GPIO line named %q on %s", spec.Name, spec.Chip)
}

// Request implements Backend.
func (c *Cdev) Request(spec LineSpec) (Line, error) {
	chipName, offset, err := c.find(spec)
	if err != nil {
		return nil, err
	}
	chip, err := gpiocdev.NewChip(chipName, gpiocdev.WithConsumer(spec.Consumer))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", chipName, err)
	}
	defer chip.Close()

	opts := []gpiocdev.LineReqOption{gpiocdev.WithConsumer(spec.Consumer)}
	if spec.ActiveLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	switch spec.Pull {
	case PullUp:
		opts = append(opts, gpiocdev.WithPullUp)
	case PullDown:
		opts = append(opts, gpiocdev.WithPullDown)
	case PullNone:
		opts = append(opts, gpiocdev.WithBiasDisabled)
	}
	initial := spec.Initial
	if spec.Direction == Output && spec.KeepLevel {
		if v, ok := currentOutput(chip, offset, spec); ok {
			initial = v
		}
	}
	switch spec.Direction {
	case Input:
		opts = append(opts, gpiocdev.AsInput)
		if spec.OnEdge != nil {
			h := spec.OnEdge
			opts = append(opts, gpiocdev.WithBothEdges, gpiocdev.WithEventHandler(func(ev gpiocdev.LineEvent) {
				v := 0
				if ev.Type == gpiocdev.LineEventRisingEdge {
					v = 1
				}
				h(Edge{Value: v, Time: time.Now()})
			}))
		}
	case Output:
		opts = append(opts, gpiocdev.AsOutput(initial))
	}
	l, err := chip.RequestLine(offset, opts...)
	if err != nil {
		if errors.Is(err, syscall.EBUSY) {
			be := &BusyError{Line: spec.Name, Chip: chipName, Offset: offset}
			if info, ierr := chip.LineInfo(offset); ierr == nil {
				be.Consumer = info.Consumer
			}
			return nil, be
		}
		return nil, fmt.Errorf("request %s (%s offset %d): %w", spec.Name, chipName, offset, err)
	}
	return l, nil
}

// currentOutput reads the level of a line that is an output and not in use,
// so that a restart or reload does not flip a relay.
func currentOutput(chip *gpiocdev.Chip, offset int, spec LineSpec) (int, bool) {
	info, err := chip.LineInfo(offset)
	if err != nil || info.Used || info.Config.Direction != gpiocdev.LineDirectionOutput {
		return 0, false
	}
	opts := []gpiocdev.LineReqOption{gpiocdev.WithConsumer(spec.Consumer), gpiocdev.AsIs}
	if spec.ActiveLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	l, err := chip.RequestLine(offset, opts...)
	if err != nil {
		return 0, false
	}
	defer l.Close()
	v, err := l.Value()
	return v, err == nil
}

// newCdev is the default backend on Linux.
func newCdev() (Backend, error) { return NewCdev(), nil }
