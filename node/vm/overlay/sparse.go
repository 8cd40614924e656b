package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// zeroBlock is the granularity at which CopySparse turns runs of zeros into
// holes; filesystems allocate in 4 KiB blocks, disks images are written in
// larger runs.
const zeroBlock = 64 << 10

var zeros = make([]byte, zeroBlock)

// CopySparse copies src to the new file dst, keeping src's holes (found with
// SEEK_DATA/SEEK_HOLE where the filesystem reports them) and leaving
// all-zero blocks unwritten, so the copy takes only the space of the data.
// It is Clone's fallback when the filesystem cannot share extents.
func CopySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("sparse copy: %w", err)
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return fmt.Errorf("sparse copy: %w", err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("sparse copy: %s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sparse copy: %w", err)
	}
	if err := copySparse(in, out, info.Size()); err != nil {
		out.Close()
		os.Remove(dst)
		return fmt.Errorf("sparse copy %s -> %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return fmt.Errorf("sparse copy %s -> %s: %w", src, dst, err)
	}
	return nil
}

func copySparse(in, out *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			return out.Sync() // only a hole remains
		case err != nil:
			// The filesystem cannot report holes: scan everything.
			return copyRange(in, out, off, size, buf)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return copyRange(in, out, data, size, buf)
		}
		if err := copyRange(in, out, data, hole, buf); err != nil {
			return err
		}
		off = hole
	}
	return out.Sync()
}

// copyRange copies [from, to) of in to out, skipping all-zero blocks.
func copyRange(in, out *os.File, from, to int64, buf []byte) error {
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if _, err := in.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return err
		}
		for b := int64(0); b < n; b += zeroBlock {
			blk := buf[b:min(b+zeroBlock, n)]
			if bytes.Equal(blk, zeros[:len(blk)]) {
				continue
			}
			if _, err := out.WriteAt(blk, off+b); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}
