package overlay

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Clone makes dst (which must not exist) a copy of src: a reflink sharing
// src's extents where the filesystem supports FICLONE (btrfs, XFS, bcachefs,
// ...), otherwise a sparse copy. It reports which was done.
func Clone(src, dst string) (Method, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("clone: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("clone: %w", err)
	}
	err = unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
	if err == nil {
		if err := out.Close(); err != nil {
			os.Remove(dst)
			return "", fmt.Errorf("clone %s -> %s: %w", src, dst, err)
		}
		return Reflink, nil
	}
	out.Close()
	os.Remove(dst)
	if !reflinkUnsupported(err) {
		return "", fmt.Errorf("clone %s -> %s: FICLONE: %w", src, dst, err)
	}
	if err := CopySparse(src, dst); err != nil {
		return "", err
	}
	return SparseCopy, nil
}

// reflinkUnsupported reports errors meaning "this filesystem (or this pair
// of files) cannot share extents", as opposed to real I/O failures.
func reflinkUnsupported(err error) bool {
	for _, e := range []error{unix.EOPNOTSUPP, unix.ENOTSUP, unix.EXDEV, unix.EINVAL, unix.ENOTTY, unix.ENOSYS, unix.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
