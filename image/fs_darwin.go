package image

import (
	"os"

	"golang.org/x/sys/unix"
)

// punchHole deallocates [off, off+n) so it reads as zeros. APFS needs
// block-aligned ranges; on error callers write zeros instead.
//
// fcntl(F_PUNCHHOLE) takes a struct fpunchhole {u32 flags; u32 reserved;
// off_t offset; off_t length}, which is the prefix of the Fstore_t that
// x/sys passes through its libc fcntl wrapper: flags=0 and reserved=0 map
// onto Flags and Posmode.
func punchHole(f *os.File, off, n int64) error {
	return unix.FcntlFstore(f.Fd(), unix.F_PUNCHHOLE, &unix.Fstore_t{Offset: off, Length: n})
}

// startWriteback is a no-op: darwin has no asynchronous range writeback;
// the fsync before an image is published writes everything.
func startWriteback(*os.File, int64, int64) {}

// openDirect opens path for writing with F_NOCACHE, darwin's counterpart
// of O_DIRECT: page-aligned writes through it bypass the unified buffer
// cache. It returns nil if that cannot be set (writes then go through the
// cache).
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_NOCACHE, 1); err != nil {
		f.Close()
		return nil
	}
	return f
}
