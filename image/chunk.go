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
	"syscall"
	"time"
	"unsafe"

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

// chunkWriter receives a chunk's uncompressed bytes, hashes them (when h is
// set) and writes them at the chunk's offset, leaving zero runs as holes.
// It refuses bytes beyond the chunk's size, so a hostile stream cannot
// write outside it. When dirty (the region may hold older data), zero runs
// are punched out instead of skipped. Zero runs are found in windows
// aligned within the chunk, whatever the sizes of the writes, and data
// written through the page cache is handed to the kernel's writeback as it
// accumulates, so the final sync has little left to do. Its Close must be
// called, also after a failure.
type chunkWriter struct {
	f       *os.File
	direct  *os.File // f opened for direct I/O, or nil (see writeAt)
	base    int64    // chunk offset in the file
	size    int64
	pos     int64 // bytes received
	dirty   bool
	h       hash.Hash
	onData  func(n int64)
	flushed int64 // chunk-relative end of the range handed to writeback

	queue    chan directWrite // to the goroutine doing direct writes, once started
	drained  chan struct{}    // closed when that goroutine has returned
	mu       sync.Mutex
	err      error // the first direct write's failure
	viaCache bool  // direct I/O failed, the queue writes through f
}

// writebackUnit is how much written data accumulates before writeback of
// it is started.
const writebackUnit = 32 << 20

func newChunkWriter(f *os.File, base, size int64, dirty bool, h hash.Hash, onData func(int64)) *chunkWriter {
	return &chunkWriter{f: f, base: base, size: size, dirty: dirty, h: h, onData: onData}
}

var errChunkTooLong = errors.New("decodes to more bytes than its uncompressed-size annotation")

func (w *chunkWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.size-w.pos {
		return 0, errChunkTooLong
	}
	if w.h != nil {
		hashInPieces(w.h, p)
	}
	off := w.base + w.pos
	for i := 0; i < len(p); {
		start := i
		zero := false
		for i < len(p) {
			// the window ends at the next zeroRun boundary of the chunk
			end := min(len(p), i+zeroRun-int((w.pos+int64(i))%zeroRun))
			z := isZero(p[i:end])
			if i > start && z != zero {
				break
			}
			zero = z
			i = end
		}
		switch {
		case !zero:
			if err := w.writeAt(p[start:i], off+int64(start)); err != nil {
				return 0, err
			}
		case w.dirty:
			if err := punchHole(w.f, off+int64(start), int64(i-start)); err != nil {
				// No hole punching here: store the zeros.
				if _, err := w.f.WriteAt(p[start:i], off+int64(start)); err != nil {
					return 0, err
				}
			}
		}
	}
	w.pos += int64(len(p))
	if w.pos-w.flushed >= writebackUnit {
		startWriteback(w.f, w.base+w.flushed, w.pos-w.flushed)
		w.flushed = w.pos
	}
	if w.onData != nil {
		w.onData(int64(len(p)))
	}
	return len(p), nil
}

// writeAt writes p at off. With a direct-I/O handle, the page-aligned
// middle goes to storage without passing through the page cache: a disk
// image is written once and read later by VMs, and filling the cache with
// it costs CPU (page allocation, then writeback) and evicts what the host
// uses. Unaligned edges go through the page cache. Direct writes wait for
// the device, so they are queued to a goroutine of the chunk's own and the
// decoder goes on meanwhile (see queueDirect).
func (w *chunkWriter) writeAt(p []byte, off int64) error {
	if w.direct == nil || len(p) < 2*directAlign {
		_, err := w.f.WriteAt(p, off)
		return err
	}
	head := int((directAlign - off%directAlign) % directAlign)
	mid := (len(p) - head) / directAlign * directAlign
	if head > 0 {
		if _, err := w.f.WriteAt(p[:head], off); err != nil {
			return err
		}
	}
	if rest := p[head+mid:]; len(rest) > 0 {
		if _, err := w.f.WriteAt(rest, off+int64(head+mid)); err != nil {
			return err
		}
	}
	return w.queueDirect(p[head:head+mid], off+int64(head))
}

// directQueue is how many pipeline buffers of one chunk may wait for the
// device.
const directQueue = 4

// directWrite is a block-aligned write waiting in a chunkWriter's queue.
type directWrite struct {
	buf *[]byte
	off int64
}

// queueDirect copies p (block-aligned in length and offset) into pipeline
// buffers, which are page-aligned, and queues them for the chunk's writer
// goroutine, starting it on first use. It returns the error of an earlier
// queued write, if any.
func (w *chunkWriter) queueDirect(p []byte, off int64) error {
	if w.queue == nil {
		w.queue = make(chan directWrite, directQueue)
		w.drained = make(chan struct{})
		go w.drain(w.direct)
	}
	for len(p) > 0 {
		if err := w.writeErr(); err != nil {
			return err
		}
		b := getPipeBuf()
		n := copy(*b, p)
		*b = (*b)[:n]
		w.queue <- directWrite{buf: b, off: off}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// drain performs the queued writes in order. After the first failure it
// only recycles the buffers; the failure is returned by the next Write or
// by Close.
func (w *chunkWriter) drain(direct *os.File) {
	defer close(w.drained)
	for req := range w.queue {
		if w.writeErr() == nil {
			err := writeDirect(w.f, &direct, *req.buf, req.off)
			w.mu.Lock()
			w.err, w.viaCache = err, direct == nil
			w.mu.Unlock()
		}
		putPipeBuf(req.buf)
	}
}

func (w *chunkWriter) writeErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// writeDirect writes p at off through *direct. Errors other than a full or
// failing device (EINVAL: the file system wants other alignment) switch
// to the page cache, through f, for this write and the ones after it.
func writeDirect(f *os.File, direct **os.File, p []byte, off int64) error {
	if *direct != nil && uintptr(unsafe.Pointer(&p[0]))%directAlign == 0 {
		_, err := (*direct).WriteAt(p, off)
		if err == nil || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) {
			return err
		}
		*direct = nil
	}
	_, err := f.WriteAt(p, off)
	return err
}

// directAlign is the alignment direct I/O needs of memory, offsets and
// lengths (the logical block size of common devices is at most 4 KiB).
const directAlign = 4096

func isZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeroes))
		if !bytes.Equal(b[:k], zeroes[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// Close waits for the queued direct writes and returns the first error
// among them, then starts writeback of what went through the page cache;
// it does not wait for that. Closing again does nothing more.
func (w *chunkWriter) Close() error {
	if w.queue != nil {
		close(w.queue)
		<-w.drained
		w.queue = nil
	}
	if err := w.writeErr(); err != nil {
		return err
	}
	if w.pos > w.flushed {
		startWriteback(w.f, w.base+w.flushed, w.pos-w.flushed)
		w.flushed = w.pos
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
	hashInPieces(c.Hash, p)
	return len(p), nil
}

// hashInPieces hashes p in pieces of 64 KiB. Hashing is assembly the
// runtime cannot preempt, and a garbage collection waits (spinning) until
// every goroutine reaches a safe point: hashing a whole 1 MiB buffer in one
// call made collections during a pull cost more than the decoding.
func hashInPieces(h hash.Hash, p []byte) {
	for len(p) > 0 {
		k := min(len(p), 64<<10)
		h.Write(p[:k])
		p = p[k:]
	}
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
	}
}

func (r *resumingReader) Close() error { return r.rc.Close() }

// ErrCorrupt is wrapped by errors about content that does not match its
// digest or does not decode: a corrupt blob in the registry or in the cache.
var ErrCorrupt = errors.New("image content is corrupt")

// fetchTarget is where a blob's uncompressed bytes go.
type fetchTarget struct {
	f      *os.File
	direct *os.File // f opened for direct I/O, or nil
	off    int64
	size   int64
	want   digest.Digest // of the uncompressed bytes
	dirty  bool
}

// fetchBlob streams blob from the registry through its decompressor into
// the target, verifying the blob's size and digest and the size it decodes
// to. Receiving and hashing run in one goroutine, decoding and writing in
// another (see pipe.go).
//
// The blob's digest, which the manifest (fetched by its digest) carries,
// is what ties the downloaded bytes to the image, as in every OCI client;
// the decoded bytes are a function of them. Their content digest is not
// also computed here: hashing a chunk's decoded bytes (zeros included)
// costs about four times as much as hashing the compressed ones, and was
// half of a pull's CPU. The content digests are checked where the bytes
// did not just arrive verified: chunks copied from another cached image,
// chunks recorded before an interruption, and a cached disk that changed.
func fetchBlob(ctx context.Context, repo *remote.Repository, blob ocispec.Descriptor, comp format.Compression, t fetchTarget, onNet, onData func(int64)) error {
	if err := blob.Digest.Validate(); err != nil {
		return fmt.Errorf("blob %s: %w", blob.Digest, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, err := repo.Blobs().Fetch(ctx, blob)
	if err != nil {
		return fmt.Errorf("fetch blob %s: %w", blob.Digest, err)
	}
	rr := &resumingReader{ctx: ctx, rc: rc, size: blob.Size}
	defer rr.Close()

	received := &countingHash{Hash: blob.Digest.Algorithm().Hash(), onData: onNet}
	src := newAsyncReader(io.TeeReader(io.LimitReader(rr, blob.Size+1), received))
	defer func() {
		cancel() // unblocks a read waiting on the network
		src.Close()
	}()
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
	w := newChunkWriter(t.f, t.off, t.size, t.dirty, nil, onData)
	w.direct = t.direct
	defer w.Close()     // on failure: no write of this attempt may land after it
	buf := getPipeBuf() // for decoders without WriteTo
	_, err = io.CopyBuffer(w, dec, *buf)
	putPipeBuf(buf)
	if err != nil {
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
	// Drain what the decoder did not need, so the size covers it all; the
	// reading goroutine has finished once this sees the end.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("blob %s: %w", blob.Digest, err)
	}
	if received.n != blob.Size {
		return fmt.Errorf("blob %s: %w: %d bytes, the manifest says %d", blob.Digest, ErrCorrupt, received.n, blob.Size)
	}
	if w.pos != t.size {
		return fmt.Errorf("blob %s: %w: decodes to %d bytes, the manifest says %d", blob.Digest, ErrCorrupt, w.pos, t.size)
	}
	if got := digest.NewDigest(blob.Digest.Algorithm(), received); got != blob.Digest {
		return fmt.Errorf("blob %s: %w: the registry sent bytes with digest %s", blob.Digest, ErrCorrupt, got)
	}
	return nil
}

// copyRegion copies size bytes at srcOff of src into the target, verifying
// the digest on the way (cross-image dedup).
func copyRegion(ctx context.Context, src *os.File, srcOff int64, t fetchTarget, onData func(int64)) error {
	w := newChunkWriter(t.f, t.off, t.size, t.dirty, t.want.Algorithm().Hash(), onData)
	w.direct = t.direct
	defer w.Close()
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

// zeroDigests caches zeroDigest by size. Tart's chunk size is known in
// advance, sparing every process that pulls one the 0.3 s of hashing
// 512 MiB of zeros (TestZeroDigestOfTartChunk checks the constant).
var zeroDigests sync.Map // int64 size -> digest.Digest

const zeroDigest512MiB = digest.Digest("sha256:9acca8e8c22201155389f65abbf6bc9723edc7384ead80503839f49dcc56d767")

func init() { zeroDigests.Store(int64(format.DefaultChunkSize), zeroDigest512MiB) }

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

// zeroChunk reports whether ch's annotations say it is all zeros. Such a
// chunk's blob is tiny (LZ4 and gzip shrink zeros over 200-fold), so a
// larger blob is not compared with zeroDigest, which hashes size bytes the
// first time a size is seen.
func zeroChunk(ch format.Chunk) bool {
	if ch.Layer.Size > ch.Size/128+64<<10 {
		return false
	}
	return ch.Digest == zeroDigest(ch.Size)
}
