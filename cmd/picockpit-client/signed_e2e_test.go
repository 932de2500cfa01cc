package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/picontrol"
	"github.com/picockpit/picockpit-client/modules/signature"
)

const e2eWait = 30 * time.Second

// signedE2E is an agent with two commands that require a signature, each
// appending to a file when it runs, and two trusted keys made by keygen:
// "garage" (scope: signed/open only) and "admin" (no scope).
type signedE2E struct {
	t      *testing.T
	a      *agenttest.Agent
	c      *brokertest.Client
	broker string
	dir    string
	keys   string // keygen's output directory
}

func startSignedE2E(t *testing.T) *signedE2E {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs commands as root: needs root (CI is root)")
	}
	dir, keys := t.TempDir(), t.TempDir()
	for _, k := range [][]string{{"--name", "garage", "--commands", "signed/open", "--pins", "door"}, {"--name", "admin"}} {
		var out, errb bytes.Buffer
		if code := realMain(append([]string{"keygen", "--out", keys}, k...), &out, &errb); code != 0 {
			t.Fatalf("keygen %v: %d %s", k, code, errb.String())
		}
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(keys, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	module := fmt.Sprintf(`{"id":"signed","name":"Signed","commands":[
	 {"id":"open","name":"Open","argv":["/bin/sh","-c","echo open >> %s"],"user":"root","require_signature":true,"concurrency":"queue"},
	 {"id":"reboot","name":"Reboot","argv":["/bin/sh","-c","echo reboot >> %s"],"user":"root","require_signature":true}]}`,
		filepath.Join(dir, "ran"), filepath.Join(dir, "ran"))
	b := brokertest.Mosquitto(t, brokertest.Options{})
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{picontrol.Kind()},
		Files: map[string]string{
			"apps/com.test/picontrol/modules/signed.json": module,
			"trusted-keys.d/garage.json":                  read("garage.json"),
			"trusted-keys.d/admin.json":                   read("admin.json"),
		}})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	c.Subscribe(a.Topic("reply/#"), a.Topic("events"), a.Topic("picontrol/#"))
	m := c.WaitFor(e2eWait, "catalogue", brokertest.Topic(a.Topic(contract.TopicPiControlCommands)))
	agenttest.ValidateSchema(t, "picontrol-commands", m.Payload)
	if !bytes.Contains(m.Payload, []byte(`"require_signature":true`)) {
		t.Errorf("catalogue does not say which commands need a signature: %s", m.Payload)
	}
	return &signedE2E{t: t, a: a, c: c, broker: b.URL, dir: dir, keys: keys}
}

func (e *signedE2E) ran() []string {
	b, err := os.ReadFile(filepath.Join(e.dir, "ran"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// publish sends a request with mosquitto_pub, the tool a script would use.
func (e *signedE2E) publish(topic, payload, corr string, props []signature.Property) {
	e.t.Helper()
	u, err := url.Parse(e.broker)
	if err != nil {
		e.t.Fatal(err)
	}
	args := []string{"-V", "mqttv5", "-q", "1", "-h", u.Hostname(), "-p", u.Port(), "-t", topic, "-m", payload,
		"-D", "publish", "response-topic", e.a.Topic("reply/signed"), "-D", "publish", "correlation-data", corr}
	for _, p := range props {
		args = append(args, "-D", "publish", "user-property", p.Key, p.Value)
	}
	if out, err := exec.Command("mosquitto_pub", args...).CombinedOutput(); err != nil {
		e.t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
}

// final waits for the final reply with correlation corr.
func (e *signedE2E) final(corr string) contract.PiControlReply {
	e.t.Helper()
	var r contract.PiControlReply
	e.c.WaitFor(e2eWait, "final reply "+corr, func(m brokertest.Message) bool {
		if m.Topic != e.a.Topic("reply/signed") || string(m.Correlation) != corr {
			return false
		}
		return json.Unmarshal(m.Payload, &r) == nil && contract.IsFinal(r.Status)
	})
	return r
}

// event waits for the event of kind about corr's request with the field.
func (e *signedE2E) event(kind, field, value string) contract.Event {
	e.t.Helper()
	var ev contract.Event
	e.c.WaitFor(e2eWait, fmt.Sprintf("%s event with %s=%s", kind, field, value), func(m brokertest.Message) bool {
		if m.Topic != e.a.Topic("events") || json.Unmarshal(m.Payload, &ev) != nil {
			return false
		}
		return ev.Kind == kind && fmt.Sprint(ev.Fields[field]) == value
	})
	return ev
}

func readKey(t *testing.T, path string) ed25519.PrivateKey {
	t.Helper()
	k, err := readPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Issue 12 item 5 through a real Mosquitto: a valid signature runs; unsigned,
// forged, wrong-key, unknown-key, out-of-scope, expired and replayed requests
// are each refused with an events entry, and nothing else runs.
func TestSignedCommandsE2E(t *testing.T) {
	e := startSignedE2E(t)
	openTopic := e.a.Topic(contract.PiControlRunTopic("signed", "open"))
	rebootTopic := e.a.Topic(contract.PiControlRunTopic("signed", "reboot"))
	garage := readKey(t, filepath.Join(e.keys, "garage.pem"))
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sign := func(priv ed25519.PrivateKey, name, topic, payload, corr string, at time.Time) []signature.Property {
		n++
		return signature.Sign(priv, name, signature.Message{Topic: topic, Payload: []byte(payload), CorrelationData: []byte(corr),
			ResponseTopic: e.a.Topic("reply/signed")}, at, fmt.Sprintf("nonce-%012d-%d", n, time.Now().UnixNano()))
	}

	// The valid request, printed by `sign` as a mosquitto_pub line and run
	// by a shell as a user would.
	var line, errb bytes.Buffer
	if code := realMain([]string{"sign", "--key", filepath.Join(e.keys, "garage.pem"), "--topic", openTopic,
		"--payload", "{}", "--response-topic", e.a.Topic("reply/signed"), "--correlation-data", "valid", "--url", e.broker}, &line, &errb); code != 0 {
		t.Fatalf("sign: %d %s", code, errb.String())
	}
	if out, err := exec.Command("/bin/sh", "-c", line.String()).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line.String(), err, out)
	}
	if r := e.final("valid"); r.Status != contract.StatusDone {
		t.Fatalf("valid signature: %+v", r)
	}
	if ev := e.event(contract.EventCommand, "signed_by", "garage"); ev.Fields["status"] != contract.StatusDone {
		t.Errorf("audit event %+v", ev)
	}
	if got := e.ran(); len(got) != 1 || got[0] != "open" {
		t.Fatalf("ran %v after the valid request", got)
	}

	// A valid request captured for the replay below.
	captured := sign(garage, "garage", openTopic, "{}", "captured", time.Now())
	e.publish(openTopic, "{}", "captured", captured)
	if r := e.final("captured"); r.Status != contract.StatusDone {
		t.Fatalf("second valid request: %+v", r)
	}

	for _, tc := range []struct {
		name, topic, payload, corr string
		props                      []signature.Property
		reason                     string
	}{
		{"unsigned", openTopic, "{}", "unsigned", nil, signature.ReasonUnsigned},
		{"forged payload", openTopic, `{"x":1}`, "forged", sign(garage, "garage", openTopic, "{}", "forged", time.Now()), signature.ReasonBadSignature},
		{"wrong key", openTopic, "{}", "wrongkey", sign(stranger, "garage", openTopic, "{}", "wrongkey", time.Now()), signature.ReasonBadSignature},
		{"unknown key", openTopic, "{}", "unknownkey", sign(stranger, "stranger", openTopic, "{}", "unknownkey", time.Now()), signature.ReasonUnknownKey},
		{"out of scope", rebootTopic, "{}", "scope", sign(garage, "garage", rebootTopic, "{}", "scope", time.Now()), signature.ReasonOutOfScope},
		{"expired", openTopic, "{}", "expired", sign(garage, "garage", openTopic, "{}", "expired", time.Now().Add(-10*time.Minute)), signature.ReasonExpired},
		{"replayed", openTopic, "{}", "captured", captured, signature.ReasonReplayed},
		{"redirected", rebootTopic, "{}", "redirect", sign(garage, "garage", openTopic, "{}", "redirect", time.Now()), signature.ReasonBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.c.Reset()
			e.publish(tc.topic, tc.payload, tc.corr, tc.props)
			if r := e.final(tc.corr); r.Status != contract.StatusRejected || !strings.Contains(r.Error, "signature refused ("+tc.reason+")") {
				t.Errorf("final %+v, want rejected for %s", r, tc.reason)
			}
			e.event(contract.EventRejected, "signature", tc.reason)
		})
	}
	if got := e.ran(); strings.Join(got, " ") != "open open" {
		t.Fatalf("ran %v; want only the two valid requests", got)
	}
}
