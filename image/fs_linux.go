package image

import (
	"os"

	"golang.org/x/sys/unix"
)

// punchHole deallocates [off, off+n) so it reads as zeros.
func punchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// startWriteback asks the kernel to start writing [off, off+n) to storage
// without waiting, so the fsync before an image is published finds little
// left to write. Failures only cost that head start, so they are ignored.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// openDirect opens path for writing with O_DIRECT, or returns nil where the
// file system does not offer it (writes then go through the page cache).
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}
