package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fakeHost is a copy of a Raspberry Pi fixture tree whose counters move:
// every tick rewrites /proc/stat, /proc/uptime, /proc/loadavg,
// /proc/meminfo, /proc/net/dev, /proc/net/wireless and the SoC temperature
// the way a lightly loaded Pi would change them, so the demo's CPU, load,
// uptime, network rates and temperature are live. Files are rewritten in
// place (the agent keeps them open and reads them again from the start).
type fakeHost struct {
	dir   string
	start time.Time
	// cumulative counters
	cpu          [4][4]uint64 // per core: user, system, idle, iowait (USER_HZ)
	rx, tx       uint64
	lastTick     time.Time
	uptimeAtBase float64
}

// newFakeHost copies the fixture tree src to dir and returns it.
func newFakeHost(src, dir string) (*fakeHost, error) {
	if err := copyTree(src, dir); err != nil {
		return nil, err
	}
	// Only "/" is listed: the demo's disk is the filesystem holding the temp
	// dir, and a second fixture mount would show the same figures again.
	if err := replace(filepath.Join(dir, "proc", "mounts"), "/dev/mmcblk0p2 / ext4 rw,noatime 0 0\n"); err != nil {
		return nil, err
	}
	h := &fakeHost{dir: dir, start: time.Now(), lastTick: time.Now(), uptimeAtBase: 9999.48,
		rx: 912345678, tx: 45678901}
	for i := range h.cpu {
		h.cpu[i] = [4]uint64{40000, 15000, 900000, 800}
	}
	return h, h.tick(time.Now())
}

// load is the demo's CPU load in percent at t: a slow wave between about 8
// and 62 % with a burst every minute.
func (h *fakeHost) load(t time.Time) float64 {
	s := t.Sub(h.start).Seconds()
	l := 35 + 27*math.Sin(s/9)
	if int(s)%60 < 4 {
		l = 90
	}
	return l
}

// tick advances the counters to now and rewrites the moving files.
func (h *fakeHost) tick(now time.Time) error {
	dt := now.Sub(h.lastTick).Seconds()
	h.lastTick = now
	load := h.load(now)
	ticks := uint64(dt * 100) // USER_HZ per core
	var stat strings.Builder
	var all [4]uint64
	for i := range h.cpu {
		busy := uint64(float64(ticks) * (load + float64(i)*3) / 100)
		if busy > ticks {
			busy = ticks
		}
		h.cpu[i][0] += busy * 3 / 4
		h.cpu[i][1] += busy - busy*3/4
		h.cpu[i][2] += ticks - busy
		for k := range all {
			all[k] += h.cpu[i][k]
		}
	}
	line := func(name string, c [4]uint64) {
		fmt.Fprintf(&stat, "%s %d 0 %d %d %d 0 0 0 0 0\n", name, c[0], c[1], c[2], c[3])
	}
	line("cpu ", all)
	for i, c := range h.cpu {
		line(fmt.Sprintf("cpu%d", i), c)
	}
	stat.WriteString("ctxt 71295633\nbtime 1768465000\nprocesses 58233\nprocs_running 1\nprocs_blocked 0\n")

	up := h.uptimeAtBase + now.Sub(h.start).Seconds()
	l1 := load / 100 * 4 * 0.6
	rate := 20e3 + 180e3*load/100
	h.rx += uint64(rate * dt)
	h.tx += uint64(rate / 8 * dt)
	temp := 42000 + int(load*250)
	signal := -52 - int(8*math.Sin(now.Sub(h.start).Seconds()/13))
	avail := 2331052 - int(load*3000)

	files := map[string]string{
		"proc/stat":    stat.String(),
		"proc/uptime":  fmt.Sprintf("%.2f %.2f\n", up, up*3.5),
		"proc/loadavg": fmt.Sprintf("%.2f %.2f %.2f 1/213 4051\n", l1, l1*0.8+0.1, l1*0.6+0.1),
		"proc/meminfo": fmt.Sprintf("MemTotal:        3885088 kB\nMemFree:         %d kB\nMemAvailable:    %d kB\n"+
			"Buffers:           97127 kB\nCached:           971272 kB\nSwapCached:            0 kB\n"+
			"SwapTotal:        524284 kB\nSwapFree:         524284 kB\nShmem:              4212 kB\n", avail-1036023, avail),
		"proc/net/dev": "Inter-|   Receive                                                |  Transmit\n" +
			" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
			"    lo:    48512      53    0    0    0     0          0         0    48512      69    0    0    0     0       0          0\n" +
			fmt.Sprintf("  eth0: %d 1013717    0    0    0     0          0         0 %d   65255    0    0    0     0       0          0\n", h.rx, h.tx) +
			fmt.Sprintf(" wlan0: %d 2    0    0    0     0          0         0 %d 5    0    0    0     0       0          0\n", h.rx/50, h.tx/50),
		"proc/net/wireless": "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n" +
			" face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n" +
			fmt.Sprintf(" wlan0: 0000   %d.  %d.  -256        0      0      0      0     25        0\n", 70+signal/2+26, signal),
		"sys/class/thermal/thermal_zone0/temp": fmt.Sprintf("%d\n", temp),
		"sys/class/hwmon/hwmon1/temp1_input":   fmt.Sprintf("%d\n", temp),
	}
	for rel, content := range files {
		if err := replace(filepath.Join(h.dir, rel), content); err != nil {
			return err
		}
	}
	return nil
}

// replace rewrites the file at path in place with one write, then cuts what
// is left of a longer old content.
func replace(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(int64(len(content))); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
