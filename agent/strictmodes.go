package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// MaxConfigFileSize is the largest config, module or key file the agent reads.
const MaxConfigFileSize = 1 << 20

// maxSymlinkHops bounds how many symbolic links one path may go through.
const maxSymlinkHops = 40

// trustedOwnUID is one more than the non-root uid whose files are trusted
// besides root's, or 0 for none. It is set only by TrustOwnFiles.
var trustedOwnUID atomic.Int64

// TrustOwnFiles makes the config tree checks (StrictModes) also accept files
// and directories owned by the daemon's own user. It is the escape for test
// and demo trees of a daemon that does not run as root (flag
// --trust-own-files), and it is refused when the daemon runs as root, where
// only root's files are trusted. Every load reports that it is in effect.
func TrustOwnFiles() error {
	uid := os.Geteuid()
	if uid == 0 {
		return errors.New("--trust-own-files is refused when running as root: root only trusts root's files")
	}
	trustedOwnUID.Store(int64(uid) + 1)
	return nil
}

// trustWarning says that TrustOwnFiles is in effect, or "".
func trustWarning() string {
	if uid := trustedOwnUID.Load(); uid > 0 {
		return fmt.Sprintf("config tree checks also trust files of uid %d (--trust-own-files): for test trees only", uid-1)
	}
	return ""
}

// TrustError is a file the config tree checks refused, and why.
type TrustError struct {
	Path   string // the file or directory that failed
	Reason string
}

func (e *TrustError) Error() string { return e.Path + ": " + e.Reason }

func trustedOwner(uid uint32) bool {
	return uid == 0 || int64(uid)+1 == trustedOwnUID.Load()
}

// checkTrusted applies sshd's StrictModes rules to one file system object:
// owned by root (or the escape's uid) and not writable by group or others.
func checkTrusted(path string, st *unix.Stat_t) error {
	if !trustedOwner(st.Uid) {
		return &TrustError{Path: path, Reason: fmt.Sprintf("owned by uid %d, not root", st.Uid)}
	}
	if st.Mode&0o022 != 0 {
		return &TrustError{Path: path, Reason: fmt.Sprintf("writable by group or others (mode %04o)", st.Mode&0o7777)}
	}
	return nil
}

// resolveTrusted walks comps below the already trusted directory start, one
// component at a time: every directory on the way must pass checkTrusted, and
// a symbolic link is followed only when every directory on the way to its
// target (from /) does too. It returns the resolved path, which contains no
// symbolic link; its last component is not checked (the caller opens it).
func resolveTrusted(start string, comps []string, hops *int) (string, error) {
	cur := start
	for i, c := range comps {
		if c == "" || c == "." {
			continue
		}
		next := filepath.Join(cur, c)
		if c == ".." {
			next = filepath.Dir(cur)
		}
		var st unix.Stat_t
		if err := unix.Lstat(next, &st); err != nil {
			return "", &fs.PathError{Op: "lstat", Path: next, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			*hops++
			if *hops > maxSymlinkHops {
				return "", &TrustError{Path: next, Reason: "too many symbolic links"}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			// A relative target is walked from the (trusted) directory of
			// the link, an absolute one from /; ".." checks what it enters.
			from := cur
			if filepath.IsAbs(target) {
				from = "/"
				if err := lstatTrusted("/"); err != nil {
					return "", err
				}
			}
			resolved, err := resolveTrusted(from, strings.Split(target, "/"), hops)
			if err != nil {
				return "", fmt.Errorf("symbolic link %s -> %s: %w", next, target, err)
			}
			next = resolved
			if err := unix.Lstat(next, &st); err != nil {
				return "", &fs.PathError{Op: "lstat", Path: next, Err: err}
			}
		}
		if i < len(comps)-1 || st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return "", &TrustError{Path: next, Reason: "not a directory"}
			}
			if err := checkTrusted(next, &st); err != nil {
				return "", err
			}
		}
		cur = next
	}
	return cur, nil
}

func lstatTrusted(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return checkTrusted(path, &st)
}

// trustedDir resolves and checks the config directory itself. Directories
// above it are the administrator's choice and not checked, unless dir is (or
// goes through) a symbolic link: then its target is checked from /.
func trustedDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	parent, base := filepath.Dir(abs), filepath.Base(abs)
	if real, err := filepath.EvalSymlinks(parent); err == nil && real != parent {
		hops := 0
		if err := lstatTrusted("/"); err != nil {
			return "", err
		}
		if parent, err = resolveTrusted("/", strings.Split(parent, "/"), &hops); err != nil {
			return "", err
		}
	}
	hops := 0
	real, err := resolveTrusted(parent, []string{base}, &hops)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", &fs.PathError{Op: "stat", Path: real, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return "", &TrustError{Path: abs, Reason: "not a directory"}
	}
	if err := checkTrusted(abs, &st); err != nil {
		return "", err
	}
	return real, nil
}

// ReadTrusted reads the file at path below the config directory dir under
// StrictModes rules: dir, every directory from dir to the file and the file
// itself must be owned by root and not writable by group or others; only a
// regular file of at most MaxConfigFileSize bytes is read; a symbolic link is
// followed only when its target passes the same checks (every directory from
// / to it). It never blocks on a FIFO or device: the file is checked before
// it is opened, opened with O_NOFOLLOW|O_NONBLOCK, checked again with fstat
// and read with a bound. st is the file's fstat.
func ReadTrusted(dir, path string) (data []byte, st unix.Stat_t, err error) {
	realDir, err := trustedDir(dir)
	if err != nil {
		return nil, st, err
	}
	absDir, _ := filepath.Abs(dir)
	absPath, err := filepath.Abs(path)
	if err != nil {
		return nil, st, err
	}
	rel, err := filepath.Rel(absDir, absPath)
	if err != nil || rel == "." || strings.HasPrefix(rel, "../") || rel == ".." {
		return nil, st, &TrustError{Path: path, Reason: "not below the config directory " + dir}
	}
	hops := 0
	real, err := resolveTrusted(realDir, strings.Split(rel, "/"), &hops)
	if err != nil {
		return nil, st, err
	}
	var lst unix.Stat_t
	if err := unix.Lstat(real, &lst); err != nil {
		return nil, st, &fs.PathError{Op: "lstat", Path: real, Err: err}
	}
	if err := checkRegular(path, real, &lst); err != nil {
		return nil, st, err
	}
	fd, err := unix.Open(real, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, st, &fs.PathError{Op: "open", Path: real, Err: err}
	}
	f := os.NewFile(uintptr(fd), real)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, &fs.PathError{Op: "fstat", Path: real, Err: err}
	}
	if err := checkRegular(path, real, &st); err != nil {
		return nil, st, err
	}
	data, err = io.ReadAll(io.LimitReader(f, MaxConfigFileSize+1))
	if err != nil {
		return nil, st, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxConfigFileSize {
		return nil, st, &TrustError{Path: path, Reason: fmt.Sprintf("larger than %d bytes", MaxConfigFileSize)}
	}
	return data, st, nil
}

func checkRegular(path, real string, st *unix.Stat_t) error {
	name := path
	if real != path {
		if abs, _ := filepath.Abs(path); abs != real {
			name = path + " (-> " + real + ")"
		}
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG {
		return &TrustError{Path: name, Reason: "not a regular file (" + fileType(t) + ")"}
	}
	if st.Size > MaxConfigFileSize {
		return &TrustError{Path: name, Reason: fmt.Sprintf("%d bytes, larger than %d", st.Size, MaxConfigFileSize)}
	}
	return checkTrusted(name, st)
}

func fileType(t uint32) string {
	switch t {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return "not a file"
}

// configReadableWarning warns when the main config (which may hold the
// broker password) can be read by group or others.
func configReadableWarning(path string, st *unix.Stat_t) string {
	if st.Mode&0o044 == 0 {
		return ""
	}
	return fmt.Sprintf("%s is readable by group or others (mode %04o) and may hold the broker password: chmod 600 it", path, st.Mode&0o7777)
}

// refusal is err as said about path: a TrustError about path itself gives
// only its reason (the problem already names the file).
func refusal(path string, err error) error {
	var te *TrustError
	if errors.As(err, &te) && te.Path == path {
		return errors.New("refused: " + te.Reason)
	}
	return fmt.Errorf("refused: %w", err)
}
