package pistats

import (
	"encoding/json"
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user + system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchSample measures one Sample (and, with encode, its JSON encoding) in
// steady state, and reports the CPU time per sample as cpu-ns/op.
func benchSample(b *testing.B, s *Sampler, encode bool) {
	s.Prime()
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime(b)
	for b.Loop() {
		st := s.Sample()
		if encode {
			if _, err := json.Marshal(st); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkSampleHost samples this machine (host root "/"), every metric.
func BenchmarkSampleHost(b *testing.B) {
	benchSample(b, NewSampler(SamplerConfig{Interval: 5 * time.Second}), false)
}

// BenchmarkSampleHostEncode is what one publish costs before the bus: sample
// plus JSON encoding.
func BenchmarkSampleHostEncode(b *testing.B) {
	benchSample(b, NewSampler(SamplerConfig{Interval: 5 * time.Second}), true)
}

// BenchmarkSamplePi4Fixture samples the Pi 4 fixture tree (more sysfs files
// than this machine has: firmware throttle word, rpi_volt, four cpufreq).
func BenchmarkSamplePi4Fixture(b *testing.B) {
	root := b.TempDir()
	copyTree(b, "testdata/fixtures/pi4/root", root)
	benchSample(b, NewSampler(SamplerConfig{Root: root, Interval: 5 * time.Second, Statfs: fakeStatfs("pi4", root)}), false)
}
