package pistats

import (
	"bytes"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/picockpit/picockpit-client/agent/contract"
)

type mountEntry struct {
	mount   string // as configured, cleaned
	escaped []byte // as /proc/mounts prints it (\040 for space ...)
	full    string // root + mount, for statfs
	vals    [3]uint64
	pct     float64
}

type diskState struct {
	mounts []mountEntry
	out    []contract.StatsDisk
}

// escapeMount escapes a path the way the kernel prints mount points.
func escapeMount(p string) []byte {
	var b []byte
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case ' ':
			b = append(b, `\040`...)
		case '\t':
			b = append(b, `\011`...)
		case '\n':
			b = append(b, `\012`...)
		case '\\':
			b = append(b, `\134`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

func (s *Sampler) discoverMounts() diskState {
	var list []string
	if s.cfg.Mounts != nil {
		list = s.cfg.Mounts
	} else {
		list = []string{"/"}
		mounted := func(m string) bool {
			b, err := s.rd.read(s.pMounts)
			return err == nil && mountListed(b, escapeMount(m))
		}
		switch {
		case mounted("/boot/firmware"):
			list = append(list, "/boot/firmware")
		case mounted("/boot"):
			list = append(list, "/boot")
		}
	}
	var ds diskState
	for _, m := range list {
		m = filepath.Clean(m)
		ds.mounts = append(ds.mounts, mountEntry{mount: m, escaped: escapeMount(m), full: filepath.Join(s.cfg.Root, m)})
	}
	ds.out = make([]contract.StatsDisk, len(ds.mounts))
	return ds
}

// mountListed reports whether the mount point (escaped) is the second field
// of a line of /proc/mounts.
func mountListed(b, escaped []byte) bool {
	for i := 0; ; {
		line, next, ok := nextLine(b, i)
		if !ok {
			return false
		}
		i = next
		_, j := nextField(line, 0)
		mp, _ := nextField(line, j)
		if bytes.Equal(mp, escaped) {
			return true
		}
	}
}

func (s *Sampler) sampleDisks() {
	if len(s.disk.mounts) == 0 {
		s.out.Disks = s.disk.out[:0]
		return
	}
	mounts, err := s.rd.read(s.pMounts)
	if err != nil {
		s.unav[contract.MetricDisks] = s.reason(err, "")
		return
	}
	// The mount table stays in the reader's buffer only until the next read;
	// check every mount point first.
	var listed [16]bool
	lst := listed[:0]
	if len(s.disk.mounts) > len(listed) {
		lst = make([]bool, 0, len(s.disk.mounts))
	}
	for _, m := range s.disk.mounts {
		lst = append(lst, mountListed(mounts, m.escaped))
	}
	for i := range s.disk.mounts {
		m := &s.disk.mounts[i]
		d := &s.disk.out[i]
		*d = contract.StatsDisk{Mount: m.mount}
		if !lst[i] {
			d.Unavailable = "not mounted (not in /proc/mounts)"
			continue
		}
		var st syscall.Statfs_t
		if err := s.statfs(m.full, &st); err != nil {
			d.Unavailable = "statfs: " + err.Error()
			continue
		}
		// Like df: used = blocks - free; the percentage is of the space an
		// unprivileged user can have (used + available), excluding the
		// root-reserved blocks.
		bs := uint64(st.Frsize)
		if bs == 0 {
			bs = uint64(st.Bsize)
		}
		total := st.Blocks * bs
		used := (st.Blocks - min(st.Bfree, st.Blocks)) * bs
		avail := st.Bavail * bs
		m.vals = [3]uint64{total, used, avail}
		m.pct = 0
		if used+avail > 0 {
			m.pct = round(float64(used)/float64(used+avail)*100, 2)
		}
		d.TotalBytes, d.UsedBytes, d.AvailableBytes, d.UsedPercent = &m.vals[0], &m.vals[1], &m.vals[2], &m.pct
	}
	s.out.Disks = s.disk.out
}

// mountSlug turns a mount point into one topic level: "/" is "root",
// "/boot/firmware" is "boot_firmware".
func mountSlug(m string) string {
	if m == "/" {
		return "root"
	}
	r := strings.NewReplacer("/", "_", "+", "_", "#", "_", " ", "_")
	return r.Replace(strings.Trim(m, "/"))
}
