package picontrol

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/picockpit/picockpit-client/modules"
)

func testEnv() modules.Env { return modules.Env{Log: slog.New(slog.DiscardHandler), HostRoot: "/"} }

func mfile(path, data string) modules.File { return modules.File{Path: path, Data: []byte(data)} }

// oneCommand wraps a command object in a module file.
func oneCommand(cmd string) string {
	return `{"id":"m","name":"M","commands":[` + cmd + `]}`
}

func TestDecodeModuleProblems(t *testing.T) {
	const ok = `{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody"}`
	for _, tc := range []struct {
		name    string
		section string
		data    string
		field   string
		err     string // substring of the error
	}{
		{"syntax", "", `{"id":"m",`, "", "invalid JSON"},
		{"unknown top field", "", `{"id":"m","name":"M","commands":[` + ok + `],"colour":1}`, "colour", "unknown field"},
		{"no commands", "", `{"id":"m","name":"M","commands":[]}`, "commands", "at least one"},
		{"bad module id", "", `{"id":"M/1","name":"M","commands":[` + ok + `]}`, "id", "not a valid id"},
		{"missing name", "", `{"id":"m","commands":[` + ok + `]}`, "name", "must not be empty"},
		{"unknown command field", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","colour":1}`), "commands[0].colour", "unknown field"},
		{"type mismatch", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","confirm":"yes"}`), "commands[0].confirm", `want true or false, got the string "yes"`},
		{"second command", "", `{"id":"m","name":"M","commands":[` + ok + `,{"id":"d","name":"D","argv":["/bin/true"],"user":"no-such-user-xyz"}]}`, "commands[1].user", `unknown user "no-such-user-xyz"`},
		{"unknown default user", `{"default_user":"no-such-user-xyz"}`, oneCommand(`{"id":"c","name":"C","argv":["/bin/true"]}`), "commands[0].user", "picontrol.default_user"},
		{"duplicate command", "", `{"id":"m","name":"M","commands":[` + ok + `,` + ok + `]}`, "commands[1].id", "duplicate"},
		{"bad command id", "", oneCommand(`{"id":"Run Me","name":"C","argv":["/bin/true"],"user":"nobody"}`), "commands[0].id", "not a valid id"},
		{"relative argv", "", oneCommand(`{"id":"c","name":"C","argv":["true"],"user":"nobody"}`), "commands[0].argv[0]", "not an absolute path"},
		{"empty argv", "", oneCommand(`{"id":"c","name":"C","argv":[],"user":"nobody"}`), "commands[0].argv", "empty"},
		{"no program", "", oneCommand(`{"id":"c","name":"C","user":"nobody"}`), "commands[0].argv", "missing"},
		{"argv and command", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"command":"/bin/true","user":"nobody"}`), "commands[0].command", "not both"},
		{"relative command", "", oneCommand(`{"id":"c","name":"C","command":"echo hi","user":"nobody"}`), "commands[0].command", "not an absolute path"},
		{"command with shell syntax", "", oneCommand(`{"id":"c","name":"C","command":"/bin/echo hi; /bin/rm x","user":"nobody"}`), "commands[0].command", "shell syntax"},
		{"unterminated quote", "", oneCommand(`{"id":"c","name":"C","command":"/bin/echo 'hi","user":"nobody"}`), "commands[0].command", "unterminated"},
		{"shell with argv", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"shell":true,"user":"nobody"}`), "commands[0].shell", "needs command"},
		{"shell placeholder", "", oneCommand(`{"id":"c","name":"C","command":"echo {n}","shell":true,"user":"nobody","parameters":[{"name":"n","type":"integer","env":"PICONTROL_N"}]}`), "commands[0].command", "through env"},
		{"negative timeout", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","timeout":"-5s"}`), "commands[0].timeout", "negative"},
		{"zero timeout", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","timeout":"0s"}`), "commands[0].timeout", "out of range"},
		{"number timeout", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","timeout":30}`), "commands[0].timeout", `got the number 30 (write "30s" for seconds)`},
		{"huge timeout", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","timeout":"48h"}`), "commands[0].timeout", "out of range"},
		{"garbage timeout", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","timeout":"soon"}`), "commands[0].timeout", `"soon"`},
		{"timeout type", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","timeout":true}`), "commands[0].timeout", "want a duration string"},
		{"relative workdir", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","workdir":"tmp"}`), "commands[0].workdir", "not an absolute path"},
		{"bad concurrency", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","concurrency":"maybe"}`), "commands[0].concurrency", "maybe"},
		{"unknown group", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","group":"no-such-group-xyz"}`), "commands[0].group", "unknown group"},
		{"unknown groups", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","groups":["root","no-such-group-xyz"]}`), "commands[0].groups[1]", "unknown group"},
		{"unknown capability", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"root","capabilities":["CAP_FLY"]}`), "commands[0].capabilities[0]", "unknown capability"},
		{"bad env name", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","env":{"1X":"y"}}`), "commands[0].env.1X", "not a valid"},
		{"partial placeholder", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","--name={n}"],"user":"nobody","parameters":[{"name":"n","type":"integer"}]}`), "commands[0].argv[1]", "whole argv element"},
		{"unknown placeholder", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{nope}"],"user":"nobody"}`), "commands[0].argv[1]", "names no parameter"},
		{"placeholder program", "", oneCommand(`{"id":"c","name":"C","argv":["{n}"],"user":"nobody","parameters":[{"name":"n","type":"integer"}]}`), "commands[0].argv[0]", "cannot be a parameter"},
		{"unused parameter", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","parameters":[{"name":"n","type":"integer"}]}`), "commands[0].parameters", "used nowhere"},
		{"free string", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{s}"],"user":"nobody","parameters":[{"name":"s","type":"string"}]}`), "commands[0].parameters[0].pattern", "pattern or an enum"},
		{"bad pattern", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{s}"],"user":"nobody","parameters":[{"name":"s","type":"string","pattern":"("}]}`), "commands[0].parameters[0].pattern", "missing closing"},
		{"bad type", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{s}"],"user":"nobody","parameters":[{"name":"s","type":"float"}]}`), "commands[0].parameters[0].type", "float"},
		{"min on string", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{s}"],"user":"nobody","parameters":[{"name":"s","type":"string","enum":["a"],"min":1}]}`), "commands[0].parameters[0].min", "only for integer"},
		{"min above max", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{n}"],"user":"nobody","parameters":[{"name":"n","type":"integer","min":5,"max":1}]}`), "commands[0].parameters[0].min", "greater than max"},
		{"reserved env", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","parameters":[{"name":"p","type":"string","enum":["x"],"env":"LD_PRELOAD"}]}`), "commands[0].parameters[0].env", "may not be set"},
		{"env clash", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody","env":{"PICONTROL_P":"1"},"parameters":[{"name":"p","type":"boolean","env":"PICONTROL_P"}]}`), "commands[0].parameters[0].env", "also set in env"},
		{"duplicate parameter", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{p}"],"user":"nobody","parameters":[{"name":"p","type":"boolean"},{"name":"p","type":"boolean"}]}`), "commands[0].parameters[1].name", "duplicate"},
		{"unknown parameter field", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{p}"],"user":"nobody","parameters":[{"name":"p","type":"boolean","regex":"x"}]}`), "commands[0].parameters[0].regex", "unknown field"},
		{"default fails pattern", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{s}"],"user":"nobody","parameters":[{"name":"s","type":"string","pattern":"[a-z]+","default":"A1"}]}`), "commands[0].parameters[0].default", "does not match"},
		{"default wrong type", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{n}"],"user":"nobody","parameters":[{"name":"n","type":"integer","default":"3"}]}`), "commands[0].parameters[0].default", "want a JSON integer"},
		{"required with default", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{n}"],"user":"nobody","parameters":[{"name":"n","type":"integer","required":true,"default":3}]}`), "commands[0].parameters[0].default", "required"},
		{"enum with control char", "", oneCommand(`{"id":"c","name":"C","argv":["/bin/echo","{s}"],"user":"nobody","parameters":[{"name":"s","type":"string","enum":["a\nb"]}]}`), "commands[0].parameters[0].enum[0]", "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, probs := load(testEnv(), []byte(tc.section), "/etc/picockpit-client/config.json",
				[]modules.File{mfile("/etc/x/modules/bad.json", tc.data)})
			if len(probs) == 0 {
				t.Fatalf("no problem reported; commands %v", m.Commands())
			}
			var found bool
			for _, p := range probs {
				if p.File == "/etc/x/modules/bad.json" && p.Field == tc.field && strings.Contains(p.Err.Error(), tc.err) {
					found = true
				}
			}
			if !found {
				t.Errorf("want a problem in %s at %q containing %q; got:", "bad.json", tc.field, tc.err)
				for _, p := range probs {
					t.Errorf("  file %q field %q: %v", p.File, p.Field, p.Err)
				}
			}
			if len(m.Commands()) != 0 {
				t.Errorf("the bad file still loaded commands %v", m.Commands())
			}
		})
	}
}

func TestDecodeConfigProblems(t *testing.T) {
	for _, tc := range []struct{ section, field, err string }{
		{`{"max_parallel":0}`, "picontrol.max_parallel", "out of range"},
		{`{"max_paralel":3}`, "picontrol.max_paralel", "unknown field"},
		{`{"default_timeout":"forever"}`, "picontrol.default_timeout", "forever"},
		{`{"kill_grace":"2h"}`, "picontrol.kill_grace", "out of range"},
		{`{"kill_grace":"40s"}`, "picontrol.kill_grace", "before the service watchdog"},
		{`{"output_limit":-1}`, "picontrol.output_limit", "out of range"},
		{`{"reply_grace":"2m"}`, "picontrol.reply_grace", "out of range"},
		{`{"reply_grace":"soon"}`, "picontrol.reply_grace", "soon"},
		{`{"default_user":""}`, "picontrol.default_user", "empty"},
		{`[]`, "picontrol", "must be a JSON object"},
	} {
		_, probs := decodeConfig([]byte(tc.section), "/etc/picockpit-client/config.json")
		if len(probs) != 1 || probs[0].Field != tc.field || !strings.Contains(probs[0].Err.Error(), tc.err) ||
			probs[0].File != "/etc/picockpit-client/config.json" {
			t.Errorf("decodeConfig(%s) = %v, want one problem at %s containing %q", tc.section, probs, tc.field, tc.err)
		}
	}
	cfg, probs := decodeConfig([]byte(`{"default_user":"nobody","max_parallel":2,"default_timeout":"90s","kill_grace":"1s"}`), "c.json")
	if len(probs) != 0 {
		t.Fatal(probs)
	}
	want := defaultConfig()
	if want.ReplyGrace != Duration(200e6) {
		t.Errorf("default reply_grace %v, want 200ms", want.ReplyGrace)
	}
	want.DefaultUser, want.MaxParallel, want.DefaultTimeout, want.KillGrace = "nobody", 2, Duration(90e9), Duration(1e9)
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestBadFileSkippedOthersLoad(t *testing.T) {
	good := `{"id":"good","name":"G","commands":[{"id":"c","name":"C","argv":["/bin/true"],"user":"nobody"}]}`
	dup := `{"id":"good","name":"G2","commands":[{"id":"d","name":"D","argv":["/bin/true"],"user":"nobody"}]}`
	m, probs := load(testEnv(), nil, "", []modules.File{
		mfile("/a/1-good.json", good), mfile("/a/2-bad.json", `{`), mfile("/a/3-dup.json", dup),
	})
	if diff := cmp.Diff([]string{"good/c"}, m.Commands()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	var files []string
	for _, p := range probs {
		files = append(files, p.File+":"+p.Field)
	}
	if diff := cmp.Diff([]string{"/a/2-bad.json:", "/a/3-dup.json:id"}, files); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestShippedDefaults(t *testing.T) {
	dir := filepath.Join("..", "..", "etc", "picockpit-client", "apps", "com.picockpit", "picontrol", "modules")
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no shipped modules in %s: %v", dir, err)
	}
	files := readFiles(t, paths)
	m, probs := load(testEnv(), nil, "", files)
	if len(probs) > 0 {
		t.Fatalf("shipped defaults have problems: %v", probs)
	}
	if diff := cmp.Diff([]string{"system/poweroff", "system/reboot", "system/update-picockpit-client"}, m.Commands()); diff != "" {
		t.Errorf("shipped commands (-want +got):\n%s", diff)
	}
	for _, id := range m.Commands() {
		c := m.commands[id]
		if c.User.UID != 0 {
			t.Errorf("%s runs as uid %d, want root", id, c.User.UID)
		}
		if (id == "system/poweroff" || id == "system/reboot") != c.Confirm {
			t.Errorf("%s: confirm = %v", id, c.Confirm)
		}
	}
	up := m.commands["system/update-picockpit-client"]
	if !strings.Contains(strings.Join(up.Env, " "), "DEBIAN_FRONTEND=noninteractive") || up.Timeout < 5*60e9 {
		t.Errorf("update command: env %v timeout %v", up.Env, up.Timeout)
	}
}

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{`/bin/echo hello world`, []string{"/bin/echo", "hello", "world"}, ""},
		{`/bin/echo 'a b' "c d" e\ f`, []string{"/bin/echo", "a b", "c d", "e f"}, ""},
		{`/bin/echo '$(id)' "\$HOME" ''`, []string{"/bin/echo", "$(id)", "$HOME", ""}, ""},
		{"/bin/echo a\\\nb", []string{"/bin/echo", "ab"}, ""},
		{`/bin/echo a#b ~x`, nil, "~"},
		{`/bin/echo "$HOME"`, nil, "double quotes"},
		{`/bin/echo $(id)`, nil, "$"},
		{`/bin/echo a | /bin/cat`, nil, "|"},
		{`/bin/echo a > /tmp/x`, nil, ">"},
		{`/bin/ls *`, nil, "*"},
		{`/bin/echo # comment`, nil, "#"},
		{`/bin/echo 'open`, nil, "unterminated single"},
		{`/bin/echo "open`, nil, "unterminated double"},
		{`/bin/echo \`, nil, "backslash"},
		{`   `, nil, "empty"},
	} {
		got, err := splitCommand(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("splitCommand(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("splitCommand(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("splitCommand(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestPrivilegeDefaults(t *testing.T) {
	mod := `{"id":"p","name":"P","commands":[
	 {"id":"plain","name":"x","argv":["/bin/true"],"user":"nobody"},
	 {"id":"sudo","name":"x","argv":["/usr/bin/sudo","-n","/bin/true"],"user":"nobody","no_new_privileges":false},
	 {"id":"capped","name":"x","argv":["/bin/true"],"user":"nobody","no_new_privileges":false,"capabilities":["CAP_SETUID","setgid"]},
	 {"id":"root","name":"x","argv":["/bin/true"],"user":"root"},
	 {"id":"rootnet","name":"x","argv":["/bin/true"],"user":"0","capabilities":["CAP_NET_ADMIN"]},
	 {"id":"rootnone","name":"x","argv":["/bin/true"],"user":"root","capabilities":[]}]}`
	m, probs := load(testEnv(), nil, "", []modules.File{mfile("p.json", mod)})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	type priv struct {
		NNP, Limit bool
		Caps       []string
	}
	got := map[string]priv{}
	for id, c := range m.commands {
		p := priv{NNP: c.NoNewPrivs, Limit: c.LimitCaps}
		for _, cp := range c.Caps {
			p.Caps = append(p.Caps, cp.String())
		}
		got[id] = p
	}
	want := map[string]priv{
		"p/plain":    {NNP: true, Limit: true},
		"p/sudo":     {NNP: false, Limit: false},
		"p/capped":   {NNP: false, Limit: true, Caps: []string{"CAP_SETUID", "CAP_SETGID"}},
		"p/root":     {NNP: true, Limit: false},
		"p/rootnet":  {NNP: true, Limit: true, Caps: []string{"CAP_NET_ADMIN"}},
		"p/rootnone": {NNP: true, Limit: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("privileges (-want +got):\n%s", diff)
	}
}

// readFiles reads module files for Load.
func readFiles(t *testing.T, paths []string) []modules.File {
	t.Helper()
	var files []modules.File
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, modules.File{Path: p, Data: b})
	}
	return files
}
