//go:build !linux

package image

import "os"

// createDirect creates path for writing; elsewhere than Linux the floor
// writes through the page cache (it syncs at the end all the same).
func createDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}
