//go:build !linux

package gpio

import (
	"runtime"
	"time"
)

func pinThread() bool { runtime.LockOSThread(); return false }

var otherBase = time.Now()

func clockMonotonic() int64 { return int64(time.Since(otherBase)) }

func sleepAbs(abs int64) {
	if d := abs - monoNow(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}
