package applelz4

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/pierrec/lz4/v4"
)

// Writer compresses into an Apple LZ4 stream of independent 64 KiB blocks.
// Blocks that do not shrink are stored. Close writes the end marker; it does
// not close the underlying writer.
type Writer struct {
	w      io.Writer
	c      lz4.Compressor
	in     []byte // pending input, up to BlockSize
	out    []byte // header + compressed block
	err    error
	closed bool
}

// NewWriter returns a Writer compressing into w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{
		w:   w,
		in:  make([]byte, 0, BlockSize),
		out: make([]byte, 12+lz4.CompressBlockBound(BlockSize)),
	}
}

// Reset discards any state and makes z write a new stream to w.
func (z *Writer) Reset(w io.Writer) {
	z.w, z.in, z.err, z.closed = w, z.in[:0], nil, false
}

// Write implements io.Writer.
func (z *Writer) Write(p []byte) (int, error) {
	if z.closed {
		return 0, errors.New("applelz4: write after Close")
	}
	n := 0
	for len(p) > 0 && z.err == nil {
		if len(z.in) == 0 && len(p) >= BlockSize {
			z.err = z.writeBlock(p[:BlockSize])
			p, n = p[BlockSize:], n+BlockSize
			continue
		}
		k := copy(z.in[len(z.in):BlockSize], p)
		z.in = z.in[:len(z.in)+k]
		p, n = p[k:], n+k
		if len(z.in) == BlockSize {
			z.err = z.writeBlock(z.in)
			z.in = z.in[:0]
		}
	}
	return n, z.err
}

// Close flushes pending input and writes the end marker.
func (z *Writer) Close() error {
	if z.closed {
		return z.err
	}
	z.closed = true
	if z.err == nil && len(z.in) > 0 {
		z.err = z.writeBlock(z.in)
		z.in = z.in[:0]
	}
	if z.err == nil {
		_, z.err = z.w.Write(magicEnd[:])
	}
	return z.err
}

func (z *Writer) writeBlock(b []byte) error {
	n, err := z.c.CompressBlock(b, z.out[12:])
	if err != nil || n == 0 || n >= len(b) {
		copy(z.out[0:4], magicStored[:])
		binary.LittleEndian.PutUint32(z.out[4:8], uint32(len(b)))
		if _, err := z.w.Write(z.out[:8]); err != nil {
			return err
		}
		_, err := z.w.Write(b)
		return err
	}
	copy(z.out[0:4], magicCompressed[:])
	binary.LittleEndian.PutUint32(z.out[4:8], uint32(len(b)))
	binary.LittleEndian.PutUint32(z.out[8:12], uint32(n))
	_, err = z.w.Write(z.out[:12+n])
	return err
}
