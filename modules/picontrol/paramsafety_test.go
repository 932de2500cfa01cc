package picontrol

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/picockpit/picockpit-client/agent/contract"
	"github.com/picockpit/picockpit-client/modules"
)

func envParamModule(env string, extra string) string {
	return oneCommand(`{"id":"c","name":"C","argv":["/bin/tar","-cf","/tmp/x.tar","/etc/hostname"],"user":"nobody",
		"parameters":[{"name":"p","type":"string","pattern":"[a-z=/-]+","env":"` + env + `"` + extra + `}]}`)
}

// Issue 12: a parameter mapped to TAR_OPTIONS let a request name a program
// for tar to run. Parameter variables are an allow list now.
func TestParamEnvAllowList(t *testing.T) {
	for _, tc := range []struct {
		env, extra string
		field, err string // "" = loads
	}{
		{"TAR_OPTIONS", "", "env", "TAR_OPTIONS may not be set from a parameter"},
		{"JAVA_TOOL_OPTIONS", "", "env", "may not be set"},
		{"LUA_INIT", "", "env", "may not be set"},
		{"OPENSSL_CONF", "", "env", "may not be set"},
		{"GLIBC_TUNABLES", "", "env", "may not be set"},
		{"APT_CONFIG", "", "env", "may not be set"},
		{"https_proxy", "", "env", "may not be set"},
		{"RSYNC_RSH", "", "env", "may not be set"},
		{"LESSOPEN", "", "env", "may not be set"},
		{"PERL5DB", "", "env", "may not be set"},
		{"XDG_CONFIG_HOME", "", "env", "may not be set"},
		{"PICONTROL_", "", "env", "may not be set"},
		{"picontrol_x", "", "env", "may not be set"},
		{"PICONTROL_UNIT", "", "", ""},
		{"BACKUP_LABEL", `,"trust_env":true`, "", ""},
		// Trusting a name never reaches the loader, shell or base names.
		{"LD_PRELOAD", `,"trust_env":true`, "env", "may not be set"},
		{"PATH", `,"trust_env":true`, "env", "may not be set"},
		{"BASH_ENV", `,"trust_env":true`, "env", "may not be set"},
	} {
		t.Run(tc.env+tc.extra, func(t *testing.T) {
			m, probs := load(testEnv(), nil, "", []modules.File{mfile("/etc/x/modules/m.json", envParamModule(tc.env, tc.extra))})
			if tc.err == "" {
				if len(probs) != 0 || len(m.Commands()) != 1 {
					t.Fatalf("refused: %v", probs)
				}
				return
			}
			if len(probs) != 1 || probs[0].Field != "commands[0].parameters[0]."+tc.field || !strings.Contains(probs[0].Err.Error(), tc.err) {
				t.Fatalf("problems %v, want one at parameters[0].%s containing %q", probs, tc.field, tc.err)
			}
		})
	}
	_, probs := load(testEnv(), nil, "", []modules.File{mfile("m.json", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{p}"],"user":"nobody","parameters":[{"name":"p","type":"boolean","trust_env":true}]}`))})
	if len(probs) == 0 || probs[0].Field != "commands[0].parameters[0].trust_env" {
		t.Errorf("trust_env without env: %v", probs)
	}
	_, probs = load(testEnv(), nil, "", []modules.File{mfile("m.json", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{n}"],"user":"nobody","parameters":[{"name":"n","type":"integer","min":-5}]}`))})
	if len(probs) == 0 || probs[0].Field != "commands[0].parameters[0].min" || !strings.Contains(probs[0].Err.Error(), "allow_leading_dash") {
		t.Errorf("negative min without allow_leading_dash: %v", probs)
	}
}

const safetyModule = `{"id":"fs","name":"Files","commands":[
 {"id":"ls","name":"List","argv":["/bin/ls","{dir}"],"user":"nobody",
  "parameters":[{"name":"dir","type":"string","pattern":"[-./a-z0-9]+","required":true}]},
 {"id":"lsopt","name":"List with options","argv":["/bin/ls","{opt}"],"user":"nobody",
  "parameters":[{"name":"opt","type":"string","pattern":"-[a-z]","allow_leading_dash":true,"required":true}]},
 {"id":"say","name":"Say","argv":["/bin/echo","--","{text}"],"user":"nobody",
  "parameters":[{"name":"text","type":"string","pattern":"[^/]*","required":true}]},
 {"id":"zw","name":"Zero width allowed","argv":["/bin/echo","--","{text}"],"user":"nobody",
  "parameters":[{"name":"text","type":"string","pattern":"(?:[^/]|\\x{200B})*","required":true}]},
 {"id":"num","name":"Number","argv":["/usr/bin/seq","{n}"],"user":"nobody",
  "parameters":[{"name":"n","type":"integer","max":5,"required":true}]},
 {"id":"delta","name":"Delta","argv":["/usr/bin/seq","--","{n}"],"user":"nobody",
  "parameters":[{"name":"n","type":"integer","min":-5,"max":5,"allow_leading_dash":true,"required":true}]}
]}`

// Issue 12: {"dir":"--version"} became an option of ls, and strings took
// U+202E, U+2028, U+200B and U+FEFF when the pattern allowed them.
func TestParamValueSafety(t *testing.T) {
	for _, tc := range []struct {
		name, cmd, payload string
		param, err         string // "" = runs
		argv               []string
	}{
		{"leading dash", "ls", `{"dir":"--version"}`, "dir", `"--version" starts with "-"`, nil},
		{"single dash", "ls", `{"dir":"-la"}`, "dir", `starts with "-"`, nil},
		{"dash inside", "ls", `{"dir":"a-b"}`, "", "", []string{"/bin/ls", "a-b"}},
		{"dash allowed", "lsopt", `{"opt":"-l"}`, "", "", []string{"/bin/ls", "-l"}},
		{"RLO", "say", `{"text":"abc\u202Etxt.exe"}`, "text", "U+202E", nil},
		{"line separator", "say", `{"text":"a\u2028b"}`, "text", "U+2028", nil},
		{"paragraph separator", "say", `{"text":"a\u2029b"}`, "text", "U+2029", nil},
		{"zero width space", "say", `{"text":"ro\u200Bot"}`, "text", "U+200B", nil},
		{"BOM", "say", `{"text":"\uFEFFhi"}`, "text", "U+FEFF", nil},
		{"LRI", "say", `{"text":"a\u2066b"}`, "text", "U+2066", nil},
		{"plain unicode", "say", `{"text":"grüße ☺"}`, "", "", []string{"/bin/echo", "--", "grüße ☺"}},
		{"named by pattern", "zw", `{"text":"ro\u200Bot"}`, "", "", []string{"/bin/echo", "--", "ro\u200Bot"}},
		{"other not named", "zw", `{"text":"ro\u200Cot"}`, "text", "U+200C", nil},
		{"negative integer", "num", `{"n":-1}`, "n", "negative", nil},
		{"negative allowed", "delta", `{"n":-1}`, "", "", []string{"/usr/bin/seq", "--", "-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeRun{}
			h := start(t, "", fake, mfile("fs.json", safetyModule))
			h.inject(request("picontrol/run/fs/"+tc.cmd, tc.payload, "c"))
			f := final(t, h.exchange("c"))
			h.bus.Close()
			if tc.err == "" {
				if f.Status != contract.StatusDone || fake.count() != 1 {
					t.Fatalf("final %+v, %d runs", f, fake.count())
				}
				if diff := cmp.Diff(tc.argv, fake.specs[0].Args); diff != "" {
					t.Errorf("argv (-want +got):\n%s", diff)
				}
				return
			}
			if f.Status != contract.StatusRejected || f.Parameter != tc.param || !strings.Contains(f.Error, tc.err) {
				t.Errorf("final %+v; want rejected, parameter %q, error containing %q", f, tc.param, tc.err)
			}
			if n := fake.count(); n != 0 {
				t.Errorf("a refused request reached exec %d times", n)
			}
		})
	}
}

func TestPatternAllows(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		r       rune
		want    bool
	}{
		{`.*`, 0x202E, false},
		{`[^/]*`, 0x200B, false},
		{`\S+`, 0xFEFF, false},
		{`[a-z\x{200B}]*`, 0x200B, true},
		{`[a-z\x{200b}]*`, 0x200B, true},
		{`[a-z\x{0200B}]*`, 0x200B, true},
		{`[a-z\x{200B}]*`, 0x200C, false},
		{"[a-z\u2028]*", 0x2028, true},
		{`[\p{L}\p{Cf}]*`, 0x202E, true},
		{`[\p{L}\p{Cf}]*`, 0x2028, false},
		{`[\p{L}\p{Zl}]*`, 0x2028, true},
		{`\x{`, 0x200B, false},
	} {
		if got := patternAllows(tc.pattern, tc.r); got != tc.want {
			t.Errorf("patternAllows(%q, %U) = %v, want %v", tc.pattern, tc.r, got, tc.want)
		}
	}
}
