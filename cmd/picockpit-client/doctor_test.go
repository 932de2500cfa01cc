package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picockpit/picockpit-client/agent/agenttest"
	"github.com/picockpit/picockpit-client/agent/contract"
)

// TestDoctor runs `picockpit-client doctor` on a fixture tree: the JSON
// report validates, the table shows worst first with remedies, and the exit
// code is 0 all ok, 1 on a warn or fail, 2 on an error.
func TestDoctor(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	healthy, err := filepath.Abs("../../modules/pidoctor/testdata/hosts/healthy")
	if err != nil {
		t.Fatal(err)
	}
	troubled, _ := filepath.Abs("../../modules/pidoctor/testdata/hosts/troubled")
	const cfgFile = "picockpit-client.config.json"
	const pd = "apps/com.picockpit/pidoctor/modules/"
	cfg := func(root string) string {
		return fmt.Sprintf(`{"device":{"id":"x"},"host":{"root":%q}}`, root)
	}
	okChecks := fmt.Sprintf(`{"id":"power","name":"Power","checks":[
	  {"id":"under-voltage","name":"Power supply","builtin":"throttling","remedy":"use the official power supply"},
	  {"id":"echo","name":"Echo","argv":["/bin/echo","7"],"user":%q,"rule":{"number":{"warn_above":10}}}]}`, me.Username)
	errCheck := fmt.Sprintf(`{"id":"tools","name":"Tools","checks":[
	  {"id":"vcgencmd","name":"vcgencmd","argv":["/nonexistent/vcgencmd","get_throttled"],"user":%q}]}`, me.Username)
	for _, tc := range []struct {
		name  string
		files map[string]string
		code  int
		want  []string // in the table
	}{
		{"all ok", map[string]string{cfgFile: cfg(healthy), pd + "power.json": okChecks}, 0,
			[]string{"OK      Power supply", "no under-voltage since boot", "2 checks", "worst: ok"}},
		{"fail", map[string]string{cfgFile: cfg(troubled), pd + "power.json": okChecks}, 1,
			[]string{"FAIL    Power supply  under-voltage now (get_throttled 0x50005)\n", "-> use the official power supply", "worst: fail"}},
		{"error", map[string]string{cfgFile: cfg(troubled), pd + "power.json": okChecks, pd + "tools.json": errCheck}, 2,
			[]string{"ERROR", "could not start the command", "worst: fail"}},
		{"broken check file", map[string]string{cfgFile: cfg(healthy), pd + "power.json": okChecks,
			pd + "bad.json": `{"id":"bad","name":"Bad","checks":[{"id":"x","name":"X","builtin":"nope"}]}`}, 2,
			[]string{"OK      Power supply"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			var out, errb bytes.Buffer
			code := realMain([]string{"doctor", "--config-dir", dir, "--state-dir", t.TempDir()}, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out.String(), errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("table does not show %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "\x1b[") {
				t.Error("colour when the output is not a terminal")
			}
			if tc.name == "broken check file" && !strings.Contains(errb.String(), "bad.json: checks[0].builtin") {
				t.Errorf("the broken file is not reported with file and field: %q", errb.String())
			}

			out.Reset()
			errb.Reset()
			code = realMain([]string{"doctor", "--json", "--config-dir", dir, "--state-dir", t.TempDir()}, &out, &errb)
			if code != tc.code {
				t.Errorf("--json: exit %d, want %d", code, tc.code)
			}
			agenttest.ValidateSchema(t, "pidoctor-report", out.Bytes())
			var rep contract.PiDoctorReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if doctorExitCode(rep) != min(tc.code, 2) && tc.name != "broken check file" {
				t.Errorf("exit code of the report %d", doctorExitCode(rep))
			}
		})
	}
}

// TestDoctorWithoutDeviceID: the checks need no device id, so a machine
// without a serial number or machine-id is still diagnosed.
func TestDoctorWithoutDeviceID(t *testing.T) {
	root := writeTree(t, map[string]string{"proc/meminfo": "MemTotal: 1000 kB\nMemAvailable: 500 kB\n"})
	dir := writeTree(t, map[string]string{
		"picockpit-client.config.json":               fmt.Sprintf(`{"host":{"root":%q}}`, root),
		"apps/com.picockpit/pidoctor/modules/m.json": `{"id":"m","name":"M","checks":[{"id":"mem","name":"Memory","builtin":"memory_available"}]}`,
	})
	var out, errb bytes.Buffer
	if code := realMain([]string{"doctor", "--config-dir", dir, "--state-dir", t.TempDir()}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "50% of memory available") {
		t.Errorf("exit %d; stdout %q stderr %q", code, out.String(), errb.String())
	}
}

func TestDoctorTableOrderAndColour(t *testing.T) {
	rep := contract.PiDoctorReport{Checks: []contract.PiDoctorResult{
		{Name: "A", Verdict: "ok", Message: "fine"},
		{Name: "Bee", Verdict: "warn", Message: "hmm", Remedy: "do x"},
		{Name: "C", Verdict: "error", Message: "could not check: y"},
		{Name: "D", Verdict: "fail", Message: "bad", Remedy: "do z"},
	}}
	rep.Summary = contract.Summarize(rep.Checks)
	var b bytes.Buffer
	printDoctorTable(&b, rep, false)
	want := "VERDICT CHECK  MESSAGE\n" +
		"FAIL    D      bad\n" +
		"               -> do z\n" +
		"ERROR   C      could not check: y\n" +
		"WARN    Bee    hmm\n" +
		"               -> do x\n" +
		"OK      A      fine\n" +
		"\n4 checks in 0 ms: 1 ok, 1 warn, 1 fail, 1 error; worst: fail\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	printDoctorTable(&b, rep, true)
	if !strings.Contains(b.String(), "\x1b[1;31mFAIL   \x1b[0m") {
		t.Errorf("no colour: %q", b.String())
	}
	var out, errb bytes.Buffer
	if code := realMain([]string{"doctor", "--color", "sometimes"}, &out, &errb); code != 2 {
		t.Errorf("bad --color: exit %d", code)
	}
}
