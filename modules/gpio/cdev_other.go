//go:build !linux

package gpio

import "errors"

// newCdev fails: the GPIO character device exists only on Linux.
func newCdev() (Backend, error) {
	return nil, errors.New("gpiocdev backend: the GPIO character device needs Linux (use backend \"fake\")")
}
