package pidoctor

import (
	"encoding/json"
	"fmt"
	"os/user"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/modules"
)

// As in the daemon: the main goroutine keeps the main thread, so command
// threads can always be thrown away.
func init() { runtime.LockOSThread() }

// decodeOne decodes a module file holding the one check given and fails the
// test on a problem.
func decodeOne(t *testing.T, checkJSON string) *check {
	t.Helper()
	c, probs := tryDecode(checkJSON)
	if len(probs) > 0 {
		t.Fatalf("decode %s: %v", checkJSON, probs)
	}
	return c
}

func tryDecode(checkJSON string) (*check, []modules.Problem) {
	l := &loader{cfg: defaultConfig()}
	data := fmt.Sprintf(`{"id":"m","name":"M","checks":[%s]}`, checkJSON)
	m, probs := l.decodeModule(modules.File{Path: "m.json", Data: []byte(data)})
	if m == nil || len(m.Checks) == 0 {
		return nil, probs
	}
	return m.Checks[0], probs
}

// currentUser names the user running the tests, so that external checks run
// without a privilege change when the tests do not run as root.
func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func exited(code int, stdout, stderr string) observation {
	return observation{hasExit: true, exitCode: code, stdout: stdout, stderr: stderr}
}

// TestVerdictRules judges fixture output with each rule kind.
func TestVerdictRules(t *testing.T) {
	const exitRule = `{"id":"c","name":"Exit","argv":["/bin/true"],
		"rule":{"exit_codes":{"0":"ok","1":"warn","2":"fail","3":"error"}},
		"message":{"ok":"fine","warn":"code {exit_code}","fail":"broken: {output}"},
		"remedy":{"fail":"fix it","error":"install it"}}`
	const matchRule = `{"id":"c","name":"Match","argv":["/bin/true"],
		"rule":{"match":[{"pattern":"FAILED: (\\w+)","verdict":"fail"},{"pattern":"degraded","verdict":"warn"}],"default":"ok","ok_exit_codes":[0,1]},
		"message":"{name}: {value}","remedy":"look at {value}"}`
	const numberRule = `{"id":"c","name":"Temp","argv":["/bin/true"],
		"rule":{"number":{"pattern":"temp=([0-9.]+)'C","warn_above":70,"fail_above":80}},
		"message":"SoC at {value} °C","remedy":"cool it"}`
	const belowRule = `{"id":"c","name":"Signal","argv":["/bin/true"],
		"rule":{"number":{"warn_below":-70,"fail_below":-80},"missing":"ok"},"message":{"ok":"signal {value} dBm","warn":"weak {value} dBm","fail":"no link {value}"}}`
	const defaultRule = `{"id":"c","name":"Plain","argv":["/bin/true"]}`
	for _, tc := range []struct {
		name, check string
		obs         observation
		verdict     string
		value       any
		message     string
		remedy      string
	}{
		{"exit 0", exitRule, exited(0, "", ""), "ok", 0, "fine", ""},
		{"exit 1", exitRule, exited(1, "", ""), "warn", 1, "code 1", ""},
		{"exit 2", exitRule, exited(2, "\n  disk gone  \nmore", ""), "fail", 2, "broken: disk gone", "fix it"},
		{"exit 3 mapped to error", exitRule, exited(3, "", ""), "error", 3, "could not check: exit code 3", "install it"},
		{"unlisted exit fails", exitRule, exited(9, "", ""), "fail", 9, "broken: ", "fix it"},
		{"127 unlisted is error", exitRule, exited(127, "", "sh: vcgencmd: not found"), "error", nil,
			"could not check: exit code 127 (command not found or not executable): sh: vcgencmd: not found", "install it"},
		{"could not start", exitRule, observation{err: "could not start the command: no such file"}, "error", nil,
			"could not check: could not start the command: no such file", "install it"},
		{"match fail with group", matchRule, exited(0, "a\nFAILED: nginx\n", ""), "fail", "nginx", "Match: nginx", "look at nginx"},
		{"match second pattern", matchRule, exited(1, "state: degraded", ""), "warn", "degraded", "Match: degraded", "look at degraded"},
		{"match none is default", matchRule, exited(0, "all good", ""), "ok", nil, "Match: ", ""},
		{"match bad exit is error", matchRule, exited(2, "FAILED: x", "boom"), "error", nil, "could not check: exit code 2: boom", ""},
		{"number ok", numberRule, exited(0, "temp=45.2'C\n", ""), "ok", 45.2, "SoC at 45.2 °C", ""},
		{"number warn", numberRule, exited(0, "temp=70.5'C\n", ""), "warn", 70.5, "SoC at 70.5 °C", "cool it"},
		{"number fail", numberRule, exited(0, "temp=85'C\n", ""), "fail", 85.0, "SoC at 85 °C", "cool it"},
		{"number at threshold is not above", numberRule, exited(0, "temp=80'C", ""), "warn", 80.0, "SoC at 80 °C", "cool it"},
		{"number missing is error", numberRule, exited(0, "no sensor", ""), "error", nil, "could not check: no number in the output", ""},
		{"below thresholds", belowRule, exited(0, "signal: -75 dBm", ""), "warn", -75.0, "weak -75 dBm", ""},
		{"below fail", belowRule, exited(0, "-81", ""), "fail", -81.0, "no link -81", ""},
		{"below ok", belowRule, exited(0, "level -50", ""), "ok", -50.0, "signal -50 dBm", ""},
		{"missing verdict", belowRule, exited(0, "Not connected.", ""), "ok", nil, "signal  dBm", ""},
		{"default rule ok", defaultRule, exited(0, "hello", ""), "ok", 0, "hello", ""},
		{"default rule fail", defaultRule, exited(1, "", ""), "fail", 1, "exit code 1", ""},
		{"builtin number", `{"id":"c","name":"T","builtin":"soc_temperature"}`, observation{value: f64(81.5), output: "SoC at 81.5 °C (cpu-thermal)"},
			"fail", 81.5, "SoC at 81.5 °C: overheating", ""},
		{"builtin error", `{"id":"c","name":"T","builtin":"soc_temperature","remedy":{"error":"not a Pi?"}}`, observation{err: "no thermal zone"},
			"error", nil, "could not check: no thermal zone", "not a Pi?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := decodeOne(t, tc.check)
			o := c.evaluate(tc.obs)
			if o.verdict != tc.verdict || fmt.Sprint(o.value) != fmt.Sprint(tc.value) || o.message != tc.message || o.remedy != tc.remedy {
				t.Errorf("got %s %v %q remedy %q; want %s %v %q remedy %q", o.verdict, o.value, o.message, o.remedy,
					tc.verdict, tc.value, tc.message, tc.remedy)
			}
		})
	}
}

// TestExternalChecksRun runs real commands through PiControl's runner: the
// output reaches the rule, a missing program and a timeout are errors, and a
// timeout does not hang.
func TestExternalChecksRun(t *testing.T) {
	me := currentUser(t)
	for _, tc := range []struct {
		name, check, verdict, message string
	}{
		{"number from output", `{"id":"c","name":"N","command":"echo 'load 3.5'","shell":true,"user":%q,"rule":{"number":{"warn_above":3}}}`, "warn", "load 3.5"},
		{"argv and exit code", `{"id":"c","name":"E","argv":["/bin/sh","-c","exit 2"],"user":%q,"rule":{"exit_codes":{"0":"ok","2":"fail"}}}`, "fail", "exit code 2"},
		{"missing program", `{"id":"c","name":"M","argv":["/nonexistent/vcgencmd"],"user":%q}`, "error", "could not check: could not start the command"},
		{"missing tool in a shell", `{"id":"c","name":"S","command":"no-such-tool-here","shell":true,"user":%q}`, "error", "could not check: exit code 127 (command not found"},
		{"timeout", `{"id":"c","name":"T","argv":["/bin/sleep","60"],"user":%q,"timeout":"300ms"}`, "error", "could not check: timed out after 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := decodeOne(t, fmt.Sprintf(tc.check, me))
			r := newRunner(1, &host{root: t.TempDir()}, time.Now)
			res := r.run(t.Context(), []*check{c})[0]
			if res.Verdict != tc.verdict || !strings.HasPrefix(res.Message, tc.message) {
				t.Errorf("got %s %q; want %s %q...", res.Verdict, res.Message, tc.verdict, tc.message)
			}
		})
	}
}

// TestUserDefaultsToRoot: an external check without user runs as root.
func TestUserDefaultsToRoot(t *testing.T) {
	c := decodeOne(t, `{"id":"c","name":"C","argv":["/bin/true"]}`)
	if u := c.probe.(*externalProbe).cmd.User(); u != "root" {
		t.Errorf("user %q, want root", u)
	}
}

func TestRender(t *testing.T) {
	got := render("{name}: {value} ({output}) {unknown}", map[string]string{"name": "N", "value": "1"})
	if got != "N: 1 () {unknown}" {
		t.Errorf("render = %q", got)
	}
	if s := firstLine("\n\n  x\x1b[31my \n"); s != "x?[31my" {
		t.Errorf("firstLine = %q", s)
	}
	long := strings.Repeat("é", 300)
	if s := firstLine(long); len(s) > outputPlaceholderSize+len("…") || !strings.HasSuffix(s, "…") {
		t.Errorf("firstLine of a long line = %d bytes", len(s))
	}
	b, _ := json.Marshal(formatNumber(12.3456))
	if string(b) != `"12.35"` {
		t.Errorf("formatNumber = %s", b)
	}
}
