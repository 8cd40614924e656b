package image

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fpunchhole is struct fpunchhole from <sys/fcntl.h>.
type fpunchhole struct {
	flags    uint32
	reserved uint32
	offset   int64
	length   int64
}

// punchHole deallocates [off, off+n) so it reads as zeros (APFS needs
// block-aligned ranges; callers pass 64 KiB-aligned ones).
func punchHole(f *os.File, off, n int64) error {
	arg := fpunchhole{offset: off, length: n}
	_, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), uintptr(unix.F_PUNCHHOLE), uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return errno
	}
	return nil
}
