//go:build !linux

package harness

import (
	"errors"
	"net"
)

// ExtraAddress needs Linux's ip(8).
func ExtraAddress(net.IP) (func(), error) {
	return nil, errors.New("extra addresses need Linux")
}
