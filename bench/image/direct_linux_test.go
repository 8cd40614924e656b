package image

import (
	"os"
	"syscall"
)

// createDirect creates path for writing with direct I/O.
func createDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o644)
}
