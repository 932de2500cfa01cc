package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// StatusFileName is the daemon's status file in the state dir, read by
// `picockpit-client status`. It is rewritten only when the connection
// state changes (connected, lost, a new kind of error), never per message.
const StatusFileName = "status.json"

// ConnEventKind is what happened to the broker connection.
type ConnEventKind int

const (
	ConnConnecting ConnEventKind = iota // started connecting
	ConnUp                              // connected (URL is the one in use)
	ConnDown                            // the connection dropped
	ConnFailed                          // a connection attempt failed (Err says why)
)

// ConnEvent is one connection state change, reported by the session.
type ConnEvent struct {
	Kind ConnEventKind
	URL  string // redacted broker URL
	Err  string
}

// Status is the content of the status file.
type Status struct {
	PID       int       `json:"pid"`
	Version   string    `json:"version"`
	Device    string    `json:"device"`
	ClientID  string    `json:"client_id"`
	StartedAt time.Time `json:"started_at"`
	// State is "connecting", "connected", "disconnected" or "stopped".
	State     string    `json:"state"`
	Connected bool      `json:"connected"`
	BrokerURL string    `json:"broker_url,omitempty"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
	// LastErrorAt is when LastError first occurred (a repeat of the same
	// error does not rewrite the file).
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
	LastReconnect *time.Time `json:"last_reconnect,omitempty"`
	Connects      int64      `json:"connects"`
}

// statusFile keeps Status and writes it on changes.
type statusFile struct {
	path string
	mu   sync.Mutex
	st   Status
	now  func() time.Time
	// writes counts file writes (tests check that steady state writes nothing).
	writes int
}

func newStatusFile(stateDir string, st Status) *statusFile {
	f := &statusFile{path: filepath.Join(stateDir, StatusFileName), st: st, now: time.Now}
	f.st.State, f.st.Since = "", st.StartedAt // the first event is always written
	return f
}

// observe applies a connection event and writes the file if it changed
// anything a user would want to see.
func (f *statusFile) observe(ev ConnEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UTC().Truncate(time.Millisecond)
	before := f.st
	switch ev.Kind {
	case ConnConnecting:
		f.st.State, f.st.Connected = "connecting", false
	case ConnUp:
		f.st.State, f.st.Connected, f.st.BrokerURL, f.st.Since = "connected", true, ev.URL, now
		f.st.Connects++
		if f.st.Connects > 1 {
			f.st.LastReconnect = &now
		}
	case ConnDown:
		f.st.State, f.st.Connected, f.st.Since = "disconnected", false, now
	case ConnFailed:
		if f.st.Connected {
			return nil
		}
		if ev.Err != f.st.LastError {
			f.st.LastError, f.st.LastErrorAt = ev.Err, &now
		}
	}
	if ev.Kind != ConnUp && f.st.State == before.State && f.st.LastError == before.LastError {
		return nil // a repeat: nothing new to tell
	}
	return f.writeLocked()
}

// stopped records a clean stop.
func (f *statusFile) stopped() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.State, f.st.Connected, f.st.Since = "stopped", false, f.now().UTC().Truncate(time.Millisecond)
	return f.writeLocked()
}

func (f *statusFile) writeLocked() error {
	b, err := json.MarshalIndent(f.st, "", "  ")
	if err != nil {
		return err
	}
	f.writes++
	// Temp file and rename: a reader never sees half a file. No fsync: the
	// file describes this boot's process, and sparing the SD card matters
	// more than keeping it across a power cut.
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, f.path)
}

// ReadStatus reads the status file of a state dir.
func ReadStatus(stateDir string) (Status, error) {
	var st Status
	b, err := os.ReadFile(filepath.Join(stateDir, StatusFileName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return st, fmt.Errorf("no status file in %s: the agent has not run since boot or install: %w", stateDir, err)
		}
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(stateDir, StatusFileName), err)
	}
	return st, nil
}
