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
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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
// binary is missing.
func Mosquitto(t testing.TB, opts Options) *Broker {
	t.Helper()
	bin, err := mosquittoBin()
	if err != nil {
		t.Fatalf("mosquitto is not installed (apt-get install -y mosquitto mosquitto-clients, or run make test which installs it): %v", err)
	}
	b := newBroker(t, "mosquitto", opts)
	b.writeMosquittoConfig()
	b.startMosquitto(bin)
	t.Cleanup(b.Stop)
	return b
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
	b.ports["mqtt"] = FreePort(t)
	b.URL = fmt.Sprintf("mqtt://127.0.0.1:%d", b.ports["mqtt"])
	if opts.TLS || opts.WSS {
		b.Certs = GenerateCerts(t, dir)
	}
	if opts.TLS {
		b.ports["mqtts"] = FreePort(t)
		b.TLSURL = fmt.Sprintf("mqtts://127.0.0.1:%d", b.ports["mqtts"])
	}
	if opts.WS {
		b.ports["ws"] = FreePort(t)
		b.WSURL = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", b.ports["ws"])
	}
	if opts.WSS {
		b.ports["wss"] = FreePort(t)
		b.WSSURL = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", b.ports["wss"])
	}
	return b
}

var (
	portMu    sync.Mutex
	usedPort  = map[int]bool{}
	portLocks []*os.File // held until the process exits
)

// FreePort returns a loopback TCP port that was free a moment ago and that
// no other test process on this machine uses. It picks at random below the
// kernel's ephemeral range (32768 and up by default), so outgoing
// connections cannot take it before the broker binds it; it never hands out
// a port twice in one process (an agent of an earlier test may still be
// reconnecting to it); and it holds an flock on a per-port file for the
// life of the process, so parallel test binaries never share a port.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	dir := filepath.Join(os.TempDir(), "picockpit-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		p := 20000 + rand.IntN(12000)
		if usedPort[p] {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(p)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // another test process has it
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			f.Close()
			continue
		}
		l.Close()
		usedPort[p] = true
		portLocks = append(portLocks, f)
		return p
	}
	t.Fatal("no free loopback port found")
	return 0
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

func (b *Broker) startMosquitto(bin string) {
	cmd := exec.Command(bin, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	cmd.Stdout = b.log
	cmd.Stderr = b.log
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	wait := make(chan error, 1)
	go func() { wait <- cmd.Wait() }()
	b.mu.Lock()
	b.cmd, b.waitErr = cmd, wait
	b.mu.Unlock()
	b.waitListening(wait)
}

func (b *Broker) waitListening(exited chan error) {
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range b.ports {
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-exited:
				b.t.Fatalf("%s exited at start: %v\n%s", b.Kind, err, b.log.String())
			default:
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("%s not listening on %d after 10s:\n%s", b.Kind, p, b.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
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
	add := func(l listeners.Listener) {
		if err := s.AddListener(l); err != nil {
			b.t.Fatalf("mochi listener: %v", err)
		}
	}
	add(listeners.NewTCP(listeners.Config{ID: "tcp", Address: fmt.Sprintf("127.0.0.1:%d", b.ports["mqtt"])}))
	if p, ok := b.ports["mqtts"]; ok {
		add(listeners.NewTCP(listeners.Config{ID: "tls", Address: fmt.Sprintf("127.0.0.1:%d", p), TLSConfig: tlsCfg}))
	}
	if p, ok := b.ports["ws"]; ok {
		add(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: fmt.Sprintf("127.0.0.1:%d", p)}))
	}
	if p, ok := b.ports["wss"]; ok {
		add(listeners.NewWebsocket(listeners.Config{ID: "wss", Address: fmt.Sprintf("127.0.0.1:%d", p), TLSConfig: tlsCfg}))
	}
	if err := s.Serve(); err != nil {
		b.t.Fatalf("mochi serve: %v", err)
	}
	b.mu.Lock()
	b.mochi = s
	b.mu.Unlock()
	b.waitListening(nil)
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
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-wait:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-wait
		}
	}
	if ms != nil {
		_ = ms.Close()
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
		// The port may linger in TIME_WAIT briefly; mosquitto sets SO_REUSEADDR.
		b.startMosquitto(bin)
	case "mochi":
		b.startMochi()
	}
}

// Log returns what the broker logged so far.
func (b *Broker) Log() string { return b.log.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
