package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// keyboard puts the terminal on stdin into a mode where keys arrive one by
// one, unechoed, and Ctrl-C is a key rather than a signal (so make, which
// runs the demo, never sees an interrupt and the demo ends cleanly). It
// returns nil when stdin is not a terminal.
type keyboard struct {
	fd   int
	orig unix.Termios
	keys chan byte
}

func openKeyboard() *keyboard {
	fd := int(os.Stdin.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil
	}
	k := &keyboard{fd: fd, orig: *t, keys: make(chan byte, 8)}
	raw := *t
	raw.Lflag &^= unix.ICANON | unix.ECHO | unix.ISIG
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil
	}
	go func() {
		buf := make([]byte, 1)
		for {
			if n, err := os.Stdin.Read(buf); err != nil || n == 0 {
				close(k.keys)
				return
			}
			k.keys <- buf[0]
		}
	}()
	return k
}

// Restore gives the terminal its settings back.
func (k *keyboard) Restore() {
	if k != nil {
		_ = unix.IoctlSetTermios(k.fd, unix.TCSETS, &k.orig)
	}
}
