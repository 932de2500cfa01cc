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
	bin, err := mosquittoBin()
	if err != nil {
		t.Fatalf("mosquitto is not installed (apt-get install -y mosquitto mosquitto-clients, or run make test which installs it): %v", err)
	}
	b := newBroker(t, "mosquitto", opts)
	b.writeMosquittoConfig()
	conf := filepath.Join(b.dir, "mosquitto.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n" + bridgeConf + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	b.startMosquitto(bin)
	t.Cleanup(b.Stop)
	return b
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
