//go:build unix

package fleet

import (
	"io/fs"
	"syscall"
)

func fileInode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
