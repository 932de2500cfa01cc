package pistats

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"unsafe"
)

// hostPath is a file under the host root, prepared once: Rel is the path as
// the host sees it ("/proc/stat", used in reasons and logs), c the full path
// NUL-terminated for the open system call.
type hostPath struct {
	Rel string
	c   []byte
}

func newHostPath(root, rel string) hostPath {
	full := filepath.Join(root, rel)
	c := make([]byte, len(full)+1)
	copy(c, full)
	return hostPath{Rel: rel, c: c}
}

// Full returns the path on this machine.
func (p hostPath) Full() string { return string(p.c[:len(p.c)-1]) }

// fileReader reads small procfs/sysfs files into one reused buffer. It keeps
// each file open and re-reads it from offset 0 with one pread: procfs and
// sysfs regenerate the content on every read at offset 0, so a sample costs
// one system call per file instead of open, read, read and close. A read that
// fails closes the descriptor and retries once with a fresh open (the device
// behind a sysfs file may have been re-created). Not safe for concurrent use.
type fileReader struct {
	buf []byte
	fds map[string]int // full path -> open descriptor
	// missing remembers files that did not exist: they are tried again only
	// every missingRetry reads, so an absent file costs no system call and
	// no allocation on most samples.
	missing map[string]*missingFile
}

type missingFile struct {
	err  error
	skip int
}

// missingRetry is how many reads of a missing file are answered from memory
// before it is looked for again (a minute at the default interval).
const missingRetry = 12

// errEmpty is returned for a file that exists but holds nothing.
var errEmpty = errors.New("file is empty")

// read returns the whole content of p. The slice is valid until the next read.
// It makes no allocation once the file is open and fits the buffer.
func (r *fileReader) read(p hostPath) ([]byte, error) {
	if r.buf == nil {
		r.buf = make([]byte, 8192)
	}
	if r.fds == nil {
		r.fds = map[string]int{}
		r.missing = map[string]*missingFile{}
	}
	key := p.c[:len(p.c)-1]
	if mf := r.missing[string(key)]; mf != nil {
		if mf.skip > 0 {
			mf.skip--
			return nil, mf.err
		}
		delete(r.missing, string(key))
	}
	if fd, ok := r.fds[string(key)]; ok {
		b, err := r.preadAll(fd)
		if err == nil {
			return b, nil
		}
		syscall.Close(fd)
		delete(r.fds, string(key))
	}
	fd, err := openRead(p.c)
	if err != nil {
		perr := &fs.PathError{Op: "open", Path: p.Rel, Err: err}
		if errors.Is(err, fs.ErrNotExist) {
			r.missing[string(key)] = &missingFile{err: perr, skip: missingRetry - 1}
		}
		return nil, perr
	}
	b, err := r.preadAll(fd)
	if err != nil {
		syscall.Close(fd)
		if errors.Is(err, errEmpty) {
			return nil, &fs.PathError{Op: "read", Path: p.Rel, Err: errEmpty}
		}
		return nil, &fs.PathError{Op: "read", Path: p.Rel, Err: err}
	}
	r.fds[string(key)] = fd
	return b, nil
}

// preadAll reads fd from offset 0. A read that does not fill the buffer ends
// the file (procfs seq_files and sysfs attributes deliver all they have); a
// full buffer is grown and reading goes on.
func (r *fileReader) preadAll(fd int) ([]byte, error) {
	n := 0
	for {
		m, err := syscall.Pread(fd, r.buf[n:], int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		n += m
		if m == 0 || n < len(r.buf) {
			break
		}
		nb := make([]byte, 2*len(r.buf))
		copy(nb, r.buf)
		r.buf = nb
	}
	if n == 0 {
		return nil, errEmpty
	}
	return r.buf[:n], nil
}

// close releases every open descriptor.
func (r *fileReader) close() {
	for k, fd := range r.fds {
		syscall.Close(fd)
		delete(r.fds, k)
	}
}

// openRead opens the NUL-terminated path read-only without allocating.
func openRead(c []byte) (int, error) {
	for {
		fd, _, e := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(fdcwd),
			uintptr(unsafe.Pointer(&c[0])), uintptr(syscall.O_RDONLY|syscall.O_CLOEXEC), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(fd), nil
	}
}

// fdcwd is AT_FDCWD: relative paths are relative to the working directory.
var fdcwd = -0x64

// reasonFor turns a read error into a short reason for the payload.
func reasonFor(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, fs.ErrNotExist):
			return pe.Path + " does not exist"
		case errors.Is(pe.Err, fs.ErrPermission):
			return pe.Path + ": permission denied"
		case errors.Is(pe.Err, errEmpty):
			return pe.Path + " is empty"
		}
		return pe.Op + " " + pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// trimSpace trims ASCII white space and NULs (device tree strings end in NUL).
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0 }

// nextField returns the next white-space separated field of b starting at i
// and the index after it; field is nil at the end.
func nextField(b []byte, i int) (field []byte, next int) {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	start := i
	for i < len(b) && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' {
		i++
	}
	if start == i {
		return nil, i
	}
	return b[start:i], i
}

// nextLine returns the line of b starting at i (without '\n') and the index
// of the next line; ok is false at the end.
func nextLine(b []byte, i int) (line []byte, next int, ok bool) {
	if i >= len(b) {
		return nil, i, false
	}
	j := i
	for j < len(b) && b[j] != '\n' {
		j++
	}
	if j < len(b) {
		return b[i:j], j + 1, true
	}
	return b[i:j], j, true
}

// parseUint parses a decimal unsigned integer.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseInt parses a decimal integer with an optional sign.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	u, ok := parseUint(b)
	if !ok || u > 1<<63-1 {
		return 0, false
	}
	if neg {
		return -int64(u), true
	}
	return int64(u), true
}

// parseHex parses a hexadecimal number with or without a 0x prefix.
func parseHex(b []byte) (uint64, bool) {
	if len(b) > 2 && b[0] == '0' && (b[1] == 'x' || b[1] == 'X') {
		b = b[2:]
	}
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// parseDecimal parses the decimal numbers procfs prints: an optional sign,
// digits, an optional '.' and fraction digits ("0.52", "-40.", "12345.67").
func parseDecimal(b []byte) (float64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var ip, fp uint64
	var fdiv float64 = 1
	digits := 0
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if digits < 19 {
			ip = ip*10 + uint64(b[i]-'0')
		} else {
			return 0, false
		}
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if fdiv < 1e15 {
				fp = fp*10 + uint64(b[i]-'0')
				fdiv *= 10
			}
			digits++
		}
	}
	if i != len(b) || digits == 0 {
		return 0, false
	}
	v := float64(ip) + float64(fp)/fdiv
	if neg {
		v = -v
	}
	return v, true
}

// readDirNames lists the names in dir (under the host root) sorted; used only
// at discovery time.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Slice(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
	return names, nil
}

// naturalLess orders "cpu2" before "cpu10" and "hwmon2" before "hwmon10".
func naturalLess(a, b string) bool {
	pa, na := splitNum(a)
	pb, nb := splitNum(b)
	if pa != pb || na < 0 || nb < 0 {
		if pa == pb {
			return a < b
		}
		return pa < pb
	}
	return na < nb
}

func splitNum(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) || len(s)-i > 9 {
		return s, -1
	}
	n := 0
	for _, c := range s[i:] {
		n = n*10 + int(c-'0')
	}
	return s[:i], n
}

// readSmall reads a small text file at discovery time and trims it.
func readSmall(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(trimSpace(b)), "\x00"), nil
}
