package gpio

import (
	"fmt"
	"syscall"
	"time"
)

// Line is one requested GPIO line. *gpiocdev.Line implements it, and so do
// the lines of the Fake backend. Values are active (logical) levels, 0 or 1:
// active-low is applied by the backend.
//
// Methods may be called from several goroutines. Close releases the line; it
// must not be called from the line's own edge handler (gpiocdev waits for the
// handler to return).
type Line interface {
	// Value reads the current active level.
	Value() (int, error)
	// SetValue drives an output line to value (0 or 1).
	SetValue(value int) error
	// Close releases the line.
	Close() error
}

// Direction of a requested line.
type Direction int

// Directions.
const (
	Input Direction = iota
	Output
)

// Pull is the bias of a line.
type Pull string

// Pulls, as in the config.
const (
	PullNone Pull = "none"
	PullUp   Pull = "up"
	PullDown Pull = "down"
)

// Edge is one edge seen on an input line.
type Edge struct {
	// Value is the active level after the edge.
	Value int
	// Time is when the edge was seen.
	Time time.Time
}

// LineSpec says which line to request and how.
type LineSpec struct {
	// Chip restricts the search to one chip ("gpiochip0"); empty searches
	// every chip.
	Chip string
	// Name is the line name to look for ("GPIO17").
	Name string
	// BCM is the pin's BCM number; used as the offset on Chip (or the first
	// chip) when no line carries Name (old kernels without line names).
	BCM       int
	Consumer  string
	Direction Direction
	Pull      Pull
	ActiveLow bool
	// Initial is the level of an output; when KeepLevel is set and the line
	// already is an output, its current level is kept instead.
	Initial   int
	KeepLevel bool
	// OnEdge, when not nil for an input, is called for every edge (both
	// directions). It runs on the backend's goroutine and must not block or
	// call Close.
	OnEdge func(Edge)
}

// Backend requests lines. Implementations are safe for concurrent use.
type Backend interface {
	// Name is the backend's config name ("gpiocdev", "fake").
	Name() string
	// Request requests the line described by spec. A line held by another
	// consumer gives a *BusyError (errors.Is(err, syscall.EBUSY) holds).
	Request(spec LineSpec) (Line, error)
}

// BusyError is returned when a line is already requested by someone else.
type BusyError struct {
	Line   string // line name ("GPIO17")
	Chip   string // chip ("gpiochip0")
	Offset int
	// Consumer is the holder's consumer label from the kernel's line info;
	// empty if the holder gave none.
	Consumer string
}

func (e *BusyError) Error() string {
	holder := "an unnamed consumer"
	if e.Consumer != "" {
		holder = fmt.Sprintf("%q", e.Consumer)
	}
	return fmt.Sprintf("line %s (%s offset %d) is busy: held by %s", e.Line, e.Chip, e.Offset, holder)
}

// Unwrap makes errors.Is(err, syscall.EBUSY) true.
func (e *BusyError) Unwrap() error { return syscall.EBUSY }
