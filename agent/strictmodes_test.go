package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const nobody = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("StrictModes tests chown files: run as root (CI is root)")
	}
}

// trustTree builds a config dir with one good module file per app and the
// bad cases the issue saw; it returns the dir.
func trustTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mods := func(app string) string {
		d := filepath.Join(dir, "apps", app, "picontrol", "modules")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	write := func(p string, mode os.FileMode, uid int) {
		t.Helper()
		if err := os.WriteFile(p, []byte(`{}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, 0); err != nil {
			t.Fatal(err)
		}
	}
	good := mods("com.picockpit")
	write(filepath.Join(good, "10-good.json"), 0o644, 0)
	write(filepath.Join(good, "20-world-writable.json"), 0o666, 0)
	write(filepath.Join(good, "21-group-writable.json"), 0o664, 0)
	write(filepath.Join(good, "30-user-owned.json"), 0o644, nobody)
	// A module directory owned by a user: its (root-owned) file is refused.
	userDir := mods("user")
	write(filepath.Join(userDir, "40-in-user-dir.json"), 0o644, 0)
	if err := os.Chown(userDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	// A symlink into a user's home-like directory.
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(home, "c.json"), 0o644, nobody)
	if err := os.Chown(home, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../home/c.json", filepath.Join(good, "50-symlink-home.json")); err != nil {
		t.Fatal(err)
	}
	// A relative symlink to a good file in the tree is followed.
	if err := os.Symlink("10-good.json", filepath.Join(good, "51-symlink-good.json")); err != nil {
		t.Fatal(err)
	}
	// A FIFO and /dev/zero must not block or eat memory.
	if err := unix.Mkfifo(filepath.Join(good, "zz.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(good, "z.json")); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(good, "60-big.json")
	if err := os.WriteFile(big, make([]byte, MaxConfigFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	// Exactly the limit is fine.
	if err := os.WriteFile(filepath.Join(good, "61-limit.json"), make([]byte, MaxConfigFileSize), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestModuleFilesStrictModes(t *testing.T) {
	needRoot(t)
	dir := trustTree(t)
	done := make(chan struct{})
	var files []string
	var problems []string
	go func() {
		defer close(done)
		fs, probs := ModuleFiles(dir, "picontrol")
		for _, f := range fs {
			files = append(files, filepath.Base(f.Path))
		}
		for _, p := range probs {
			problems = append(problems, p.Error())
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("ModuleFiles blocked (FIFO or /dev/zero)")
	}
	if want := []string{"10-good.json", "51-symlink-good.json", "61-limit.json"}; !slices.Equal(files, want) {
		t.Errorf("loaded %v, want %v", files, want)
	}
	wantProblems := map[string]string{
		"20-world-writable.json": "writable by group or others (mode 0666)",
		"21-group-writable.json": "writable by group or others (mode 0664)",
		"30-user-owned.json":     "owned by uid 65534, not root",
		"40-in-user-dir.json":    "user/picontrol/modules: owned by uid 65534, not root",
		"50-symlink-home.json":   "home: owned by uid 65534, not root",
		"zz.json":                "not a regular file (a FIFO)",
		"z.json":                 "/dev/zero): not a regular file (a character device)",
		"60-big.json":            "1048577 bytes, larger than 1048576",
	}
	if len(problems) != len(wantProblems) {
		t.Errorf("got %d problems, want %d:\n%s", len(problems), len(wantProblems), strings.Join(problems, "\n"))
	}
	for file, reason := range wantProblems {
		found := false
		for _, p := range problems {
			if strings.HasPrefix(p, filepath.Join(dir, "apps")) && strings.Contains(p, "/"+file+": refused: ") && strings.Contains(p, reason) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem naming %s with %q in:\n%s", file, reason, strings.Join(problems, "\n"))
		}
	}
}

func TestReadTrustedDirectories(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the file to read
		wantErr string
	}{
		{"good", func(t *testing.T, dir string) string { return writeFile(t, dir, "a/b/f.json", 0o644) }, ""},
		{"config dir owned by user", func(t *testing.T, dir string) string {
			chown(t, dir, nobody)
			return writeFile(t, dir, "f.json", 0o644)
		}, "owned by uid 65534, not root"},
		{"config dir world-writable", func(t *testing.T, dir string) string {
			chmod(t, dir, 0o777)
			return writeFile(t, dir, "f.json", 0o644)
		}, "writable by group or others (mode 0777)"},
		{"middle dir group-writable", func(t *testing.T, dir string) string {
			p := writeFile(t, dir, "a/b/f.json", 0o644)
			chmod(t, filepath.Join(dir, "a"), 0o775)
			return p
		}, "/a: writable by group or others (mode 0775)"},
		{"symlinked dir into /tmp", func(t *testing.T, dir string) string {
			other := t.TempDir()
			writeFile(t, other, "m/f.json", 0o644)
			if err := os.Symlink(filepath.Join(other, "m"), filepath.Join(dir, "m")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "m", "f.json")
		}, "/tmp: writable by group or others (mode 1777)"},
		{"symlink escaping with ..", func(t *testing.T, dir string) string {
			if err := os.Symlink("../../../../../../../../../../tmp/x.json", filepath.Join(dir, "f.json")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "f.json")
		}, "/tmp: writable by group or others"},
		{"symlink loop", func(t *testing.T, dir string) string {
			if err := os.Symlink("f.json", filepath.Join(dir, "f.json")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "f.json")
		}, "too many symbolic links"},
		{"directory", func(t *testing.T, dir string) string {
			if err := os.Mkdir(filepath.Join(dir, "d.json"), 0o755); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "d.json")
		}, "not a regular file (a directory)"},
		{"outside the dir", func(t *testing.T, dir string) string { return filepath.Join(dir, "..", "x.json") }, "not below the config directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := tc.setup(t, dir)
			_, _, err := ReadTrusted(dir, p)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestMainConfigStrictModes(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name     string
		mode     os.FileMode
		uid      int
		wantErr  string
		wantWarn string
	}{
		{"private", 0o600, 0, "", ""},
		{"readable by others", 0o644, 0, "", "readable by group or others (mode 0644)"},
		{"group readable", 0o640, 0, "", "readable by group or others (mode 0640)"},
		{"user-owned", 0o600, nobody, "owned by uid 65534, not root", ""},
		{"world-writable", 0o666, 0, "writable by group or others (mode 0666)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, ConfigFileName)
			if err := os.WriteFile(p, []byte(`{"log":{"level":"warn"}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			chmod(t, p, tc.mode)
			chown(t, p, tc.uid)
			cfg, err := LoadConfig(dir, nil, nil, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q naming %s", err, tc.wantErr, p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Log.Level != "warn" {
				t.Errorf("file not read: level %q", cfg.Log.Level)
			}
			got := strings.Join(cfg.Warnings, "\n")
			if tc.wantWarn == "" && got != "" || !strings.Contains(got, tc.wantWarn) {
				t.Errorf("warnings %q, want %q", got, tc.wantWarn)
			}
		})
	}
}

func TestTrustOwnFilesRefusedAsRoot(t *testing.T) {
	needRoot(t)
	if err := TrustOwnFiles(); err == nil || !strings.Contains(err.Error(), "refused when running as root") {
		t.Fatalf("err = %v", err)
	}
	if w := trustWarning(); w != "" {
		t.Fatalf("escape in effect as root: %s", w)
	}
}

func writeFile(t *testing.T, dir, rel string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(`{}`), mode); err != nil {
		t.Fatal(err)
	}
	chmod(t, p, mode)
	return p
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}
