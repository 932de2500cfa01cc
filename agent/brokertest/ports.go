package brokertest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

var (
	portMu    sync.Mutex
	usedPort  = map[int]bool{}
	portLocks []net.Listener // held until the process exits
)

// FreePort returns a loopback TCP port for a listener that cannot bind port
// 0 itself (Mosquitto) or for a URL where nothing listens. It picks at
// random below the kernel's ephemeral range (32768 and up by default), so
// no outgoing connection can take it; it never hands out a port twice in one
// process (an agent of an earlier test may still be reconnecting to it); it
// claims the port against other test processes with an abstract unix
// socket named after it, which the kernel removes when the process exits
// (no files left behind); and it checks that the port is free now. Another
// program can still bind it before the broker does: Mosquitto then starts
// again on new ports.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i < 1000; i++ {
		p := 20000 + rand.IntN(12000)
		if usedPort[p] {
			continue
		}
		claim, err := net.Listen("unix", fmt.Sprintf("@picockpit-test-port-%d", p))
		if err != nil {
			continue // another test process has it
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			claim.Close()
			continue
		}
		l.Close()
		usedPort[p] = true
		portLocks = append(portLocks, claim)
		return p
	}
	t.Fatal("no free loopback port found")
	return 0
}
