// Package cloexec marks every inherited file descriptor above stderr
// close-on-exec, so that the commands the agent starts inherit only stdin,
// stdout and stderr, whatever the process that started the agent left open
// (a shell's fd 10, a terminal multiplexer's sockets). Call All first thing
// in main; descriptors Go opens itself are close-on-exec already.
package cloexec

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// All marks every file descriptor >= 3 close-on-exec: one close_range(2)
// call (Linux 5.11), or one fcntl per descriptor listed in /proc/self/fd on
// older kernels.
func All() error {
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("close_range: %w", err)
	}
	return each()
}

func each() error {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open files: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("list open files: %w", err)
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < 3 || fd == int(d.Fd()) {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("fd %d: %w", fd, err)
		}
	}
	return nil
}
