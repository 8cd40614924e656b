package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/vzfleet/vzfleet/image/format"
)

// Options configure a Cache.
type Options struct {
	// Remote is how registries are reached; PullOptions.Auth overrides its
	// Auth per pull.
	Remote Remote
	// Concurrency is how many disk chunks one pull fetches at once
	// (default 4).
	Concurrency int
	// MinFreeSpace is the space a pull leaves free on the cache's file
	// system (default 1 GiB).
	MinFreeSpace int64
	// InUse reports images Prune must keep (e.g. ones running VMs use).
	InUse func(digest.Digest) bool
	// Logger receives progress of pulls and repairs (default: discard).
	Logger *slog.Logger

	freeSpace func(string) (int64, error) // tests replace statfs
}

// Cache is a digest-addressed store of VM images on one host, safe for
// concurrent use by goroutines and (through file locks) by processes.
type Cache struct {
	dir  string
	opts Options

	mu      sync.Mutex
	flights map[digest.Digest]*flight
	refMu   sync.Mutex
}

// Image is a complete image in the cache. Its files must not be modified:
// VMs boot from copy-on-write clones of them.
type Image struct {
	Digest   digest.Digest // of the manifest
	Refs     []string      // references known to resolve to it
	Layout   format.Layout
	Dir      string
	Disk     string // path of disk.img
	NVRAM    string // path of nvram.bin
	Config   string // path of config.json (tart's format)
	VM       *format.VMConfig
	DiskSize int64 // apparent size of the disk
	// Allocated is the space the image's files occupy (the disk is sparse).
	Allocated int64
	LastUsed  time.Time
	PulledAt  time.Time
}

// ErrNotPresent is returned by Pull with PullNever for an image not cached.
var ErrNotPresent = errors.New("image is not in the cache")

// ErrNoSpace is wrapped by errors about a full disk.
var ErrNoSpace = errors.New("not enough free disk space")

// OpenCache opens (creating if needed) the cache in dir.
func OpenCache(dir string, opts Options) (*Cache, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.MinFreeSpace == 0 {
		opts.MinFreeSpace = 1 << 30
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.freeSpace == nil {
		opts.freeSpace = freeSpace
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image cache %s: %w", dir, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, "images"), filepath.Join(abs, "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("image cache: %w", err)
		}
	}
	return &Cache{dir: abs, opts: opts, flights: map[digest.Digest]*flight{}}, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

func dirName(d digest.Digest) string { return d.Algorithm().String() + "-" + d.Encoded() }

func (c *Cache) imageDir(d digest.Digest) string { return filepath.Join(c.dir, "images", dirName(d)) }
func (c *Cache) partialDir(d digest.Digest) string {
	return filepath.Join(c.dir, "partial", dirName(d))
}
func (c *Cache) refsPath() string { return filepath.Join(c.dir, "refs.json") }

func (c *Cache) loadRefs() map[string]digest.Digest {
	refs := map[string]digest.Digest{}
	if err := readJSON(c.refsPath(), &refs); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.opts.Logger.Warn("image cache: ignoring unreadable refs.json", "err", err)
	}
	return refs
}

func (c *Cache) lookupRef(ref string) (digest.Digest, bool) {
	c.refMu.Lock()
	defer c.refMu.Unlock()
	d, ok := c.loadRefs()[ref]
	return d, ok
}

func (c *Cache) saveRef(ref string, d digest.Digest) error {
	c.refMu.Lock()
	defer c.refMu.Unlock()
	refs := c.loadRefs()
	if refs[ref] == d {
		return nil
	}
	refs[ref] = d
	return writeJSONAtomic(c.refsPath(), refs)
}

// load reads a complete image's record; it does not verify the disk.
func (c *Cache) load(d digest.Digest, refs map[string]digest.Digest) (*Image, *record, error) {
	dir := c.imageDir(d)
	var rec record
	if err := readJSON(filepath.Join(dir, recordFile), &rec); err != nil {
		return nil, nil, err
	}
	cfg, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, nil, err
	}
	vm, err := format.ParseVMConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	img := &Image{
		Digest: d, Layout: rec.Layout, Dir: dir,
		Disk: filepath.Join(dir, DiskFile), NVRAM: filepath.Join(dir, NVRAMFile), Config: filepath.Join(dir, ConfigFile),
		VM: vm, DiskSize: rec.DiskSize, PulledAt: rec.PulledAt,
	}
	for r, rd := range refs {
		if rd == d {
			img.Refs = append(img.Refs, r)
		}
	}
	sort.Strings(img.Refs)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			img.Allocated += allocated(fi)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, lastUsedFile)); err == nil {
		img.LastUsed = fi.ModTime()
	} else {
		img.LastUsed = rec.PulledAt
	}
	return img, &rec, nil
}

// unchanged reports whether the disk still has the size and modification
// time recorded when it was verified.
func unchanged(img *Image, rec *record) bool {
	fi, err := os.Stat(img.Disk)
	return err == nil && fi.Size() == rec.DiskSize && fi.ModTime().UnixNano() == rec.DiskModTime
}

func (c *Cache) touch(img *Image) {
	p := filepath.Join(img.Dir, lastUsedFile)
	now := time.Now()
	if err := os.Chtimes(p, now, now); errors.Is(err, os.ErrNotExist) {
		if f, err := os.Create(p); err == nil {
			f.Close()
		}
	}
	img.LastUsed = now
}

// List returns the complete images in the cache, most recently used first.
func (c *Cache) List() ([]Image, error) {
	entries, err := os.ReadDir(filepath.Join(c.dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("list image cache: %w", err)
	}
	c.refMu.Lock()
	refs := c.loadRefs()
	c.refMu.Unlock()
	var out []Image
	for _, e := range entries {
		alg, hex, ok := strings.Cut(e.Name(), "-")
		if !ok || !e.IsDir() {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if d.Validate() != nil {
			continue
		}
		img, _, err := c.load(d, refs)
		if err != nil {
			c.opts.Logger.Warn("image cache: skipping unreadable image", "dir", e.Name(), "err", err)
			continue
		}
		out = append(out, *img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// Remove deletes a cached image. Its directory is first renamed away, so
// the image disappears at once and never appears half-deleted.
func (c *Cache) Remove(d digest.Digest) error {
	trash, err := os.MkdirTemp(filepath.Join(c.dir, "partial"), ".trash-")
	if err != nil {
		return fmt.Errorf("remove image %s: %w", d, err)
	}
	defer os.RemoveAll(trash)
	if err := os.Rename(c.imageDir(d), filepath.Join(trash, "image")); err != nil {
		return fmt.Errorf("remove image %s: %w", d, err)
	}
	c.refMu.Lock()
	defer c.refMu.Unlock()
	refs := c.loadRefs()
	changed := false
	for r, rd := range refs {
		if rd == d {
			delete(refs, r)
			changed = true
		}
	}
	if changed {
		return writeJSONAtomic(c.refsPath(), refs)
	}
	return nil
}

// Prune removes least recently used images until the cache occupies at
// most budget bytes, keeping images in use (Options.InUse) or being
// pulled. Abandoned partial pulls are removed first. It returns the
// removed images.
func (c *Cache) Prune(ctx context.Context, budget int64) ([]Image, error) {
	c.pruneAbandoned()
	imgs, err := c.List()
	if err != nil {
		return nil, err
	}
	total := c.partialUsage()
	for _, img := range imgs {
		total += img.Allocated
	}
	var removed []Image
	for i := len(imgs) - 1; i >= 0 && total > budget; i-- {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		img := imgs[i]
		if c.opts.InUse != nil && c.opts.InUse(img.Digest) {
			continue
		}
		c.mu.Lock()
		_, pulling := c.flights[img.Digest]
		c.mu.Unlock()
		if pulling {
			continue
		}
		if err := c.Remove(img.Digest); err != nil {
			return removed, err
		}
		total -= img.Allocated
		removed = append(removed, img)
	}
	return removed, nil
}

// pruneAbandoned removes partial pulls no process is working on.
func (c *Cache) pruneAbandoned() {
	entries, _ := os.ReadDir(filepath.Join(c.dir, "partial"))
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(c.dir, "partial", e.Name())
		if strings.HasPrefix(e.Name(), ".trash-") {
			os.RemoveAll(p)
			continue
		}
		unlock, ok := tryLock(p + ".lock")
		if !ok {
			continue
		}
		os.RemoveAll(p)
		unlock()
	}
}

func (c *Cache) partialUsage() int64 {
	var n int64
	filepath.Walk(filepath.Join(c.dir, "partial"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += allocated(fi)
		}
		return nil
	})
	return n
}

// tryLock takes the lock file at path if no other process holds it.
func tryLock(path string) (unlock func(), ok bool) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false
	}
	ok, err = lockFile(f)
	if err != nil || !ok {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// lock waits for the lock file at path.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	for {
		if unlock, ok := tryLock(path); ok {
			return unlock, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
