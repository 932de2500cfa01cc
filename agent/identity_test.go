package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/picockpit/picockpit-client/agent/contract"
)

func TestReadDevice(t *testing.T) {
	for _, tc := range []struct {
		root, override string
		want           contract.Device
		wantErr        bool
	}{
		{root: "testdata/identity/pi4", want: contract.Device{ID: "10000000a1b2c3d4", Serial: "10000000a1b2c3d4",
			Model: "Raspberry Pi 4 Model B Rev 1.4", Hostname: "raspberrypi", OS: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.6.51+rpt-rpi-v8"}},
		// Older kernels without the device-tree serial: /proc/cpuinfo, lower-cased for the id.
		{root: "testdata/identity/oldpi", want: contract.Device{ID: "00000000abcdef01", Serial: "00000000ABCDEF01", Model: "Raspberry Pi Zero Rev 1.3"}},
		{root: "testdata/identity/pc", want: contract.Device{ID: "0123456789abcdef0123456789abcdef"}},
		// An all-zero cpuinfo serial (non-Pi ARM boards) is no serial.
		{root: "testdata/identity/zeroserial", want: contract.Device{ID: "fedcba9876543210fedcba9876543210"}},
		{root: "testdata/identity/pi4", override: "kitchen-pi", want: contract.Device{ID: "kitchen-pi", Serial: "10000000a1b2c3d4",
			Model: "Raspberry Pi 4 Model B Rev 1.4", Hostname: "raspberrypi", OS: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.6.51+rpt-rpi-v8"}},
		{root: "testdata/identity/empty", wantErr: true},
		{root: "testdata/identity/pc", override: "a/b", wantErr: true},
	} {
		t.Run(tc.root+"/"+tc.override, func(t *testing.T) {
			got, err := ReadDevice(tc.root, tc.override)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Arch = ""
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("device (-want +got):\n%s", d)
			}
		})
	}
}
