//go:build linux || darwin

package image

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// freeSpace is the space an unprivileged writer can still use under path.
func freeSpace(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// allocated is the space a file really occupies (sparse files less than
// their size).
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}

// lockFile takes an exclusive advisory lock without blocking; ok is false
// when another process holds it.
func lockFile(f *os.File) (ok bool, err error) {
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == unix.EWOULDBLOCK {
		return false, nil
	}
	return err == nil, err
}

// holeOnly reports whether [off, off+n) of f holds no data at all (one
// hole), so its bytes are known to be zeros without reading them. File
// systems without hole reporting answer false, and the range is read.
func holeOnly(f *os.File, off, n int64) bool {
	next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if err == unix.ENXIO {
		return true // no data from off to the end of the file
	}
	return err == nil && next >= off+n
}
