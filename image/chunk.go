package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/vzfleet/vzfleet/image/applelz4"
	"github.com/vzfleet/vzfleet/image/format"
)

// zeroRun is the granularity of hole detection: runs of this many zero
// bytes (aligned within the chunk) are not written.
const zeroRun = 64 << 10

var zeroes = make([]byte, zeroRun)

// chunkWriter receives a chunk's uncompressed bytes, hashes them and writes
// them at the chunk's offset, leaving zero runs as holes. It refuses bytes
// beyond the chunk's size, so a hostile stream cannot write outside it.
// When dirty (the region may hold older data), zero runs are punched out
// instead of skipped.
type chunkWriter struct {
	f      *os.File
	base   int64 // chunk offset in the file
	size   int64
	pos    int64 // bytes received
	dirty  bool
	h      hash.Hash
	buf    []byte
	n      int   // bytes staged in buf
	start  int64 // chunk-relative offset of buf[0]
	onData func(n int64)
}

var stagingPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func newChunkWriter(f *os.File, base, size int64, dirty bool, h hash.Hash, onData func(int64)) *chunkWriter {
	return &chunkWriter{f: f, base: base, size: size, dirty: dirty, h: h, buf: *stagingPool.Get().(*[]byte), onData: onData}
}

func (w *chunkWriter) release() {
	if w.buf != nil {
		b := w.buf
		stagingPool.Put(&b)
		w.buf = nil
	}
}

var errChunkTooLong = errors.New("decodes to more bytes than its uncompressed-size annotation")

func (w *chunkWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.size-w.pos {
		return 0, errChunkTooLong
	}
	w.h.Write(p)
	w.pos += int64(len(p))
	n := len(p)
	for len(p) > 0 {
		k := copy(w.buf[w.n:], p)
		w.n += k
		p = p[k:]
		if w.n == len(w.buf) {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// flush writes the staged bytes: non-zero runs with one WriteAt each, zero
// runs skipped or (dirty) punched.
func (w *chunkWriter) flush() error {
	data := w.buf[:w.n]
	off := w.base + w.start
	isZero := func(i int) bool {
		return bytes.Equal(data[i:min(i+zeroRun, len(data))], zeroes[:min(zeroRun, len(data)-i)])
	}
	for i := 0; i < len(data); {
		start := i
		zero := isZero(i)
		for i < len(data) && isZero(i) == zero {
			i = min(i+zeroRun, len(data))
		}
		switch {
		case !zero:
			if _, err := w.f.WriteAt(data[start:i], off+int64(start)); err != nil {
				return err
			}
		case w.dirty:
			if err := punchHole(w.f, off+int64(start), int64(i-start)); err != nil {
				// No hole punching here: store the zeros.
				if _, err := w.f.WriteAt(data[start:i], off+int64(start)); err != nil {
					return err
				}
			}
		}
	}
	w.start += int64(w.n)
	w.n = 0
	if w.onData != nil {
		w.onData(int64(len(data)))
	}
	return nil
}

func (w *chunkWriter) Close() error {
	if w.n > 0 {
		return w.flush()
	}
	return nil
}

// countingHash hashes and counts what passes through it.
type countingHash struct {
	hash.Hash
	n      int64
	onData func(int64)
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.onData != nil {
		c.onData(int64(len(p)))
	}
	return c.Hash.Write(p)
}

// resumingReader continues a blob download that broke off with an HTTP
// Range request from the byte where it stopped. oras-go returns a seekable
// body when the registry accepts ranges; seeking to the end first drops the
// broken connection, so the next seek issues a fresh ranged GET.
type resumingReader struct {
	ctx      context.Context
	rc       io.ReadCloser
	pos      int64
	size     int64
	attempts int
	onResume func()
}

const maxResumes = 5

func (r *resumingReader) Read(p []byte) (int, error) {
	for {
		n, err := r.rc.Read(p)
		r.pos += int64(n)
		if err == nil || err == io.EOF || n > 0 {
			return n, err
		}
		if r.ctx.Err() != nil {
			return 0, r.ctx.Err()
		}
		s, ok := r.rc.(io.Seeker)
		if !ok || r.attempts >= maxResumes || r.pos >= r.size {
			return 0, err
		}
		r.attempts++
		select {
		case <-time.After(time.Duration(r.attempts) * 200 * time.Millisecond):
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
		if _, serr := s.Seek(r.size, io.SeekStart); serr != nil {
			return 0, errors.Join(err, serr)
		}
		if _, serr := s.Seek(r.pos, io.SeekStart); serr != nil {
			return 0, fmt.Errorf("%w; resuming at byte %d failed: %w", err, r.pos, serr)
		}
		if r.onResume != nil {
			r.onResume()
		}
	}
}

func (r *resumingReader) Close() error { return r.rc.Close() }

// ErrCorrupt is wrapped by errors about content that does not match its
// digest or does not decode: a corrupt blob in the registry or in the cache.
var ErrCorrupt = errors.New("image content is corrupt")

// fetchTarget is where a blob's uncompressed bytes go.
type fetchTarget struct {
	f     *os.File
	off   int64
	size  int64
	want  digest.Digest // of the uncompressed bytes
	dirty bool
}

// fetchBlob streams blob from the registry through its decompressor into
// the target, verifying both digests and the sizes.
func fetchBlob(ctx context.Context, repo *remote.Repository, blob ocispec.Descriptor, comp format.Compression, t fetchTarget, onNet, onData func(int64), onResume func()) error {
	rc, err := repo.Blobs().Fetch(ctx, blob)
	if err != nil {
		return fmt.Errorf("fetch blob %s: %w", blob.Digest, err)
	}
	rr := &resumingReader{ctx: ctx, rc: rc, size: blob.Size, onResume: onResume}
	defer rr.Close()

	ch := &countingHash{Hash: blob.Digest.Algorithm().Hash(), onData: onNet}
	src := io.TeeReader(io.LimitReader(rr, blob.Size+1), ch)
	var dec io.Reader
	switch comp {
	case format.CompressionAppleLZ4:
		dec = applelz4.NewReader(src)
	case format.CompressionGzip:
		zr, err := gzip.NewReader(src)
		if err != nil {
			return fmt.Errorf("blob %s: %w: gzip: %w", blob.Digest, ErrCorrupt, err)
		}
		dec = zr
	default:
		dec = src
	}
	w := newChunkWriter(t.f, t.off, t.size, t.dirty, t.want.Algorithm().Hash(), onData)
	defer w.release()
	if _, err := io.Copy(w, dec); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, applelz4.ErrCorrupt) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, errChunkTooLong) {
			return fmt.Errorf("blob %s: %w: %w", blob.Digest, ErrCorrupt, err)
		}
		return fmt.Errorf("blob %s: %w", blob.Digest, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("blob %s: write: %w", blob.Digest, err)
	}
	// Drain what the decoder did not need, so the blob digest covers it all.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("blob %s: %w", blob.Digest, err)
	}
	if ch.n != blob.Size {
		return fmt.Errorf("blob %s: %w: %d bytes, the manifest says %d", blob.Digest, ErrCorrupt, ch.n, blob.Size)
	}
	if got := digest.NewDigest(blob.Digest.Algorithm(), ch.Hash); got != blob.Digest {
		return fmt.Errorf("blob %s: %w: the registry sent content that hashes to %s", blob.Digest, ErrCorrupt, got)
	}
	if w.pos != t.size {
		return fmt.Errorf("blob %s: %w: decodes to %d bytes, the manifest says %d", blob.Digest, ErrCorrupt, w.pos, t.size)
	}
	if got := digest.NewDigest(t.want.Algorithm(), w.h); got != t.want {
		return fmt.Errorf("blob %s: %w: decodes to content with digest %s, the manifest says %s", blob.Digest, ErrCorrupt, got, t.want)
	}
	return nil
}

// copyRegion copies size bytes at srcOff of src into the target, verifying
// the digest on the way (cross-image dedup).
func copyRegion(ctx context.Context, src *os.File, srcOff int64, t fetchTarget, onData func(int64)) error {
	w := newChunkWriter(t.f, t.off, t.size, t.dirty, t.want.Algorithm().Hash(), onData)
	defer w.release()
	if _, err := io.CopyBuffer(w, &ctxReader{ctx, io.NewSectionReader(src, srcOff, t.size)}, make([]byte, 1<<20)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if w.pos != t.size {
		return fmt.Errorf("%w: %s is shorter than expected", ErrCorrupt, src.Name())
	}
	if got := digest.NewDigest(t.want.Algorithm(), w.h); got != t.want {
		return fmt.Errorf("%w: region at %d of %s hashes to %s, want %s", ErrCorrupt, srcOff, src.Name(), got, t.want)
	}
	return nil
}

// hashRegion hashes size bytes at off of f.
func hashRegion(ctx context.Context, f *os.File, off, size int64, alg digest.Algorithm) (digest.Digest, error) {
	h := alg.Hash()
	if _, err := io.CopyBuffer(h, &ctxReader{ctx, io.NewSectionReader(f, off, size)}, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return digest.NewDigest(alg, h), nil
}

var zeroDigests sync.Map // int64 size -> digest.Digest

// zeroDigest is the sha256 of size zero bytes, so all-zero chunks (common
// in disk images) need no download at all.
func zeroDigest(size int64) digest.Digest {
	if d, ok := zeroDigests.Load(size); ok {
		return d.(digest.Digest)
	}
	h := digest.SHA256.Hash()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		k := min(left, int64(len(buf)))
		h.Write(buf[:k])
		left -= k
	}
	d := digest.NewDigest(digest.SHA256, h)
	zeroDigests.Store(size, d)
	return d
}
