//go:build linux

package gpio

import (
	"errors"
	"runtime"

	"golang.org/x/sys/unix"
)

// pinThread locks the calling goroutine to its OS thread for good (the
// runtime ends the thread when the goroutine returns) and sets the thread's
// timer slack to 1 ns, so that clock_nanosleep wakes on time.
func pinThread() {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
}

func clockMonotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// sleepAbs sleeps until the CLOCK_MONOTONIC time abs (ns).
func sleepAbs(abs int64) {
	ts := unix.NsecToTimespec(abs)
	for {
		err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}
