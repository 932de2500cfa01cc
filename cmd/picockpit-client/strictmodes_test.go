package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The bad trees of issue 12 through the real entry points: check names
// each refused file with its reason and returns (no FIFO or /dev/zero hang),
// and the good module beside them still runs.
func TestCheckRefusesUntrustedFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chowns files: run as root (CI is root)")
	}
	const pc = "apps/com.picockpit/picontrol/modules/"
	dir := writeTree(t, map[string]string{
		"picockpit-client.config.json": `{"device":{"id":"x"}}`,
		pc + "tools.json":              goodModule,
		pc + "loose.json":              goodModule,
		pc + "theirs.json":             goodModule,
	})
	mods := filepath.Join(dir, pc)
	if err := os.Chmod(filepath.Join(mods, "loose.json"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(mods, "theirs.json"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(mods, "zz.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(mods, "z.json")); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := realMain([]string{"check", "--config-dir", dir}, &out, &errb); code != 1 {
		t.Fatalf("check exit %d, want 1; %s%s", code, out.String(), errb.String())
	}
	text := errb.String()
	for _, want := range []string{
		"warning: " + filepath.Join(dir, "picockpit-client.config.json") + " is readable by group or others (mode 0644)",
		"loose.json: refused: writable by group or others (mode 0666)",
		"theirs.json: refused: owned by uid 65534, not root",
		"zz.json: refused: not a regular file (a FIFO)",
		"z.json: refused: " + filepath.Join(mods, "z.json") + " (-> /dev/zero): not a regular file (a character device)",
		"4 problem(s) found",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("check output lacks %q:\n%s", want, text)
		}
	}
	out.Reset()
	errb.Reset()
	if code := realMain([]string{"run-command", "--config-dir", dir, "tools", "hello"}, &out, &errb); code != 0 || out.String() != "hello\n" {
		t.Fatalf("the good module beside them: exit %d, stdout %q, stderr %s", code, out.String(), errb.String())
	}
}
