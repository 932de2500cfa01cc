//go:build nodered

package kinds_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
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

// The Node-RED signing example (docs/node-red/sign-example.json) in a real
// Node-RED: its function node signs with Node's crypto, and the agent runs
// the command that requires a signature. Run with make test-nodered.
func TestNodeRedSignExample(t *testing.T) {
	nrDir := os.Getenv("NODE_RED_DIR")
	bin := filepath.Join(nrDir, "node_modules", "node-red", "red.js")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Node-RED not found (NODE_RED_DIR=%q): run make test-nodered: %v", nrDir, err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := signature.EncodeKey("nodered", pub, &signature.Scope{Commands: []string{"demo/hello"}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.Mosquitto(t, brokertest.Options{})
	hello := `{"id":"demo","name":"Demo","commands":[{"id":"hello","name":"Say hello","argv":["/bin/echo","signed hello"],"user":"nobody","require_signature":true}]}`
	a := agenttest.Start(t, agenttest.Options{BrokerURL: b.URL, Kinds: []modules.Kind{picontrol.Kind()},
		Files: map[string]string{"apps/com.picockpit/picontrol/modules/demo.json": hello, "trusted-keys.d/nodered.json": string(trusted)}})
	watch := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	watch.Subscribe(a.Topic("events"), a.Topic("reply/#"))

	user := t.TempDir()
	flow, err := os.ReadFile(filepath.Join("..", "..", "docs", "node-red", "sign-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(user, "flows.json"), flow, 0o644); err != nil {
		t.Fatal(err)
	}
	port := brokertest.FreePort(t)
	settings := fmt.Sprintf(`module.exports = { uiHost: "127.0.0.1", uiPort: %d, flowFile: "flows.json", credentialSecret: false,
  logging: { console: { level: "info" } }, editorTheme: { tours: false } };`, port)
	if err := os.WriteFile(filepath.Join(user, "settings.js"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &agenttest.Buffer{}
	cmd := exec.Command("node", bin, "--userDir", user, "--settings", filepath.Join(user, "settings.js"))
	brokerPort := b.URL[strings.LastIndex(b.URL, ":")+1:]
	cmd.Env = append(os.Environ(), "PICOCKPIT_MQTT_HOST=127.0.0.1", "PICOCKPIT_MQTT_PORT="+brokerPort,
		"PICOCKPIT_SIGN_KEY="+string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"PICOCKPIT_SIGN_KEY_NAME=nodered",
		"PICOCKPIT_SIGN_TOPIC="+a.Topic(contract.PiControlRunTopic("demo", "hello")),
		"PICOCKPIT_SIGN_REPLY="+a.Topic("reply/node-red/signed"))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			t.Logf("node-red log:\n%s", logs.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	// Started, and connected to the broker (the mqtt out node drops what
	// it gets before that).
	for !strings.Contains(logs.String(), "Connected to broker") {
		if strings.Contains(logs.String(), "Waiting for missing types") || time.Now().After(deadline) {
			t.Fatalf("flow not started and connected:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := http.Post(base+"/inject/sig_inject", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("inject: %s", resp.Status)
	}
	watch.WaitFor(20*time.Second, "the signed run, audited with the key", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("events") && strings.Contains(string(m.Payload), `"signed_by":"nodered"`) &&
			strings.Contains(string(m.Payload), `"status":"done"`)
	})
	watch.WaitFor(20*time.Second, "the final reply to Node-RED", func(m brokertest.Message) bool {
		return m.Topic == a.Topic("reply/node-red/signed") && string(m.Correlation) == "node-red-signed" &&
			strings.Contains(string(m.Payload), `"status":"done"`) && strings.Contains(string(m.Payload), "signed hello")
	})
	if strings.Contains(logs.String(), "[error]") {
		t.Errorf("Node-RED logged errors:\n%s", logs.String())
	}
}
