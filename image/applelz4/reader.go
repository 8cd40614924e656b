package applelz4

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"

	"github.com/pierrec/lz4/v4"
)

// Reader decompresses an Apple LZ4 stream. It returns io.EOF only after the
// end marker; a stream cut short is reported as io.ErrUnexpectedEOF wrapped
// in an error that names the block. Data after an end marker is read as a
// further stream (Apple's decoder accepts concatenated streams).
type Reader struct {
	r   *bufio.Reader
	buf []byte // history window followed by the block being handed out
	beg int    // start of unread output in buf
	end int    // end of decoded output in buf
	src []byte // scratch for compressed block bytes

	block  int   // index of the next block
	offset int64 // compressed bytes consumed
	ended  bool  // an end marker was the last thing read
	err    error
}

// NewReader returns a Reader decompressing from r.
func NewReader(r io.Reader) *Reader {
	z := &Reader{}
	z.Reset(r)
	return z
}

// Reset makes z read a new stream from r, keeping its buffers.
func (z *Reader) Reset(r io.Reader) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 64<<10 {
		if z.r != nil {
			z.r.Reset(r)
			br = z.r
		} else {
			br = bufio.NewReaderSize(r, 256<<10)
		}
	}
	*z = Reader{r: br, buf: z.buf, src: z.src}
}

// CompressedOffset is how many compressed bytes have been consumed.
func (z *Reader) CompressedOffset() int64 { return z.offset }

// Read implements io.Reader.
func (z *Reader) Read(p []byte) (int, error) {
	for z.beg == z.end {
		if z.err != nil {
			return 0, z.err
		}
		z.err = z.next()
	}
	n := copy(p, z.buf[z.beg:z.end])
	z.beg += n
	return n, nil
}

// writeAhead is how much decoded output WriteTo gathers before a write,
// so that w gets few large writes rather than one per 64 KiB block.
const writeAhead = 1 << 20

// WriteTo implements io.WriterTo, handing decoded output to w straight from
// the decoding buffer, up to writeAhead bytes at a time.
func (z *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		// Decode ahead while a typical block still fits without moving
		// the pending output.
		for z.err == nil && z.end-z.beg < writeAhead && (z.buf == nil || len(z.buf)-z.end >= BlockSize) {
			z.err = z.next()
		}
		if z.beg < z.end {
			n, err := w.Write(z.buf[z.beg:z.end])
			total += int64(n)
			z.beg += n
			if err != nil {
				return total, err
			}
			if z.beg != z.end {
				return total, io.ErrShortWrite
			}
		}
		if z.err != nil {
			if z.err == io.EOF {
				return total, nil
			}
			return total, z.err
		}
		// Nothing pending: the next block may move only the history.
		z.err = z.next()
	}
}

// next decodes one block into buf, or returns io.EOF / an error.
func (z *Reader) next() error {
	var magic [4]byte
	n, err := io.ReadFull(z.r, magic[:])
	if err != nil {
		if n == 0 && err == io.EOF && z.ended {
			return io.EOF
		}
		if n == 0 && err == io.EOF {
			if z.block == 0 {
				return corrupt(0, z.offset, "empty stream: %w", io.ErrUnexpectedEOF)
			}
			return corrupt(z.block, z.offset, "stream ends without the bv4$ end marker: %w", io.ErrUnexpectedEOF)
		}
		return z.readErr("block magic", err)
	}
	z.ended = false
	switch magic {
	case magicEnd:
		z.offset += 4
		z.block++
		z.ended = true
		return nil
	case magicStored:
		var hdr [4]byte
		if _, err := io.ReadFull(z.r, hdr[:]); err != nil {
			return z.readErr("stored block header", err)
		}
		size := binary.LittleEndian.Uint32(hdr[:])
		if size > MaxBlockSize {
			return corrupt(z.block, z.offset, "stored block of %d bytes exceeds the %d-byte limit", size, MaxBlockSize)
		}
		dst := z.reserve(int(size))
		if _, err := io.ReadFull(z.r, dst); err != nil {
			return z.readErr("stored block data", err)
		}
		z.offset += 8 + int64(size)
		z.end += int(size)
	case magicCompressed:
		var hdr [8]byte
		if _, err := io.ReadFull(z.r, hdr[:]); err != nil {
			return z.readErr("compressed block header", err)
		}
		decoded := binary.LittleEndian.Uint32(hdr[0:4])
		encoded := binary.LittleEndian.Uint32(hdr[4:8])
		if decoded > MaxBlockSize {
			return corrupt(z.block, z.offset, "decoded size %d exceeds the %d-byte limit", decoded, MaxBlockSize)
		}
		if bound := uint32(lz4.CompressBlockBound(int(decoded))); encoded > bound {
			return corrupt(z.block, z.offset, "encoded size %d is larger than any LZ4 encoding of %d bytes (%d)", encoded, decoded, bound)
		}
		if cap(z.src) < int(encoded) {
			z.src = make([]byte, encoded)
		}
		src := z.src[:encoded]
		if _, err := io.ReadFull(z.r, src); err != nil {
			return z.readErr("compressed block data", err)
		}
		dst := z.reserve(int(decoded))
		dict := z.buf[max(0, z.end-WindowSize):z.end] // after reserve, which may move the history
		got, err := lz4.UncompressBlockWithDict(src, dst, dict)
		if err != nil {
			return corrupt(z.block, z.offset, "invalid LZ4 data: %v", err)
		}
		if got != int(decoded) {
			return corrupt(z.block, z.offset, "decoded %d bytes, header says %d", got, decoded)
		}
		z.offset += 12 + int64(encoded)
		z.end += int(decoded)
	default:
		return corrupt(z.block, z.offset, "unknown block magic %q", magic[:])
	}
	z.block++
	return nil
}

// reserve makes room for n decoded bytes after the output so far and
// returns that space; the caller advances z.end once it is filled. Output
// not yet handed out (beg..end) and the history window before end are
// kept.
func (z *Reader) reserve(n int) []byte {
	if z.buf == nil {
		z.buf = make([]byte, WindowSize+max(n, writeAhead))
	}
	if z.end+n > len(z.buf) {
		// Moving by multiples of 4 KiB keeps each byte's address congruent
		// to its stream offset, so page-aligned output stays aligned (which
		// direct I/O wants).
		from := min(z.beg, max(0, z.end-WindowSize)) &^ (4<<10 - 1)
		kept := z.end - from
		if kept+n > len(z.buf) {
			nb := make([]byte, kept+n)
			copy(nb, z.buf[from:z.end])
			z.buf = nb
		} else {
			copy(z.buf, z.buf[from:z.end])
		}
		z.beg -= from
		z.end = kept
	}
	return z.buf[z.end : z.end+n]
}

func (z *Reader) readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt(z.block, z.offset, "truncated %s: %w", what, io.ErrUnexpectedEOF)
	}
	return err
}
