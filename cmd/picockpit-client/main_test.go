package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/brokertest"
)

const goodModule = `{"id":"tools","name":"Tools","commands":[{"id":"hello","name":"Hello","argv":["/bin/echo","hello"],"user":"nobody"}]}`
const badModule = `{"id":"broken","name":"Broken","commands":[{"id":"x","name":"X","argv":["/bin/true"],"usr":"nobody"}]}`

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, body := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// cliRun runs the command line with env as its environment and stdin as
// its input (nil: not a terminal, empty).
func cliRun(t *testing.T, env []string, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	code = (&cli{stdin: stdin, stdout: &out, stderr: &errb, environ: env}).main(args)
	return code, out.String(), errb.String()
}

func TestCheck(t *testing.T) {
	const cfg = "picockpit-client.config.json"
	const pc = "apps/com.picockpit/picontrol/modules/"
	const gp = "apps/com.picockpit/gpio/modules/"
	dev := `{"device":{"id":"x"}}`
	for _, tc := range []struct {
		name     string
		files    map[string]string
		env      []string
		args     []string // more arguments
		wantCode int
		want     []string // in stdout or stderr
		dontWant []string
	}{
		{name: "ok", files: map[string]string{cfg: dev, pc + "tools.json": goodModule},
			want: []string{"ok:", "device x", pc + "tools.json\n", `command tools/hello "Hello" (as nobody)`}},
		{name: "misspelled key", files: map[string]string{cfg: `{"device":{"id":"x"},"broker":{"pasword":"s"}}`},
			wantCode: 1, want: []string{cfg, "broker.pasword", `did you mean "broker.password"`}},
		{name: "broken module file", files: map[string]string{cfg: dev, pc + "tools.json": goodModule, pc + "broken.json": badModule},
			wantCode: 1, want: []string{"broken.json", "usr", "1 problem(s)", "command tools/hello"}},
		{name: "unknown app directory", files: map[string]string{cfg: dev, "apps/com.picockpit/picontol/modules/a.json": goodModule},
			wantCode: 1, want: []string{"picontol", "no module kind"}},
		{name: "bad keepalive and bad log level", files: map[string]string{cfg: `{"device":{"id":"x"},"broker":{"keepalive":"0s"},"log":{"level":"loud"}}`},
			wantCode: 1, want: []string{cfg + ": broker.keepalive: 0s out of range", cfg + `: log.level: "loud" is not one of`, "2 problem(s)"}},
		{name: "two misspelled keys", files: map[string]string{cfg: `{"device":{"id":"x"},"brokr":{},"topic":{}}`},
			wantCode: 1, want: []string{`brokr: unknown key (did you mean "broker"?)`, `topic: unknown key (did you mean "topics"?)`, "2 problem(s)"}},
		{name: "string argv and confirm yes", files: map[string]string{cfg: dev,
			pc + "m.json": `{"id":"m","name":"M","commands":[{"id":"c","name":"C","argv":"/bin/true","confirm":"yes"}]}`},
			wantCode: 1, want: []string{`m.json: commands[0].argv: want an array, got the string "/bin/true"`,
				`m.json: commands[0].confirm: want true or false, got the string "yes"`, "2 problem(s)"}},
		{name: "pin with bcm 99 and mode outptu", files: map[string]string{cfg: dev, gp + "p.json": `{"pins":[{"bcm":99,"mode":"outptu"}]}`},
			wantCode: 1, want: []string{"p.json: pins[0].bcm: 99 is outside 0..57", `p.json: pins[0].mode: "outptu" is not one of`, "2 problem(s)"}},
		{name: "syntax error in the main config", files: map[string]string{cfg: "{\n  \"device\": {\"id\": \"x\"},\n  \"log\": {\"level\": \"info\",}\n}"},
			wantCode: 1, want: []string{cfg + ": invalid JSON at line 3, column 27"}},
		{name: "syntax error in a module file", files: map[string]string{cfg: dev, pc + "m.json": "{\n \"id\": \"m\",,\n}"},
			wantCode: 1, want: []string{"m.json: invalid JSON at line 2, column 12"}},
		{name: "no Go type names", files: map[string]string{cfg: `{"device":{"id":"x"},"topics":{"prefix":5}}`},
			wantCode: 1, want: []string{cfg + ": topics.prefix: want a string, got the number 5"}, dontWant: []string{"float64", "unconvertible"}},
		{name: "duration as a bare number, main config", files: map[string]string{cfg: `{"device":{"id":"x"},"broker":{"keepalive":30}}`},
			wantCode: 1, want: []string{`broker.keepalive: want a duration string such as "30s", got the number 30 (write "30s" for seconds)`}},
		{name: "duration as a bare number, picontrol", files: map[string]string{cfg: `{"device":{"id":"x"},"picontrol":{"kill_grace":5}}`},
			wantCode: 1, want: []string{`picontrol.kill_grace: want a duration string such as "30s", got the number 5 (write "5s" for seconds)`}},
		{name: "duration as a bare number, gpio", files: map[string]string{cfg: dev, gp + "p.json": `{"pins":[{"bcm":17,"mode":"input","debounce":20}]}`},
			wantCode: 1, want: []string{`p.json: pins[0].debounce: want a duration string such as "30s", got the number 20 (write "20s" for seconds)`}},
		{name: "duration as a bare number, stats", files: map[string]string{cfg: `{"device":{"id":"x"},"stats":{"interval":5}}`},
			wantCode: 1, want: []string{`stats.interval: want a duration string such as "30s", got the number 5 (write "5s" for seconds)`}},
		{name: "misspelled field in a module file", files: map[string]string{cfg: dev, pc + "m.json": `{"id":"m","name":"M","commands":[{"id":"c","name":"C","argv":["/bin/true"],"usr":"nobody","timout":"5s"}]}`},
			wantCode: 1, want: []string{`commands[0].usr: unknown field (did you mean "user"?)`, `commands[0].timout: unknown field (did you mean "timeout"?)`, "2 problem(s)"}},
		{name: "misspelled module key and a bad command", files: map[string]string{cfg: dev, pc + "m.json": `{"id":"m","nmae":"M","commands":[{"id":"c","name":"C","argv":["true"],"user":"nobody"}]}`},
			wantCode: 1, want: []string{`m.json: nmae: unknown field (did you mean "name"?)`, `m.json: commands[0].argv[0]: program "true" is not an absolute path`}},
		{name: "misspelled gpio key and a bad pin", files: map[string]string{cfg: `{"device":{"id":"x"},"gpio":{"backend":"fake","pinz":[],"pins":[{"bcm":17,"mode":"outptu"}]}}`},
			wantCode: 1, want: []string{`gpio.pinz: unknown field (did you mean "pins"?)`, `gpio.pins[0].mode: "outptu" is not one of`, "2 problem(s)"}},
		{name: "bad value from the environment", files: map[string]string{cfg: dev}, env: []string{"PICOCKPIT_LOG_LEVEL=loud"},
			wantCode: 1, want: []string{`environment variable PICOCKPIT_LOG_LEVEL: log.level: "loud" is not one of`}, dontWant: []string{cfg + ": log.level"}},
		{name: "bad value from --set", files: map[string]string{cfg: dev}, args: []string{"--set", "broker.keepalive=0s"},
			wantCode: 1, want: []string{"--set broker.keepalive: broker.keepalive: 0s out of range"}},
		{name: "secret on the command line", files: map[string]string{cfg: dev}, args: []string{"--set", "broker.password=hunter2"},
			wantCode: 1, want: []string{"--set broker.password: refused", "broker.password_file", "PICOCKPIT_BROKER_PASSWORD"}, dontWant: []string{"hunter2"}},
		{name: "module file in the wrong place", files: map[string]string{cfg: dev, "apps/com.picockpit/picontrol/tools.json": goodModule},
			want: []string{"picontrol:\n  no module files\n", "ok:"}, dontWant: []string{"tools.json", "tools/hello"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			code, out, errOut := cliRun(t, tc.env, nil, append([]string{"check", "--config-dir", dir}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.wantCode, out, errOut)
			}
			text := out + errOut
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("output does not mention %q:\n%s", w, text)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(text, w) {
					t.Errorf("output mentions %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestCheckMissingConfigDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "no-such-dir")
	code, out, errOut := cliRun(t, nil, nil, "check", "--config-dir", dir)
	if code != 1 || errOut != "error: "+dir+": the config directory does not exist\n" || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"run", "--no-such-flag"}, {"check", "extra"}, {"check", "--yes"},
		{"run-command", "system"}, {"run-command", "m", "c", "novalue"}, {"help", "frobnicate"}, {"version", "x"}} {
		code, _, errOut := cliRun(t, nil, nil, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if errOut == "" {
			t.Errorf("%v: no message on stderr", args)
		}
	}
}

// TestSubcommandHelp: every subcommand has its own --help, with its own
// flags and no others, also after its arguments.
func TestSubcommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		want     []string
		dontWant []string
	}{
		{[]string{"run", "--help"}, []string{"usage: picockpit-client run [flags]\n", "--config-dir DIR", "--state-dir DIR", "--log-level", "--set key=value"}, []string{"--yes", "--frontend-user"}},
		{[]string{"check", "-h"}, []string{"usage: picockpit-client check [flags]\n", "--config-dir DIR", "--set key=value"}, []string{"--state-dir", "--log-level", "--yes", "--frontend-user"}},
		{[]string{"run-command", "--help"}, []string{"usage: picockpit-client run-command [flags] MODULE COMMAND [name=value ...]", "--yes", "--config-dir"}, []string{"--log-level", "--frontend-user"}},
		{[]string{"run-command", "system", "reboot", "--help"}, []string{"usage: picockpit-client run-command", "--yes"}, nil},
		{[]string{"acl", "--help"}, []string{"--frontend-user user", "--pattern"}, []string{"--yes", "--state-dir", "--log-level"}},
		{[]string{"version", "--help"}, []string{"usage: picockpit-client version\n"}, []string{"flags:"}},
		{[]string{"help", "check"}, []string{"usage: picockpit-client check [flags]\n"}, []string{"--yes"}},
		{[]string{"help"}, []string{"run-command", "check", "acl", "version", "--help shows"}, nil},
		{[]string{"--help"}, []string{"commands:"}, nil},
	} {
		code, out, errOut := cliRun(t, nil, nil, tc.args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: help lacks %q:\n%s", tc.args, w, out)
			}
		}
		for _, w := range tc.dontWant {
			if strings.Contains(out, w) {
				t.Errorf("%v: help shows %q:\n%s", tc.args, w, out)
			}
		}
	}
}

// confirmModule has a command marked confirm that leaves a mark file.
func confirmModule(mark string) string {
	return `{"id":"system","name":"System","commands":[{"id":"reboot","name":"Reboot","confirm":true,"user":"root","argv":["/usr/bin/touch","` + mark + `"]},` +
		`{"id":"hello","name":"Hello","user":"root","argv":["/bin/echo","hello"]}]}`
}

// TestRunCommandFlagsAfterArguments: flags may follow MODULE COMMAND.
func TestRunCommandFlagsAfterArguments(t *testing.T) {
	requireRoot(t)
	dir := writeTree(t, map[string]string{"picockpit-client.config.json": `{"device":{"id":"x"}}`,
		"apps/com.picockpit/picontrol/modules/system.json": confirmModule("/nonexistent/x")})
	code, out, errOut := cliRun(t, nil, nil, "run-command", "system", "hello", "--config-dir", dir, "--state-dir", t.TempDir())
	if code != 0 || out != "hello\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = cliRun(t, nil, nil, "run-command", "system", "nope", "--config-dir", dir)
	if code != 1 || !strings.Contains(errOut, `unknown command "nope" in module "system"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut)
	}
}

// TestRunCommandConfirm: a command marked confirm asks on a terminal and
// needs --yes otherwise; it never runs unconfirmed.
func TestRunCommandConfirm(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name     string
		tty      string // typed on a terminal; "" for no terminal
		yes      bool
		wantCode int
		wantRan  bool
		want     string
	}{
		{name: "no terminal, no --yes", wantCode: 1, want: "system/reboot (Reboot) asks for confirmation: run it on a terminal to be asked, or add --yes"},
		{name: "no terminal, --yes", yes: true, wantRan: true},
		{name: "terminal, answered y", tty: "y\n", wantRan: true, want: "Reboot (system/reboot) asks for confirmation. Run it now? [y/N]"},
		{name: "terminal, answered n", tty: "n\n", wantCode: 1, want: "not confirmed"},
		{name: "terminal, just enter", tty: "\n", wantCode: 1, want: "not confirmed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "ran")
			dir := writeTree(t, map[string]string{"picockpit-client.config.json": `{"device":{"id":"x"}}`,
				"apps/com.picockpit/picontrol/modules/system.json": confirmModule(mark)})
			var stdin io.Reader
			if tc.tty != "" {
				stdin = pty(t, tc.tty)
			}
			args := []string{"run-command", "--config-dir", dir, "--state-dir", t.TempDir(), "system", "reboot"}
			if tc.yes {
				args = append(args, "--yes")
			}
			code, _, errOut := cliRun(t, nil, stdin, args...)
			_, err := os.Stat(mark)
			if code != tc.wantCode || (err == nil) != tc.wantRan || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d (want %d), ran %v (want %v), stderr %q (want %q)", code, tc.wantCode, err == nil, tc.wantRan, errOut, tc.want)
			}
		})
	}
}

// pty returns the terminal end of a new pseudo-terminal on which typed has
// been typed.
func pty(t *testing.T, typed string) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := m.WriteString(typed); err != nil {
		t.Fatal(err)
	}
	return s
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs a command through the privilege drop: needs root (CI runs tests as root)")
	}
}

// TestVersion: one version string for go build, make build and the
// package: debian/changelog's upstream version.
func TestVersion(t *testing.T) {
	cl, err := os.ReadFile("../../debian/changelog")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^picockpit-client \(([^)]+)-([^-)]+)\)`).FindSubmatch(cl)
	if m == nil {
		t.Fatalf("cannot read the changelog's version: %.80s", cl)
	}
	full, upstream := string(m[1])+"-"+string(m[2]), string(m[1])
	if releaseVersion != upstream {
		t.Errorf("releaseVersion %q, debian/changelog has %q", releaseVersion, upstream)
	}
	code, out, _ := cliRun(t, nil, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "picockpit-client "+upstream+"\n") {
		t.Errorf("version: %d %q", code, out)
	}
	// make build and make deb pass that version; the package gets the
	// changelog's version, with no automatic changelog entry.
	mk, err := exec.Command("make", "-s", "-C", "../..", "-n", "build", "deb").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n: %v\n%s", err, mk)
	}
	if !strings.Contains(string(mk), "-X main.versionOverride="+upstream+" ") || !strings.Contains(string(mk), "VERSION="+upstream+" ") {
		t.Errorf("make passes another version than %s:\n%s", upstream, mk)
	}
	sh := exec.Command("bash", "-c", `. debian/lib.sh && VERSION=$1 compute_versions && echo "$UPSTREAM_VERSION $DEB_VERSION"`, "sh", upstream)
	sh.Dir = "../.."
	got, err := sh.CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != upstream+" "+full {
		t.Errorf("debian/lib.sh compute_versions with VERSION=%s: %q, %v; want %q", upstream, got, err, upstream+" "+full)
	}
}

// TestReadmeGoVersion: the README names the Go release go.mod asks for.
func TestReadmeGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	readme, err := os.ReadFile("../../README.md")
	if err != nil || want == nil {
		t.Fatal(err, want)
	}
	found := regexp.MustCompile(`Go \(?(\d+\.\d+)`).FindAllSubmatch(readme, -1)
	if len(found) == 0 {
		t.Fatal("the README names no Go version")
	}
	for _, f := range found {
		if string(f[1]) != string(want[1]) {
			t.Errorf("README says Go %s, go.mod says %s", f[1], want[1])
		}
	}
}

// TestRunStartsDespiteBrokenModule: the same broken file that check
// rejects does not stop run: it is reported on events and the good module
// still serves.
func TestRunStartsDespiteBrokenModule(t *testing.T) {
	b := brokertest.Mosquitto(t, brokertest.Options{})
	c := brokertest.Connect(t, b.URL, brokertest.ClientOptions{})
	const pc = "apps/com.picockpit/picontrol/modules/"
	o := agenttest.Options{BrokerURL: b.URL, DeviceID: "runbroken", Files: map[string]string{pc + "tools.json": goodModule, pc + "broken.json": badModule}}
	c.Subscribe("picockpit/runbroken/#")
	p := agenttest.StartProcess(t, o)
	c.WaitFor(10*time.Second, "online", brokertest.Topic(p.Root.Topic("status"), "online"))
	ev := c.WaitFor(10*time.Second, "problem event", func(m brokertest.Message) bool {
		return m.Topic == p.Root.Topic("events") && strings.Contains(string(m.Payload), "broken.json")
	})
	if !strings.Contains(string(ev.Payload), "usr") {
		t.Errorf("event does not name the field: %s", ev.Payload)
	}
	cat := c.WaitFor(10*time.Second, "catalogue", brokertest.Topic(p.Root.Topic("picontrol/commands")))
	if !strings.Contains(string(cat.Payload), `"hello"`) || strings.Contains(string(cat.Payload), "broken") {
		t.Errorf("catalogue = %s", cat.Payload)
	}
	if !strings.Contains(p.Logs.String(), "broken.json") {
		t.Error("the problem is not in the log")
	}
}

func TestACL(t *testing.T) {
	dir := writeTree(t, map[string]string{"picockpit-client.config.json": `{"device":{"id":"kitchen"},"broker":{"username":"kpi"},"topics":{"prefix":"home/pis"}}`})
	var out, errb bytes.Buffer
	if code := realMain([]string{"acl", "--config-dir", dir, "--frontend-user", "nodered"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"user kpi\n", "topic readwrite home/pis/kitchen/#\n",
		"user nodered\n", "topic read home/pis/#\n", "topic write home/pis/+/picontrol/run/+/+\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("acl output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "topic write home/pis/+/status") || strings.Contains(out.String(), "topic write home/pis/#") {
		t.Errorf("frontend may write device topics:\n%s", out.String())
	}
}
