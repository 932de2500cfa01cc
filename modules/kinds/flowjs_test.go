package kinds_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// flowRun runs function nodes of the shipped Node-RED flow
// (docs/node-red/picockpit-flow.json) in node, as Node-RED would: the
// subscription node, then each message through the model node, and every
// request the model emits through the request builder. It returns the
// subscription message and the built MQTT requests (correlation data as
// text).
func flowRun(t *testing.T, env map[string]string, msgs []any) (sub map[string]any, requests []map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "node-red", "picockpit-flow.json"))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []map[string]any
	if err := json.Unmarshal(raw, &nodes); err != nil {
		t.Fatal(err)
	}
	code := map[string]string{}
	for _, n := range nodes {
		if n["type"] == "function" {
			code[n["id"].(string)] = n["func"].(string)
		}
	}
	for _, id := range []string{"pc_fn_subscribe", "pc_fn_model", "pc_fn_request"} {
		if code[id] == "" {
			t.Fatalf("the flow has no function node %s", id)
		}
	}
	in, _ := json.Marshal(map[string]any{"env": env, "msgs": msgs, "code": code})
	script := `
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const env = { get: (k) => input.env ? input.env[k] : undefined };
const node = { warn() {}, error(e) { throw new Error(String(e)) }, log() {}, status() {} };
function store() { const m = {}; return { get: (k) => m[k], set: (k, v) => { m[k] = v } } }
function fn(id) {
  const context = store(), flow = store(), global = store();
  const f = new Function('msg', 'env', 'node', 'context', 'flow', 'global', 'Buffer', input.code[id]);
  return (msg) => f(msg, env, node, context, flow, global, Buffer);
}
const replacer = (k, v) => (v && v.type === 'Buffer' && Array.isArray(v.data)) ? Buffer.from(v.data).toString() : v;
const model = fn('pc_fn_model'), request = fn('pc_fn_request');
const out = { sub: fn('pc_fn_subscribe')({}), requests: [] };
for (const m of (input.msgs || [])) {
  const r = model(m);
  if (r && r[1]) out.requests.push(request(r[1]));
}
process.stdout.write(JSON.stringify(out, replacer));
`
	cmd := exec.Command("node", "-e", script)
	cmd.Stdin = bytes.NewReader(in)
	b, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node (apt-get install nodejs; make deps does): %v\n%s", err, stderr)
	}
	var out struct {
		Sub      map[string]any   `json:"sub"`
		Requests []map[string]any `json:"requests"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("flow output %s: %v", b, err)
	}
	return out.Sub, out.Requests
}
