// Package brokertest starts real MQTT 5 brokers for tests: Mosquitto (the
// Debian package) on free loopback ports with the listeners, TLS, password
// file and ACL a test needs, and embedded mochi-mqtt as a second,
// independent broker. A test that needs Mosquitto fails when it is missing:
// `make test` installs it.
package brokertest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Options choose the broker's listeners and security.
type Options struct {
	TLS bool // an mqtts:// listener with a generated CA
	WS  bool // a ws:// listener
	WSS bool // a wss:// listener
	// Users enables authentication: user name -> password. Anonymous
	// clients are refused when set.
	Users map[string]string
	// ACL is the content of a Mosquitto ACL file (Mosquitto only).
	ACL string
	// RequireClientCert makes the TLS listeners demand a client certificate
	// signed by the test CA (mutual TLS).
	RequireClientCert bool
	// Nagle keeps Mosquitto's default set_tcp_nodelay false; tests want
	// no delay (the default here), benchmarks measure both.
	Nagle bool
	// Extra is added to mosquitto.conf after the mqtt:// listener line:
	// global settings ("max_packet_size 1024") and settings of that listener
	// ("max_qos 0"). Mosquitto only.
	Extra string
}

// Broker is a running broker. Stop and Start restart it on the same ports.
type Broker struct {
	Kind   string // "mosquitto" or "mochi"
	URL    string // mqtt://127.0.0.1:port
	TLSURL string
	WSURL  string
	WSSURL string
	Certs  Certs

	t       testing.TB
	opts    Options
	dir     string
	ports   map[string]int
	mu      sync.Mutex
	cmd     *exec.Cmd
	waitErr chan error
	log     *lockedBuffer
	mochi   *mqtt.Server
}

// Mosquitto starts a Mosquitto broker; it fails the test if the mosquitto
// binary is missing. Mosquitto cannot bind port 0 (it means a unix socket
// there), so its ports come from FreePort; if another program takes one
// before Mosquitto binds it, Mosquitto exits with "Address already in use"
// and is started again on new ports.
func Mosquitto(t testing.TB, opts Options) *Broker {
	t.Helper()
	return mosquitto(t, opts, nil)
}

// mosquitto starts Mosquitto on new ports until they are free; prepare, if
// not nil, runs after each attempt's mosquitto.conf is written (to add to it).
func mosquitto(t testing.TB, opts Options, prepare func(b *Broker)) *Broker {
	t.Helper()
	bin, err := mosquittoBin()
	if err != nil {
		t.Fatalf("mosquitto is not installed (apt-get install -y mosquitto mosquitto-clients, or run make test which installs it): %v", err)
	}
	b := newBroker(t, "mosquitto", opts)
	t.Cleanup(b.Stop)
	const attempts = 5
	for i := 1; ; i++ {
		b.pickPorts()
		b.writeMosquittoConfig()
		if prepare != nil {
			prepare(b)
		}
		err := b.startMosquitto(bin)
		if err == nil {
			return b
		}
		if !errors.Is(err, errPortTaken) || i == attempts {
			t.Fatalf("start mosquitto: %v\n%s", err, b.log.String())
		}
		t.Logf("mosquitto attempt %d: %v; trying new ports", i, err)
	}
}

// mosquittoBin finds the mosquitto binary (Debian puts it in /usr/sbin,
// which a non-root PATH often lacks).
func mosquittoBin() (string, error) {
	if bin, err := exec.LookPath("mosquitto"); err == nil {
		return bin, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mosquitto not found in PATH, /usr/sbin or /usr/local/sbin")
}

// Mochi starts an embedded mochi-mqtt v2 broker.
func Mochi(t testing.TB, opts Options) *Broker {
	t.Helper()
	if opts.ACL != "" || opts.Extra != "" {
		t.Fatal("brokertest: ACL files and Extra settings are Mosquitto only")
	}
	b := newBroker(t, "mochi", opts)
	b.startMochi()
	t.Cleanup(b.Stop)
	return b
}

// Each returns both brokers' constructors, for conformance suites.
func Each() map[string]func(testing.TB, Options) *Broker {
	return map[string]func(testing.TB, Options) *Broker{"mosquitto": Mosquitto, "mochi": Mochi}
}

func newBroker(t testing.TB, kind string, opts Options) *Broker {
	dir := t.TempDir()
	b := &Broker{Kind: kind, t: t, opts: opts, dir: dir, ports: map[string]int{}, log: &lockedBuffer{}}
	if opts.TLS || opts.WSS {
		b.Certs = GenerateCerts(t, dir)
	}
	return b
}

// listenerNames are the listeners opts asks for; "mqtt" always.
func (b *Broker) listenerNames() []string {
	names := []string{"mqtt"}
	if b.opts.TLS {
		names = append(names, "mqtts")
	}
	if b.opts.WS {
		names = append(names, "ws")
	}
	if b.opts.WSS {
		names = append(names, "wss")
	}
	return names
}

// pickPorts gives every listener a port from FreePort (Mosquitto).
func (b *Broker) pickPorts() {
	for _, n := range b.listenerNames() {
		b.ports[n] = FreePort(b.t)
	}
	b.setURLs()
}

// setURLs derives the URLs from b.ports.
func (b *Broker) setURLs() {
	b.URL = fmt.Sprintf("mqtt://127.0.0.1:%d", b.ports["mqtt"])
	if p, ok := b.ports["mqtts"]; ok {
		b.TLSURL = fmt.Sprintf("mqtts://127.0.0.1:%d", p)
	}
	if p, ok := b.ports["ws"]; ok {
		b.WSURL = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", p)
	}
	if p, ok := b.ports["wss"]; ok {
		b.WSSURL = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", p)
	}
}

func (b *Broker) writeMosquittoConfig() {
	var c strings.Builder
	fmt.Fprintf(&c, "user root\npersistence false\nper_listener_settings false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n")
	if !b.opts.Nagle {
		c.WriteString("set_tcp_nodelay true\n")
	}
	if len(b.opts.Users) > 0 {
		pw := filepath.Join(b.dir, "passwd")
		if err := os.WriteFile(pw, nil, 0o600); err != nil {
			b.t.Fatal(err)
		}
		for u, p := range b.opts.Users {
			out, err := exec.Command("mosquitto_passwd", "-b", pw, u, p).CombinedOutput()
			if err != nil {
				b.t.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		c.WriteString("allow_anonymous true\n")
	}
	if b.opts.ACL != "" {
		acl := filepath.Join(b.dir, "acl")
		if err := os.WriteFile(acl, []byte(b.opts.ACL), 0o600); err != nil {
			b.t.Fatal(err)
		}
		fmt.Fprintf(&c, "acl_file %s\n", acl)
	}
	fmt.Fprintf(&c, "listener %d 127.0.0.1\n", b.ports["mqtt"])
	if b.opts.Extra != "" {
		c.WriteString(strings.TrimRight(b.opts.Extra, "\n") + "\n")
	}
	tlsLines := func() {
		fmt.Fprintf(&c, "cafile %s\ncertfile %s\nkeyfile %s\n", b.Certs.CAFile, b.Certs.CertFile, b.Certs.KeyFile)
		if b.opts.RequireClientCert {
			c.WriteString("require_certificate true\n")
		}
	}
	if p, ok := b.ports["mqtts"]; ok {
		fmt.Fprintf(&c, "listener %d 127.0.0.1\n", p)
		tlsLines()
	}
	if p, ok := b.ports["ws"]; ok {
		fmt.Fprintf(&c, "listener %d 127.0.0.1\nprotocol websockets\n", p)
	}
	if p, ok := b.ports["wss"]; ok {
		fmt.Fprintf(&c, "listener %d 127.0.0.1\nprotocol websockets\n", p)
		tlsLines()
	}
	if err := os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(c.String()), 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// errPortTaken means a listener's port was in use at start.
var errPortTaken = errors.New("a listener port is in use")

// startMosquitto starts Mosquitto and waits until its log says it is
// running (all listeners bound) or it exits.
func (b *Broker) startMosquitto(bin string) error {
	from := b.log.Len()
	cmd := exec.Command(bin, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	cmd.Stdout = b.log
	cmd.Stderr = b.log
	if err := cmd.Start(); err != nil {
		return err
	}
	wait := make(chan error, 1)
	go func() { wait <- cmd.Wait() }()
	deadline := time.After(10 * time.Second)
	for {
		grew := b.log.changed() // before the check: no write goes unnoticed
		if strings.Contains(b.log.Since(from), " running") {
			break
		}
		select {
		case err := <-wait:
			out := b.log.Since(from)
			if strings.Contains(out, "Address already in use") || strings.Contains(out, "Unable to create websockets listener") {
				return fmt.Errorf("%w: %v", errPortTaken, err)
			}
			return fmt.Errorf("mosquitto exited at start: %v", err)
		case <-deadline:
			_ = cmd.Process.Kill()
			<-wait
			return errors.New("mosquitto not running after 10s")
		case <-grew:
		}
	}
	b.mu.Lock()
	b.cmd, b.waitErr = cmd, wait
	b.mu.Unlock()
	return nil
}

func (b *Broker) startMochi() {
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: level}))})
	if len(b.opts.Users) > 0 {
		ledger := &auth.Ledger{Users: auth.Users{}}
		for u, p := range b.opts.Users {
			ledger.Users[u] = auth.UserRule{Username: auth.RString(u), Password: auth.RString(p)}
		}
		if err := s.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger}); err != nil {
			b.t.Fatal(err)
		}
	} else if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		b.t.Fatal(err)
	}
	var tlsCfg *tls.Config
	if b.opts.TLS || b.opts.WSS {
		cert, err := tls.LoadX509KeyPair(b.Certs.CertFile, b.Certs.KeyFile)
		if err != nil {
			b.t.Fatal(err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if b.opts.RequireClientCert {
			pem, err := os.ReadFile(b.Certs.CAFile)
			if err != nil {
				b.t.Fatal(err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			tlsCfg.ClientCAs = pool
			tlsCfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	// mochi serves the sockets opened here: port 0 the first time (the
	// kernel picks a free port, nothing can take it in between), the same
	// ports again on a restart.
	listen := func(name string) net.Listener {
		l, err := listenLoopback(b.ports[name])
		if err != nil {
			b.t.Fatalf("mochi listener %s: %v", name, err)
		}
		b.ports[name] = l.Addr().(*net.TCPAddr).Port
		return l
	}
	add := func(l listeners.Listener) {
		if err := s.AddListener(l); err != nil {
			b.t.Fatalf("mochi listener: %v", err)
		}
	}
	for _, name := range b.listenerNames() {
		l := listen(name)
		switch name {
		case "mqtt":
			add(listeners.NewNet("tcp", l))
		case "mqtts":
			add(listeners.NewNet("tls", tls.NewListener(l, tlsCfg)))
		case "ws":
			add(newWSListener("ws", l))
		case "wss":
			add(newWSListener("wss", tls.NewListener(l, tlsCfg)))
		}
	}
	b.setURLs()
	if err := s.Serve(); err != nil {
		b.t.Fatalf("mochi serve: %v", err)
	}
	b.mu.Lock()
	b.mochi = s
	b.mu.Unlock()
}

// listenLoopback listens on 127.0.0.1:port (0: any free port). A restart
// on a known port retries for a while: a socket of the old broker may
// still hold it.
func listenLoopback(port int) (net.Listener, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil || port == 0 || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the broker (idempotent). Mosquitto runs without persistence,
// so retained messages are gone after a restart: the agent must publish its
// state again.
func (b *Broker) Stop() {
	b.mu.Lock()
	cmd, wait, ms := b.cmd, b.waitErr, b.mochi
	b.cmd, b.mochi = nil, nil
	b.mu.Unlock()
	if cmd != nil {
		stopMosquitto(cmd.Process, wait)
	}
	if ms != nil {
		_ = ms.Close()
	}
}

// stopMosquitto interrupts a Mosquitto and waits for it to exit. The
// interrupt is repeated: Mosquitto logs "running" before its main loop
// sets its run flag, so an interrupt that arrives in between is lost.
func stopMosquitto(p *os.Process, exited <-chan error) {
	_ = p.Signal(os.Interrupt)
	again := time.NewTicker(200 * time.Millisecond)
	defer again.Stop()
	kill := time.After(5 * time.Second)
	for {
		select {
		case <-exited:
			return
		case <-again.C:
			_ = p.Signal(os.Interrupt)
		case <-kill:
			_ = p.Kill()
			<-exited
			return
		}
	}
}

// Start starts a stopped broker again on the same ports.
func (b *Broker) Start() {
	b.t.Helper()
	switch b.Kind {
	case "mosquitto":
		bin, err := mosquittoBin()
		if err != nil {
			b.t.Fatal(err)
		}
		// Same ports as before (clients know them); mosquitto sets
		// SO_REUSEADDR, so only a socket of another program can be in the
		// way: wait a little for it to go.
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := b.startMosquitto(bin)
			if err == nil {
				return
			}
			if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
				b.t.Fatalf("restart mosquitto: %v\n%s", err, b.log.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	case "mochi":
		b.startMochi()
	}
}

// Log returns what the broker logged so far.
func (b *Broker) Log() string { return b.log.String() }

// lockedBuffer is the broker's log; readers can wait for it to grow.
type lockedBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	wake chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Len is the number of bytes logged so far.
func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// Since returns what was logged after the first n bytes.
func (l *lockedBuffer) Since(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b.Bytes()[n:])
}

// changed is closed at the next write.
func (l *lockedBuffer) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake == nil {
		l.wake = make(chan struct{})
	}
	return l.wake
}
