// Command testsummary reads `go test -json` and reports it for CI: a line
// per package as it finishes, the output of every failed test, the skipped
// tests with their reasons, and last a line "N passed, N failed, N skipped"
// alone. Tests are counted at the leaves: a test with subtests counts
// through them (and once more only if it failed on its own).
//
//	go build -o bin/testsummary .ci/testsummary.go
//	go test -json ./... | bin/testsummary -save run.json
//	bin/testsummary -total run1.json run2.json
//
// (Built, not go run: go run adds an "exit status 1" line after the totals.)
//
// The first form streams stdin (saving a copy with -save; -totals=false
// leaves out the skips and totals) and exits 1 when anything failed; the
// second adds up saved runs. It lives in .ci/, which
// the go command's ./... ignores, and needs only the standard library.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action      string
	Package     string
	ImportPath  string // build-output: the package being built
	FailedBuild string // fail: the build that failed
	Test        string
	Elapsed     float64
	Output      string
}

type test struct {
	pkg, name string
	result    string // pass, fail, skip; "" while running
	output    []string
}

type summary struct {
	out      io.Writer
	stream   bool // print package lines and failures as they come
	tests    map[string]*test
	order    []string
	pkgOut   map[string][]string
	pkgFail  map[string]bool
	pkgCount map[string][3]int // passed, failed, skipped as the package ends
}

func newSummary(out io.Writer, stream bool) *summary {
	return &summary{out: out, stream: stream, tests: map[string]*test{}, pkgOut: map[string][]string{},
		pkgFail: map[string]bool{}, pkgCount: map[string][3]int{}}
}

func (s *summary) add(line []byte) {
	var e event
	if json.Unmarshal(line, &e) != nil || e.Action == "" {
		if s.stream && len(strings.TrimSpace(string(line))) > 0 {
			fmt.Fprintf(s.out, "%s\n", line) // not test2json: pass through (build errors)
		}
		return
	}
	if e.Test == "" {
		switch e.Action {
		case "build-output":
			s.pkgOut[e.ImportPath] = append(s.pkgOut[e.ImportPath], e.Output)
		case "output":
			s.pkgOut[e.Package] = append(s.pkgOut[e.Package], e.Output)
		case "pass", "fail", "skip":
			s.packageDone(e)
		}
		return
	}
	key := e.Package + "\x00" + e.Test
	t := s.tests[key]
	if t == nil {
		t = &test{pkg: e.Package, name: e.Test}
		s.tests[key] = t
		s.order = append(s.order, key)
	}
	switch e.Action {
	case "output":
		t.output = append(t.output, e.Output)
	case "pass", "fail", "skip":
		t.result = e.Action
	}
}

func (s *summary) packageDone(e event) {
	if e.Action == "fail" {
		s.pkgFail[e.Package] = true
	}
	if !s.stream {
		return
	}
	p, f, k := s.countPkg(e.Package)
	switch {
	case e.Action == "skip" || p+f+k == 0 && e.Action == "pass":
		fmt.Fprintf(s.out, "?    %-60s [no tests]\n", e.Package)
	case e.Action == "pass":
		fmt.Fprintf(s.out, "ok   %-60s %6.1fs  %d passed, %d skipped\n", e.Package, e.Elapsed, p, k)
	default:
		fmt.Fprintf(s.out, "FAIL %-60s %6.1fs  %d passed, %d failed, %d skipped\n", e.Package, e.Elapsed, p, f, k)
		for _, key := range s.order {
			if t := s.tests[key]; t.pkg == e.Package && t.result == "fail" && s.leafOrOwnFailure(t) {
				fmt.Fprintf(s.out, "--- FAIL: %s\n%s", t.name, strings.Join(t.output, ""))
			}
		}
		if e.FailedBuild != "" {
			fmt.Fprint(s.out, strings.Join(s.pkgOut[e.FailedBuild], ""))
		}
		fmt.Fprint(s.out, strings.Join(s.pkgOut[e.Package], ""))
	}
}

// hasChildren reports whether t has subtests.
func (s *summary) hasChildren(t *test) bool {
	for _, o := range s.tests {
		if o.pkg == t.pkg && strings.HasPrefix(o.name, t.name+"/") {
			return true
		}
	}
	return false
}

// leafOrOwnFailure: a leaf, or a parent that failed while none of its
// subtests did.
func (s *summary) leafOrOwnFailure(t *test) bool {
	if !s.hasChildren(t) {
		return true
	}
	if t.result != "fail" {
		return false
	}
	for _, o := range s.tests {
		if o.pkg == t.pkg && strings.HasPrefix(o.name, t.name+"/") && o.result == "fail" {
			return false
		}
	}
	return true
}

// counted returns the result t counts as ("" if it does not count): a
// test that never finished in a failed package (a panic, a timeout) failed.
func (s *summary) counted(t *test) string {
	r := t.result
	if r == "" && s.pkgFail[t.pkg] {
		r = "fail"
	}
	if r == "" || !s.leafOrOwnFailure(t) {
		return ""
	}
	return r
}

func (s *summary) countPkg(pkg string) (passed, failed, skipped int) {
	for _, key := range s.order {
		if t := s.tests[key]; t.pkg == pkg {
			switch s.counted(t) {
			case "pass":
				passed++
			case "fail":
				failed++
			case "skip":
				skipped++
			}
		}
	}
	return
}

// finish prints the skips and the totals line and reports whether all passed.
func (s *summary) finish() bool {
	var passed, failed, skipped int
	var skips []string
	for _, key := range s.order {
		t := s.tests[key]
		switch s.counted(t) {
		case "pass":
			passed++
		case "fail":
			failed++
		case "skip":
			skipped++
			skips = append(skips, fmt.Sprintf("  %s %s: %s", t.pkg, t.name, skipReason(t.output)))
		}
	}
	// A package that failed without a failed test (build error, TestMain)
	// counts as one failure.
	var broken []string
	for pkg := range s.pkgFail {
		if _, f, _ := s.countPkg(pkg); f == 0 {
			broken = append(broken, pkg)
		}
	}
	sort.Strings(broken)
	for _, pkg := range broken {
		fmt.Fprintf(s.out, "FAIL %s: the package failed outside any test\n", pkg)
		failed++
	}
	if len(skips) > 0 {
		fmt.Fprintf(s.out, "skipped:\n%s\n", strings.Join(skips, "\n"))
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	return failed == 0
}

// skipReason is what the test logged before it skipped.
func skipReason(output []string) string {
	var lines []string
	for _, o := range output {
		l := strings.TrimSpace(o)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return "(no reason given)"
	}
	return strings.Join(lines, " ")
}

func read(s *summary, r io.Reader, save io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if save != nil {
			fmt.Fprintf(save, "%s\n", sc.Bytes())
		}
		s.add(sc.Bytes())
	}
	return sc.Err()
}

func main() {
	savePath := flag.String("save", "", "also write the raw go test -json stream to this file")
	total := flag.Bool("total", false, "add up the saved runs named as arguments")
	totals := flag.Bool("totals", true, "end a streamed run with its skips and totals line")
	flag.Parse()
	if *total {
		s := newSummary(os.Stdout, false)
		for _, name := range flag.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, "testsummary:", err)
				os.Exit(2)
			}
			err = read(s, f, nil)
			f.Close()
			if err != nil {
				fmt.Fprintf(os.Stderr, "testsummary: %s: %v\n", name, err)
				os.Exit(2)
			}
		}
		if !s.finish() {
			os.Exit(1)
		}
		return
	}
	var save io.Writer
	if *savePath != "" {
		f, err := os.Create(*savePath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			os.Exit(2)
		}
		defer f.Close()
		save = f
	}
	s := newSummary(os.Stdout, true)
	if err := read(s, os.Stdin, save); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if !*totals {
		s.out = io.Discard
	}
	if !s.finish() {
		os.Exit(1)
	}
}
