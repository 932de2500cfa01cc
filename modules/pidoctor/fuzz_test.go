package pidoctor

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

// FuzzRequest feeds arbitrary request topics and payloads (remote input) to
// the checks a request goes through before anything runs: never a panic, and
// only an empty payload or {} is accepted.
func FuzzRequest(f *testing.F) {
	f.Add("pidoctor/run", []byte(""))
	f.Add("pidoctor/run/system/disk-root", []byte("{}"))
	f.Add("pidoctor/run/a/b/c", []byte(`{"x":1}`))
	f.Add("pidoctor/run//", []byte(" [] "))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		mod, check, ok := contract.ParsePiDoctorRunTopic(topic)
		if ok && (mod == "" || check == "" || strings.Contains(check, "/") || topic != contract.PiDoctorRunTopic(mod, check)) {
			t.Fatalf("%q parsed as %q %q", topic, mod, check)
		}
		if err := checkPayload(payload); err == nil {
			if s := strings.TrimSpace(string(payload)); s != "" && strings.ReplaceAll(strings.Join(strings.Fields(s), ""), " ", "") != "{}" {
				t.Fatalf("accepted payload %q", payload)
			}
		}
	})
}

// FuzzDecodeModule feeds arbitrary module files to the loader: never a panic,
// every problem names its file, and what loads is valid.
func FuzzDecodeModule(f *testing.F) {
	f.Add([]byte(`{"id":"m","name":"M","checks":[{"id":"c","name":"C","builtin":"disk_free","options":{"mount":"/"}}]}`))
	f.Add([]byte(`{"id":"m","name":"M","checks":[{"id":"c","name":"C","argv":["/bin/true"],"rule":{"match":[{"pattern":"x(y)","verdict":"fail"}]},"message":"{value}"}]}`))
	f.Add([]byte(`{"id":"m","name":"M","checks":[{"id":"c","name":"C","command":"echo 1","shell":true,"rule":{"number":{"warn_above":1}}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, probs := load(modules.Env{HostRoot: t.TempDir()}, nil, "", []modules.File{{Path: "fuzz.json", Data: data}})
		for _, p := range probs {
			if p.File != "fuzz.json" || p.Err == nil {
				t.Fatalf("problem without file or error: %+v", p)
			}
		}
		for _, c := range m.order {
			if !modules.ValidID(c.ID) || !modules.ValidID(c.Module) || c.probe == nil || c.rule.kind == "" {
				t.Fatalf("loaded an invalid check %+v", c)
			}
		}
	})
}

// FuzzEvaluate judges arbitrary command output with each rule kind: never a
// panic, always a known verdict and a valid UTF-8 message.
func FuzzEvaluate(f *testing.F) {
	f.Add("temp=42.5'C\n", "", 0)
	f.Add("FAILED: nginx", "boom", 1)
	f.Add("\xff\xfe 1e400 -0 NaN", "\x00", 127)
	checks := []string{
		`{"id":"n","name":"N","argv":["/bin/true"],"rule":{"number":{"pattern":"=([-0-9.e]+)","warn_above":1,"fail_below":-1}},"message":"{value} {output}"}`,
		`{"id":"m","name":"M","argv":["/bin/true"],"rule":{"match":[{"pattern":"FAILED: (\\w+)","verdict":"fail"}],"ok_exit_codes":[0,1]},"message":"{value}"}`,
		`{"id":"e","name":"E","argv":["/bin/true"],"rule":{"exit_codes":{"0":"ok","1":"warn"}},"remedy":"{output}"}`,
	}
	var decoded []*check
	for _, s := range checks {
		c, probs := tryDecode(s)
		if len(probs) > 0 {
			f.Fatal(probs)
		}
		decoded = append(decoded, c)
	}
	f.Fuzz(func(t *testing.T, stdout, stderr string, code int) {
		for _, c := range decoded {
			o := c.evaluate(exited(code&0xff, stdout, stderr))
			if contract.VerdictRank(o.verdict) < 0 || !utf8.ValidString(o.message) || !utf8.ValidString(o.remedy) {
				t.Fatalf("%s: %+v", c.ID, o)
			}
		}
	})
}
