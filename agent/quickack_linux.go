package agent

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// quickAck returns a function that sets TCP_QUICKACK on c (Linux clears it
// again on its own, so it is re-armed after every read), or nil when c is
// not a TCP connection.
func quickAck(c net.Conn) func() {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	set := func() {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
		})
	}
	set()
	return set
}
