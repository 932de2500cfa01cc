package picontrol

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/runas"
	"github.com/picockpit/picockpit-client/modules"
)

func schemaErr(sch *jsonschema.Schema, data []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

func TestModuleSchema(t *testing.T) {
	sch := agenttest.MustSchema(t, "picontrol-module.schema.json")
	paths, _ := filepath.Glob("testdata/modules/*.json")
	shipped, _ := filepath.Glob("../../etc/picockpit-client/apps/com.picockpit/picontrol/modules/*.json")
	for _, p := range append(paths, shipped...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemaErr(sch, b); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, s := range []string{paramModule, streamModule} {
		if err := schemaErr(sch, []byte(s)); err != nil {
			t.Errorf("test module does not validate: %v", err)
		}
	}
	for name, bad := range map[string]string{
		"unknown field":    oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"colour":1}`),
		"relative program": oneCommand(`{"id":"c","name":"C","argv":["true"]}`),
		"argv and command": oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"command":"/bin/true"}`),
		"shell with argv":  oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"shell":true}`),
		"free string":      oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{s}"],"parameters":[{"name":"s","type":"string"}]}`),
		"min on string":    oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{s}"],"parameters":[{"name":"s","type":"string","enum":["a"],"min":1}]}`),
		"bad timeout":      oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"timeout":"soon"}`),
		"bad concurrency":  oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"concurrency":"maybe"}`),
		"bad id":           oneCommand(`{"id":"C C","name":"C","argv":["/bin/true"]}`),
		"no commands":      `{"id":"m","name":"M","commands":[]}`,
	} {
		if schemaErr(sch, []byte(bad)) == nil {
			t.Errorf("%s: the schema accepts %s", name, bad)
		}
	}
}

func TestConfigSchema(t *testing.T) {
	sch := agenttest.MustSchema(t, "picontrol-config.schema.json")
	good := `{"default_user":"pi","max_parallel":4,"max_queue":10,"default_timeout":"2m","kill_grace":"3s","output_limit":1024}`
	if err := schemaErr(sch, []byte(good)); err != nil {
		t.Errorf("good config: %v", err)
	}
	if _, probs := decodeConfig([]byte(good), "c.json"); len(probs) > 0 {
		t.Errorf("the decoder refuses what the schema accepts: %v", probs)
	}
	if schemaErr(sch, []byte(`{"kill_grace":3}`)) == nil {
		t.Error("the schema accepts a bare number as a duration")
	}
	if _, probs := decodeConfig([]byte(`{"kill_grace":3}`), "c.json"); len(probs) != 1 {
		t.Errorf("the decoder accepts a bare number as a duration: %v", probs)
	}
	if schemaErr(sch, []byte(`{"max_paralel":4}`)) == nil {
		t.Error("the schema accepts an unknown field")
	}
}

func TestCatalogueAndRepliesValidate(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "catalogue.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := schemaErr(agenttest.MustSchema(t, "picontrol-commands.schema.json"), golden); err != nil {
		t.Errorf("catalogue: %v", err)
	}

	req := agenttest.MustSchema(t, "picontrol-request.schema.json")
	for _, p := range []string{`{}`, `{"name":"a","n":3,"flag":true}`} {
		if err := schemaErr(req, []byte(p)); err != nil {
			t.Errorf("request %s: %v", p, err)
		}
	}
	for _, p := range []string{`[]`, `{"n":1.5}`, `{"x":null}`, `{"":1}`} {
		if schemaErr(req, []byte(p)) == nil {
			t.Errorf("request schema accepts %s", p)
		}
	}

	// Every reply of a few exchanges validates.
	// reply_grace 0: every exchange that runs gets accepted and chunks.
	fake := &fakeRun{res: runas.Result{ExitCode: 0, Stdout: []byte("hi"), StdoutTruncated: true},
		output: []chunkOut{{"stdout", "hi"}}}
	h := start(t, `{"reply_grace":"0s"}`, fake, modules.File{Path: "svc.json", Data: []byte(paramModule)})
	h.inject(request("picontrol/run/svc/restart", `{"name":"web"}`, "ok"))
	h.inject(request("picontrol/run/svc/restart", `{"name":"; reboot"}`, "bad"))
	h.inject(request("picontrol/run/svc/nope", ``, "unknown"))
	for _, c := range []string{"ok", "bad", "unknown"} {
		h.exchange(c)
	}
	sch := agenttest.MustSchema(t, "picontrol-reply.schema.json")
	n := 0
	for _, m := range h.bus.Messages() {
		if m.Reply || m.Topic == "picontrol/result/svc/restart" {
			n++
			if err := schemaErr(sch, m.Payload); err != nil {
				t.Errorf("reply %s: %v", m.Payload, err)
			}
		}
	}
	if n < 6 {
		t.Errorf("validated only %d replies", n)
	}
}
