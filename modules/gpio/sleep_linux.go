//go:build linux

package gpio

import (
	"errors"
	"runtime"

	"golang.org/x/sys/unix"
)

// pwmPriority is the SCHED_FIFO priority of software PWM threads: above
// every normal task, below the kernel's own real-time threads (50).
const pwmPriority = 10

// pinThread locks the calling goroutine to its OS thread for good (the
// runtime ends the thread when the goroutine returns, so nothing else ever
// runs with its settings), sets the thread's timer slack to 1 ns so that
// clock_nanosleep wakes on time, and, where permitted (root), makes it a
// SCHED_FIFO thread so that busy normal tasks cannot delay its edges. The
// thread sleeps nearly all the time; the kernel's RT throttling still
// bounds it.
func pinThread() (realtime bool) {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: pwmPriority}
	return unix.SchedSetAttr(0, &attr, 0) == nil
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
