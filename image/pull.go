package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/vzfleet/vzfleet/image/format"
)

// PullPolicy says when Pull contacts the registry. The values are
// Kubernetes' imagePullPolicy values.
type PullPolicy string

const (
	// PullAlways resolves the reference every time; only chunks not
	// already cached (in any image) are downloaded.
	PullAlways PullPolicy = "Always"
	// PullIfNotPresent uses the cached image the reference last resolved
	// to, without contacting the registry.
	PullIfNotPresent PullPolicy = "IfNotPresent"
	// PullNever uses the cache only.
	PullNever PullPolicy = "Never"
)

// PullOptions tune one Pull.
type PullOptions struct {
	Policy PullPolicy // default IfNotPresent
	// Auth, if set, replaces Options.Remote.Auth for this pull.
	Auth *Auth
	// Progress, if set, receives progress reports, one at a time, from
	// the pull's goroutines; it must return quickly.
	Progress func(Progress)
}

// Progress reports a pull. Byte counts are of the uncompressed disk and
// NVRAM; chunks found locally (resumed, deduplicated, all-zero) count as
// done without being downloaded.
type Progress struct {
	Reference   string
	Digest      digest.Digest
	BytesDone   int64
	BytesTotal  int64
	Downloaded  int64 // compressed bytes received from the registry
	ChunksDone  int
	ChunksTotal int
	Done        bool
}

// flight is one pull shared by every caller waiting for the same image.
type flight struct {
	done    chan struct{}
	img     *Image
	err     error
	cancel  context.CancelFunc
	waiters map[int]func(Progress)
	next    int
}

// Pull returns the cached image for ref, pulling it first when the policy
// asks for it. Concurrent pulls of one image share a single download,
// which is cancelled when every caller's ctx is done.
func (c *Cache) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	img, err := c.pull(ctx, ref, opts)
	return img, classify(err)
}

func (c *Cache) pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	key := r.String()
	if opts.Policy == "" {
		opts.Policy = PullIfNotPresent
	}
	rm := c.opts.Remote
	if opts.Auth != nil {
		rm.Auth = *opts.Auth
	}

	run := func(d digest.Digest, repo *remote.Repository, im *format.Image) (*Image, error) {
		return c.join(ctx, d, opts.Progress, func(ctx context.Context, report func(Progress)) (*Image, error) {
			return c.ensure(ctx, key, d, repo, im, report)
		})
	}
	switch opts.Policy {
	case PullAlways, PullIfNotPresent, PullNever:
	default:
		return nil, fmt.Errorf("pull %s: unknown pull policy %q (want Always, IfNotPresent or Never)", key, opts.Policy)
	}
	if opts.Policy != PullAlways {
		// Offline first: the digest in the reference or the one it last
		// resolved to.
		d, err := r.Digest()
		if err != nil {
			d, _ = c.lookupRef(key)
		}
		if d != "" {
			if img, ok := c.quickOpen(d); ok {
				reportCached(key, img, opts.Progress)
				return img, nil
			}
			if _, err := os.Stat(filepath.Join(c.imageDir(d), recordFile)); err == nil {
				// Cached but changed since verified: verify (and repair) it.
				var repo *remote.Repository
				if opts.Policy != PullNever {
					if repo, err = rm.repository(r); err != nil {
						return nil, err
					}
				}
				return run(d, repo, nil)
			}
		}
		if opts.Policy == PullNever {
			return nil, fmt.Errorf("%s: %w and the pull policy is Never", key, ErrNotPresent)
		}
	}
	repo, err := rm.repository(r)
	if err != nil {
		return nil, err
	}
	desc, im, err := fetchManifest(ctx, repo, r)
	if err != nil {
		return nil, err
	}
	if err := c.saveRef(key, desc.Digest); err != nil {
		return nil, fmt.Errorf("image cache: record %s: %w", key, err)
	}
	if img, ok := c.quickOpen(desc.Digest); ok {
		reportCached(key, img, opts.Progress)
		return img, nil
	}
	return run(desc.Digest, repo, im)
}

// reportCached tells a progress watcher that the image was already there.
func reportCached(ref string, img *Image, progress func(Progress)) {
	if progress != nil {
		progress(Progress{Reference: ref, Digest: img.Digest, BytesDone: img.DiskSize, BytesTotal: img.DiskSize, Done: true})
	}
}

// quickOpen returns a complete image whose disk is unchanged since it was
// verified.
func (c *Cache) quickOpen(d digest.Digest) (*Image, bool) {
	c.refMu.Lock()
	refs := c.loadRefs()
	c.refMu.Unlock()
	img, rec, err := c.load(d, refs)
	if err != nil || !unchanged(img, rec) {
		return nil, false
	}
	c.touch(img)
	return img, true
}

func (c *Cache) join(ctx context.Context, d digest.Digest, progress func(Progress), run func(context.Context, func(Progress)) (*Image, error)) (*Image, error) {
	c.mu.Lock()
	f := c.flights[d]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel, waiters: map[int]func(Progress){}}
		c.flights[d] = f
		go func() {
			img, err := run(fctx, func(p Progress) { c.broadcast(f, p) })
			c.mu.Lock()
			if c.flights[d] == f {
				delete(c.flights, d)
			}
			c.mu.Unlock()
			f.img, f.err = img, err
			close(f.done)
			cancel()
		}()
	}
	id := f.next
	f.next++
	if progress != nil {
		f.waiters[id] = progress
	} else {
		f.waiters[id] = func(Progress) {}
	}
	c.mu.Unlock()

	select {
	case <-f.done:
		c.mu.Lock()
		delete(f.waiters, id)
		c.mu.Unlock()
		if f.err != nil {
			return nil, f.err
		}
		img := *f.img
		return &img, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(f.waiters, id)
		if len(f.waiters) == 0 {
			// Nobody waits any more: stop, and let the next caller start afresh.
			f.cancel()
			if c.flights[d] == f {
				delete(c.flights, d)
			}
		}
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (c *Cache) broadcast(f *flight, p Progress) {
	c.mu.Lock()
	subs := make([]func(Progress), 0, len(f.waiters))
	for _, s := range f.waiters {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s(p)
	}
}

// ensure makes image d complete and verified in the cache: it re-verifies a
// cached image whose disk changed, repairs or pulls what is missing.
func (c *Cache) ensure(ctx context.Context, ref string, d digest.Digest, repo *remote.Repository, im *format.Image, report func(Progress)) (*Image, error) {
	unlock, err := lock(ctx, c.partialDir(d)+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	c.refMu.Lock()
	refs := c.loadRefs()
	c.refMu.Unlock()
	if img, rec, err := c.load(d, refs); err == nil {
		if unchanged(img, rec) {
			c.touch(img)
			return img, nil
		}
		good, err := c.verify(ctx, img, rec)
		if err != nil {
			return nil, err
		}
		if len(good) == len(rec.Chunks) {
			if err := c.restamp(img, rec); err != nil {
				return nil, err
			}
			c.touch(img)
			return img, nil
		}
		if repo == nil {
			return nil, fmt.Errorf("%s: %w: the cached disk changed and %d of %d chunks no longer match; pull it again with policy IfNotPresent or Always", ref, ErrCorrupt, len(rec.Chunks)-len(good), len(rec.Chunks))
		}
		c.opts.Logger.Warn("image cache: cached disk changed; fetching the chunks that no longer match", "image", ref, "bad", len(rec.Chunks)-len(good))
		if err := c.demote(d, good); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("image cache: %s: %w", c.imageDir(d), err)
	}
	if repo == nil {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotPresent)
	}
	if im == nil {
		r, _ := ParseReference(ref)
		r.Reference = d.String()
		if _, im, err = fetchManifest(ctx, repo, r); err != nil {
			return nil, err
		}
	}
	return c.pullInto(ctx, ref, d, repo, im, report)
}

// verify hashes every chunk of a cached disk and returns the indexes of
// those that still match.
func (c *Cache) verify(ctx context.Context, img *Image, rec *record) (map[int]digest.Digest, error) {
	f, err := os.Open(img.Disk)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", img.Disk, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	good := map[int]digest.Digest{}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for i, ch := range rec.Chunks {
		if ch.Offset+ch.Size > fi.Size() {
			continue
		}
		if ch.Digest == zeroDigest(ch.Size) && holeOnly(f, ch.Offset, ch.Size) {
			mu.Lock()
			good[i] = ch.Digest // reads as zeros without hashing them
			mu.Unlock()
			continue
		}
		g.Go(func() error {
			got, err := hashRegion(ctx, f, ch.Offset, ch.Size, ch.Digest.Algorithm())
			if err != nil {
				return fmt.Errorf("verify %s: %w", img.Disk, err)
			}
			if got == ch.Digest {
				mu.Lock()
				good[i] = ch.Digest
				mu.Unlock()
			}
			return nil
		})
	}
	return good, g.Wait()
}

// checkDone hashes the chunks a progress record lists as done and drops
// those whose bytes no longer match from done.
func (c *Cache) checkDone(ctx context.Context, disk *os.File, im *format.Image, done map[int]digest.Digest) error {
	var mu sync.Mutex
	var bad []int
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for i := range done {
		ch := im.Disk[i]
		if zeroChunk(ch) && holeOnly(disk, ch.Offset, ch.Size) {
			continue // reads as zeros without hashing them
		}
		g.Go(func() error {
			got, err := hashRegion(gctx, disk, ch.Offset, ch.Size, ch.Digest.Algorithm())
			if err != nil {
				return fmt.Errorf("check resumed chunk %d of %s: %w", i+1, disk.Name(), err)
			}
			if got != ch.Digest {
				mu.Lock()
				bad = append(bad, i)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, i := range bad {
		delete(done, i)
	}
	if len(bad) > 0 {
		c.opts.Logger.Warn("image cache: chunks recorded before an interruption were lost; fetching them again", "file", disk.Name(), "chunks", len(bad))
	}
	return nil
}

// restamp records the disk's current modification time after a successful
// verification.
func (c *Cache) restamp(img *Image, rec *record) error {
	fi, err := os.Stat(img.Disk)
	if err != nil {
		return err
	}
	rec.DiskModTime = fi.ModTime().UnixNano()
	return writeJSONAtomic(filepath.Join(img.Dir, recordFile), rec)
}

// demote moves a complete image whose disk no longer matches back to
// partial/, marking the chunks that still match as done.
func (c *Cache) demote(d digest.Digest, good map[int]digest.Digest) error {
	pdir := c.partialDir(d)
	if err := os.RemoveAll(pdir); err != nil {
		return err
	}
	if err := os.Rename(c.imageDir(d), pdir); err != nil {
		return fmt.Errorf("image cache: move damaged image aside: %w", err)
	}
	return writeJSONAtomic(filepath.Join(pdir, progressFile), progressRecord{Manifest: d, Done: good})
}

// pullInto downloads image d into partial/ and renames it into images/.
func (c *Cache) pullInto(ctx context.Context, ref string, d digest.Digest, repo *remote.Repository, im *format.Image, report func(Progress)) (img *Image, err error) {
	pdir := c.partialDir(d)
	log := c.opts.Logger.With("image", ref, "digest", d)
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	defer func() {
		if err != nil && (errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC)) {
			// A pull that cannot fit leaves nothing behind to fill the disk.
			os.RemoveAll(pdir)
			if !errors.Is(err, ErrNoSpace) {
				err = fmt.Errorf("%w: %w", ErrNoSpace, err)
			}
		}
		if err != nil {
			err = fmt.Errorf("pull %s: %w", ref, err)
		}
	}()

	var prog progressRecord
	if err := readJSON(filepath.Join(pdir, progressFile), &prog); err != nil || prog.Manifest != d {
		prog = progressRecord{Manifest: d, Done: map[int]digest.Digest{}}
	}
	for i, dg := range prog.Done {
		if i < 0 || i >= len(im.Disk) || im.Disk[i].Digest != dg {
			delete(prog.Done, i)
		}
	}

	// Small files first: the VM config must parse before anything large moves.
	cfgBytes, err := fetchSmall(ctx, repo, im.Config.Layer, format.MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("VM config: %w", err)
	}
	vm, err := parseVMConfig(im, cfgBytes)
	if err != nil {
		return nil, err
	}
	if im.Layout != format.LayoutTart {
		if cfgBytes, err = vm.Marshal(); err != nil {
			return nil, err
		}
	}
	if err := writeFileAtomic(filepath.Join(pdir, ConfigFile), cfgBytes); err != nil {
		return nil, err
	}
	mb, err := jsonBytes(im.Manifest)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(pdir, manifestFile), mb); err != nil {
		return nil, err
	}

	diskPath := filepath.Join(pdir, DiskFile)
	var diskDirect *os.File
	disk, err := os.OpenFile(diskPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer disk.Close()
	if direct := openDirect(diskPath); direct != nil {
		defer direct.Close()
		diskDirect = direct
	}
	fi, err := disk.Stat()
	if err != nil {
		return nil, err
	}
	fresh := fi.Size() == 0
	if fi.Size() != im.DiskSize {
		// Not the disk the progress record describes: start over.
		prog.Done = map[int]digest.Digest{}
		if err := disk.Truncate(im.DiskSize); err != nil {
			return nil, fmt.Errorf("size disk %s: %w", diskPath, err)
		}
	}

	if len(prog.Done) > 0 {
		// Chunks are recorded done without syncing the disk (it is synced
		// once, before the image is published), so after a crash a recorded
		// chunk may have been lost: trust only those that still hash right.
		if err := c.checkDone(ctx, disk, im, prog.Done); err != nil {
			return nil, err
		}
	}

	// Free space: every chunk still to write, counted in full (holes make
	// the real need smaller), plus the NVRAM.
	need := im.NVRAM.Size
	for i, ch := range im.Disk {
		if _, done := prog.Done[i]; !done && !zeroChunk(ch) {
			need += ch.Size
		}
	}
	free, err := c.opts.freeSpace(pdir)
	if err != nil {
		return nil, fmt.Errorf("check free space: %w", err)
	}
	if need+c.opts.MinFreeSpace > free {
		return nil, fmt.Errorf("%w in %s: the image needs up to %d MiB and %d MiB must stay free, but only %d MiB are available; free space or prune the cache", ErrNoSpace, c.dir, need>>20, c.opts.MinFreeSpace>>20, free>>20)
	}

	total := im.DiskSize + im.NVRAM.Size
	t := newTracker(Progress{Reference: ref, Digest: d, BytesTotal: total, ChunksTotal: len(im.Disk)}, report)
	for i := range prog.Done {
		t.p.BytesDone += im.Disk[i].Size
		t.p.ChunksDone++
	}
	t.emit(true)
	log.Info("pulling image", "chunks", len(im.Disk), "resumed", len(prog.Done), "diskSize", im.DiskSize)

	dedup := c.dedupIndex(d)
	var todo []int // decided before the workers start writing prog.Done
	for i := range im.Disk {
		if _, done := prog.Done[i]; !done {
			todo = append(todo, i)
		}
	}
	var progMu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for _, i := range todo {
		ch := im.Disk[i]
		g.Go(func() error {
			if err := c.pullChunk(gctx, repo, disk, diskDirect, ch, !fresh, dedup, t); err != nil {
				return fmt.Errorf("disk chunk %d of %d (offset %d): %w", i+1, len(im.Disk), ch.Offset, err)
			}
			progMu.Lock()
			defer progMu.Unlock()
			prog.Done[i] = ch.Digest
			if err := writeJSONAtomic(filepath.Join(pdir, progressFile), prog); err != nil {
				return err
			}
			t.chunkDone()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}

	nvDigest, err := c.pullNVRAM(ctx, repo, im, filepath.Join(pdir, NVRAMFile), t)
	if err != nil {
		return nil, fmt.Errorf("NVRAM: %w", err)
	}
	// The record may only claim what is durably on disk: one sync for the
	// whole disk (writeback was started chunk by chunk as data arrived).
	if err := disk.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", diskPath, err)
	}
	if err := disk.Close(); err != nil {
		return nil, err
	}
	fi, err = os.Stat(diskPath)
	if err != nil {
		return nil, err
	}
	rec := record{
		Manifest: d, Reference: ref, Layout: im.Layout, DiskSize: im.DiskSize,
		NVRAM: nvDigest, Config: digest.FromBytes(cfgBytes),
		DiskModTime: fi.ModTime().UnixNano(), PulledAt: time.Now().UTC(),
	}
	for _, ch := range im.Disk {
		rec.Chunks = append(rec.Chunks, chunkRecord{Offset: ch.Offset, Size: ch.Size, Digest: ch.Digest})
	}
	if err := writeJSONAtomic(filepath.Join(pdir, recordFile), rec); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(pdir, progressFile))
	if err := syncDir(pdir); err != nil {
		return nil, err
	}
	final := c.imageDir(d)
	if err := os.Rename(pdir, final); err != nil {
		return nil, fmt.Errorf("publish image: %w", err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return nil, err
	}
	t.p.Done = true
	t.emit(true)
	log.Info("pulled image", "downloaded", t.p.Downloaded)
	c.refMu.Lock()
	refs := c.loadRefs()
	c.refMu.Unlock()
	img, _, err = c.load(d, refs)
	if err != nil {
		return nil, err
	}
	c.touch(img)
	return img, nil
}

// pullChunk fills one chunk of the disk: nothing to do for an all-zero
// chunk, a local copy when another cached image has the same bytes, else a
// download (retried once if the data turns out corrupt).
func (c *Cache) pullChunk(ctx context.Context, repo *remote.Repository, disk, direct *os.File, ch format.Chunk, dirty bool, dedup map[digest.Digest]dedupSource, t *tracker) error {
	target := fetchTarget{f: disk, direct: direct, off: ch.Offset, size: ch.Size, want: ch.Digest, dirty: dirty}
	if zeroChunk(ch) {
		if dirty {
			if err := punchHole(disk, ch.Offset, ch.Size); err != nil {
				if err := writeZeros(disk, ch.Offset, ch.Size); err != nil {
					return err
				}
			}
		}
		t.data(ch.Size)
		return nil
	}
	if src, ok := dedup[ch.Digest]; ok {
		var copied int64
		err := func() error {
			f, err := os.Open(src.path)
			if err != nil {
				return err
			}
			defer f.Close()
			return copyRegion(ctx, f, src.offset, target, func(n int64) { copied += n; t.data(n) })
		}()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.opts.Logger.Warn("image cache: local copy of a chunk failed; downloading it", "source", src.path, "err", err)
		t.data(-copied)
		target.dirty = true
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var written int64
		err = fetchBlob(ctx, repo, ch.Layer, ch.Compression, target, t.net, func(n int64) { written += n; t.data(n) })
		if err == nil {
			return nil
		}
		t.data(-written)
		target.dirty = true
		if ctx.Err() != nil || !errors.Is(err, ErrCorrupt) {
			return err
		}
	}
	return err
}

func writeZeros(f *os.File, off, size int64) error {
	for size > 0 {
		k := min(size, int64(len(zeroes)))
		if _, err := f.WriteAt(zeroes[:k], off); err != nil {
			return err
		}
		off, size = off+k, size-k
	}
	return nil
}

func (c *Cache) pullNVRAM(ctx context.Context, repo *remote.Repository, im *format.Image, path string, t *tracker) (digest.Digest, error) {
	var b []byte
	var err error
	switch im.NVRAM.Compression {
	case format.CompressionGzip:
		var zb []byte
		if zb, err = fetchSmall(ctx, repo, im.NVRAM.Layer, format.MaxNVRAMSize); err != nil {
			return "", err
		}
		zr, err := gzip.NewReader(bytes.NewReader(zb))
		if err != nil {
			return "", fmt.Errorf("%w: gzip: %w", ErrCorrupt, err)
		}
		if b, err = io.ReadAll(io.LimitReader(zr, im.NVRAM.Size+1)); err != nil {
			return "", fmt.Errorf("%w: gzip: %w", ErrCorrupt, err)
		}
		if int64(len(b)) != im.NVRAM.Size || digest.FromBytes(b) != im.NVRAM.Digest {
			return "", fmt.Errorf("%w: NVRAM decompresses to %d bytes with digest %s, the manifest says %d bytes, %s", ErrCorrupt, len(b), digest.FromBytes(b), im.NVRAM.Size, im.NVRAM.Digest)
		}
	default:
		if b, err = fetchSmall(ctx, repo, im.NVRAM.Layer, format.MaxNVRAMSize); err != nil {
			return "", err
		}
	}
	t.net(im.NVRAM.Layer.Size)
	if err := writeFileAtomic(path, b); err != nil {
		return "", err
	}
	t.data(int64(len(b)))
	return digest.FromBytes(b), nil
}

// dedupSource is where a chunk's bytes already are in another cached image.
type dedupSource struct {
	path   string
	offset int64
}

// dedupIndex maps uncompressed chunk digests to their place in the other
// complete images of the cache.
func (c *Cache) dedupIndex(except digest.Digest) map[digest.Digest]dedupSource {
	idx := map[digest.Digest]dedupSource{}
	entries, _ := os.ReadDir(filepath.Join(c.dir, "images"))
	for _, e := range entries {
		dir := filepath.Join(c.dir, "images", e.Name())
		if e.Name() == dirName(except) {
			continue
		}
		var rec record
		if err := readJSON(filepath.Join(dir, recordFile), &rec); err != nil {
			continue
		}
		for _, ch := range rec.Chunks {
			if _, ok := idx[ch.Digest]; !ok {
				idx[ch.Digest] = dedupSource{path: filepath.Join(dir, DiskFile), offset: ch.Offset}
			}
		}
	}
	return idx
}

// tracker aggregates a pull's progress and reports it at most every
// 200 ms, and at every chunk's end.
type tracker struct {
	emitMu sync.Mutex
	mu     sync.Mutex
	p      Progress
	last   time.Time
	report func(Progress)
	net    func(int64)
	data   func(int64)
}

func newTracker(p Progress, report func(Progress)) *tracker {
	t := &tracker{p: p, report: report}
	t.net = func(n int64) { t.add(func(p *Progress) { p.Downloaded += n }) }
	t.data = func(n int64) { t.add(func(p *Progress) { p.BytesDone += n }) }
	return t
}

func (t *tracker) add(f func(p *Progress)) {
	t.mu.Lock()
	f(&t.p)
	t.mu.Unlock()
	t.emit(false)
}

func (t *tracker) chunkDone() {
	t.add(func(p *Progress) { p.ChunksDone++ })
	t.emit(true)
}

func (t *tracker) emit(force bool) {
	if t.report == nil {
		return
	}
	// One report at a time, never an older snapshot after a newer one.
	t.emitMu.Lock()
	defer t.emitMu.Unlock()
	t.mu.Lock()
	if !force && time.Since(t.last) < 200*time.Millisecond {
		t.mu.Unlock()
		return
	}
	t.last = time.Now()
	p := t.p
	t.mu.Unlock()
	t.report(p)
}

func jsonBytes(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }
