package pistats

import (
	"os"
	"testing"
	"time"
)

func TestParseDecimal(t *testing.T) {
	cases := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"0.52", 0.52, true}, {"-40.", -40, true}, {"12345.67", 12345.67, true}, {"70", 70, true},
		{"+3", 3, true}, {"", 0, false}, {"-", 0, false}, {".", 0, false}, {"1.2.3", 0, false},
		{"1e5", 0, false}, {"12345678901234567890", 0, false}, {".5", 0.5, true},
	}
	for _, c := range cases {
		got, ok := parseDecimal([]byte(c.in))
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("parseDecimal(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestParseHexAndUint(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "50005": 0x50005, "0x80008": 0x80008, "E000E": 0xe000e} {
		if got, ok := parseHex([]byte(in)); !ok || got != want {
			t.Errorf("parseHex(%q) = %#x, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "0x", "12g", "11112222333344445"} {
		if _, ok := parseHex([]byte(bad)); ok {
			t.Errorf("parseHex(%q) accepted", bad)
		}
	}
	if _, ok := parseUint([]byte("18446744073709551616")); ok {
		t.Errorf("parseUint accepted an overflow")
	}
	if v, ok := parseUint([]byte("18446744073709551615")); !ok || v != 1<<64-1 {
		t.Errorf("parseUint(max) = %d, %v", v, ok)
	}
}

// TestRereadSeesNewContent checks on the real /proc that a kept-open file
// re-read with pread at offset 0 is generated anew (the reason the sampler
// may keep files open).
func TestRereadSeesNewContent(t *testing.T) {
	var r fileReader
	defer r.close()
	p := newHostPath("/", "/proc/uptime")
	b, err := r.read(p)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := nextField(b, 0)
	first, ok := parseDecimal(f)
	if !ok {
		t.Fatalf("cannot parse %q", b)
	}
	time.Sleep(50 * time.Millisecond) // /proc/uptime counts in 10 ms steps
	b, err = r.read(p)
	if err != nil {
		t.Fatal(err)
	}
	f, _ = nextField(b, 0)
	second, _ := parseDecimal(f)
	if second <= first {
		t.Errorf("uptime did not advance through the kept-open file: %v then %v", first, second)
	}
	if len(r.fds) != 1 {
		t.Errorf("%d open files, want 1 (kept open)", len(r.fds))
	}
}

// TestSamplerCloseReleasesFiles counts this process's open descriptors.
func TestSamplerCloseReleasesFiles(t *testing.T) {
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := count()
	s := NewSampler(SamplerConfig{})
	s.Sample()
	if count() <= before {
		t.Errorf("no file kept open while sampling")
	}
	s.Close()
	if after := count(); after != before {
		t.Errorf("%d descriptors after Close, %d before", after, before)
	}
}

func TestMissingFileRememberedThenRetried(t *testing.T) {
	dir := t.TempDir()
	var r fileReader
	defer r.close()
	p := newHostPath(dir, "/late")
	if _, err := r.read(p); err == nil {
		t.Fatal("read of a missing file succeeded")
	}
	writeFile(t, p.Full(), "1\n")
	n := 1
	for ; n <= missingRetry; n++ {
		if _, err := r.read(p); err == nil {
			break
		}
	}
	if n != missingRetry {
		t.Errorf("file found on read %d after it appeared, want %d", n, missingRetry)
	}
}
