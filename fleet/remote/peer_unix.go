//go:build linux || darwin

package remote

import (
	"errors"
	"net"
)

// peerUID is the user ID of the process at the other end of a Unix socket.
func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a Unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid := -1
	var serr error
	err = raw.Control(func(fd uintptr) { uid, serr = socketPeerUID(int(fd)) })
	return uid, errors.Join(err, serr)
}
