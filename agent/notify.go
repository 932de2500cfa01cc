package agent

import (
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages to systemd when NOTIFY_SOCKET is set and
// does nothing otherwise. It never unsets the environment: commands started
// later must not inherit NOTIFY_SOCKET, which runas already guarantees by
// giving them an explicit environment.
type Notifier struct{ log *slog.Logger }

// Send sends one notification (e.g. "READY=1").
func (n Notifier) Send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && n.log != nil {
		n.log.Debug("sd_notify failed", "state", state, "err", err)
	}
}

// Status sends STATUS=msg.
func (n Notifier) Status(msg string) { n.Send("STATUS=" + msg) }

// WatchdogInterval returns how often to ping the watchdog (half of
// WATCHDOG_USEC), or 0 when the watchdog is not enabled for this process.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
