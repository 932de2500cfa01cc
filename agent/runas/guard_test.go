package runas_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbidden are the identifiers of packages syscall and golang.org/x/sys/unix
// that change the credentials of every thread of the process (Go >= 1.16),
// or name the raw system calls that do. The daemon must never use them: a
// command's uid switch happens only in the child (SysProcAttr.Credential).
var forbidden = map[string]bool{}

func init() {
	for _, name := range []string{
		"Setuid", "Setgid", "Setgroups", "Setreuid", "Setregid", "Setresuid", "Setresgid",
		"Setfsuid", "Setfsgid",
	} {
		forbidden[name] = true
		for _, suffix := range []string{"", "32"} {
			forbidden["SYS_"+strings.ToUpper(name)+suffix] = true
		}
	}
}

var guardedPackages = map[string]bool{"syscall": true, "golang.org/x/sys/unix": true}

// repoRoot walks up from the package directory to the directory of go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package directory")
		}
		dir = parent
	}
}

// findForbidden reports every use of a forbidden identifier of a guarded
// package in one parsed file, as "file:line: pkg.Name".
func findForbidden(fset *token.FileSet, f *ast.File) []string {
	local := map[string]string{} // local package name -> import path
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil || !guardedPackages[path] {
			continue
		}
		name := filepath.Base(path)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		if name == "." {
			// A dot import would hide the package name: treat bare
			// identifiers as uses.
			ast.Inspect(f, func(n ast.Node) bool {
				if id, ok := n.(*ast.Ident); ok && forbidden[id.Name] && id.Obj == nil {
					local["."] = path
				}
				return true
			})
			continue
		}
		local[name] = path
	}
	var hits []string
	if len(local) == 0 {
		return nil
	}
	if p, ok := local["."]; ok {
		hits = append(hits, fset.Position(f.Package).String()+": dot import of "+p+" using a forbidden name")
	}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok || x.Obj != nil { // x.Obj != nil: a local variable shadows the package
			return true
		}
		if path, ok := local[x.Name]; ok && forbidden[sel.Sel.Name] {
			hits = append(hits, fset.Position(sel.Pos()).String()+": "+path+"."+sel.Sel.Name)
		}
		return true
	})
	return hits
}

// TestNoProcessWideCredentialChanges parses every Go file of the repository
// and fails on any use of syscall/unix Set*id, Setgroups or their raw
// system call numbers.
func TestNoProcessWideCredentialChanges(t *testing.T) {
	root := repoRoot(t)
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Errorf("parse %s: %v", path, err)
			return nil
		}
		files++
		for _, h := range findForbidden(fset, f) {
			t.Errorf("process-wide credential change: %s", h)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 {
		t.Fatalf("checked only %d Go files under %s", files, root)
	}
	t.Logf("checked %d Go files", files)
}

// TestGuardFindsUses makes sure the guard itself can fail.
func TestGuardFindsUses(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      int
	}{
		{"syscall call", "package p\nimport \"syscall\"\nfunc f() { syscall.Setuid(1) }\n", 1},
		{"unix renamed", "package p\nimport u \"golang.org/x/sys/unix\"\nfunc f() { u.Setresuid(1, 1, 1); u.Setgroups(nil) }\n", 2},
		{"method value", "package p\nimport \"syscall\"\nvar g = syscall.Setgid\n", 1},
		{"raw syscall", "package p\nimport \"golang.org/x/sys/unix\"\nfunc f() { unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0) }\n", 1},
		{"raw 32-bit", "package p\nimport \"syscall\"\nfunc f() { syscall.RawSyscall(syscall.SYS_SETRESUID32, 0, 0, 0) }\n", 1},
		{"dot import", "package p\nimport . \"syscall\"\nfunc f() { Setuid(1) }\n", 1},
		{"credential is fine", "package p\nimport \"syscall\"\nvar c = syscall.Credential{Uid: 1}\n", 0},
		{"other package", "package p\nimport \"example.com/syscall2\"\nfunc f() { syscall2.Setuid(1) }\n", 0},
		{"string literal", "package p\nimport \"syscall\"\nvar s = \"syscall.Setuid\"\nvar _ = syscall.Getpid\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "x.go", tc.src, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := findForbidden(fset, f); len(got) != tc.want {
				t.Errorf("found %v, want %d hits", got, tc.want)
			}
		})
	}
}
