package overlay

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Clone makes dst (which must not exist) a copy of src: an APFS clone
// sharing src's blocks (clonefile(2)), otherwise a sparse copy. It reports
// which was done.
func Clone(src, dst string) (Method, error) {
	err := unix.Clonefile(src, dst, unix.CLONE_NOFOLLOW)
	if err == nil {
		return Clonefile, nil
	}
	if !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EXDEV) {
		return "", fmt.Errorf("clone %s -> %s: clonefile: %w", src, dst, err)
	}
	if err := CopySparse(src, dst); err != nil {
		return "", err
	}
	return SparseCopy, nil
}
