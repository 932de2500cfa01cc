package pistats

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/net"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// gopsutilCtx points gopsutil v4 at a host root.
func gopsutilCtx(root string) context.Context {
	return context.WithValue(context.Background(), common.EnvKey, common.EnvMap{
		common.HostProcEnvKey: filepath.Join(root, "proc"),
		common.HostSysEnvKey:  filepath.Join(root, "sys"),
		common.HostEtcEnvKey:  filepath.Join(root, "etc"),
	})
}

// TestParsersAgreeWithGopsutil uses gopsutil v4 as the reference for the
// meminfo and net/dev parsers: the sampler's own allocation-free parsers must
// read the same numbers from every fixture.
func TestParsersAgreeWithGopsutil(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx, func(t *testing.T) {
			root := filepath.Join("testdata", "fixtures", fx, "root")
			ctx := gopsutilCtx(root)
			vm, err := mem.VirtualMemoryWithContext(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s := NewSampler(SamplerConfig{Root: root, Metrics: []string{contract.MetricMemory, contract.MetricSwap, contract.MetricNet},
				Now: newClock(t0).now, Interfaces: nil})
			st := s.Sample()
			defer s.Close()
			if st.Memory == nil || st.Swap == nil {
				t.Fatalf("memory %v swap %v: %v", st.Memory, st.Swap, st.Unavailable)
			}
			if st.Memory.TotalBytes != vm.Total || st.Memory.AvailableBytes != vm.Available {
				t.Errorf("memory total/available = %d/%d, gopsutil %d/%d", st.Memory.TotalBytes, st.Memory.AvailableBytes, vm.Total, vm.Available)
			}
			if st.Swap.TotalBytes != vm.SwapTotal || st.Swap.AvailableBytes != vm.SwapFree {
				t.Errorf("swap total/free = %d/%d, gopsutil %d/%d", st.Swap.TotalBytes, st.Swap.AvailableBytes, vm.SwapTotal, vm.SwapFree)
			}
			nics, err := net.IOCountersWithContext(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			ours := map[string][2]uint64{}
			for _, n := range st.Net {
				ours[n.Interface] = [2]uint64{*n.RxBytes, *n.TxBytes}
			}
			for _, n := range nics {
				if n.Name == "lo" {
					if _, ok := ours["lo"]; ok {
						t.Errorf("loopback reported")
					}
					continue
				}
				if got, want := ours[n.Name], [2]uint64{n.BytesRecv, n.BytesSent}; got != want {
					t.Errorf("%s rx/tx = %v, gopsutil %v", n.Name, got, want)
				}
			}
			if len(ours) != len(nics)-1 {
				t.Errorf("%d interfaces, gopsutil %d (with lo)", len(ours), len(nics))
			}
		})
	}
}

// TestHostMemTotalAgreesWithGopsutil reads this machine's /proc.
func TestHostMemTotalAgreesWithGopsutil(t *testing.T) {
	vm, err := mem.VirtualMemoryWithContext(gopsutilCtx("/"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSampler(SamplerConfig{Metrics: []string{contract.MetricMemory}, Interval: time.Second})
	defer s.Close()
	st := s.Sample()
	if st.Memory == nil || st.Memory.TotalBytes != vm.Total {
		t.Errorf("memory = %+v, gopsutil total %d", st.Memory, vm.Total)
	}
}
