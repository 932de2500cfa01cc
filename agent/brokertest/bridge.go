package brokertest

import (
	"os"
	"path/filepath"
	"testing"
)

// MosquittoBridged starts a Mosquitto broker like Mosquitto does, with
// bridgeConf (a complete "connection ..." section of mosquitto.conf, e.g.
// the one in docs/bridging.md with the remote's address and CA filled in)
// appended to its configuration.
func MosquittoBridged(t testing.TB, opts Options, bridgeConf string) *Broker {
	t.Helper()
	return mosquitto(t, opts, bridgeConf)
}

// appendConfig appends conf to the broker's mosquitto.conf.
func (b *Broker) appendConfig(conf string) {
	f, err := os.OpenFile(filepath.Join(b.dir, "mosquitto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := f.WriteString("\n" + conf + "\n"); err != nil {
		b.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.t.Fatal(err)
	}
}

// Kill ends the broker with SIGKILL, as a power cut would: no clean
// DISCONNECT for anyone, bridges included.
func (b *Broker) Kill() {
	b.mu.Lock()
	cmd, wait := b.cmd, b.waitErr
	b.cmd = nil
	b.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-wait
	}
}
