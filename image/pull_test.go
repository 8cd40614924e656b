package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testChunk = 64 << 20
	mib       = 1 << 20
)

// testDisk is 1 GiB and a bit: holes, compressible and random regions,
// some crossing chunk boundaries, a short last chunk.
var testDiskSize int64 = 1<<30 + 12345

// The other tests use a 256 MiB disk in 16 MiB chunks: the same shapes,
// less time.
const (
	smallDiskSize = 256<<20 + 12345
	smallChunk    = 16 << 20
	smallChunks   = 17
)

var smallRegions = []region{
	{off: 0, size: 5 * mib, kind: "text", seed: 1},
	{off: 20 * mib, size: 8 * mib, kind: "random", seed: 2},
	{off: 50*mib + 12345, size: 10 * mib, kind: "text", seed: 3},
	{off: 127 * mib, size: 2 * mib, kind: "random", seed: 4},
	{off: 256*mib - mib, size: mib + 12345, kind: "text", seed: 5},
}

var testRegions = []region{
	{off: 0, size: 20 * mib, kind: "text", seed: 1},
	{off: 100 * mib, size: 8 * mib, kind: "random", seed: 2},
	{off: 200*mib + 12345, size: 30 * mib, kind: "text", seed: 3},
	{off: 510 * mib, size: 3 * mib, kind: "random", seed: 4},
	{off: 1<<30 - mib, size: mib + 12345, kind: "text", seed: 5},
}

// env is a registry, a proxy counting requests in front of it, and a cache.
type env struct {
	t        *testing.T
	regDir   string
	proxy    *proxy
	cacheDir string
	cache    *Cache
}

func newEnv(t *testing.T) *env {
	reg := startRegistry(t)
	e := &env{t: t, regDir: reg.StorageDir, proxy: newProxy(t, reg.Addr), cacheDir: t.TempDir()}
	e.cache = e.open(Options{})
	return e
}

func (e *env) open(opts Options) *Cache {
	c, err := OpenCache(e.cacheDir, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) ref(name string) string { return e.proxy.addr() + "/vm/" + name }

func (e *env) push(dir, name string, chunk int64) *Description {
	e.t.Helper()
	ctx := context.Background()
	if _, err := Push(ctx, dir, e.ref(name), PushOptions{ChunkSize: chunk, Concurrency: 2}); err != nil {
		e.t.Fatalf("push: %v", err)
	}
	d, err := Inspect(ctx, e.ref(name), Remote{})
	if err != nil {
		e.t.Fatalf("inspect: %v", err)
	}
	return d
}

func (e *env) vmDir(name string, regions []region) string {
	return e.vmDirSized(name, testDiskSize, regions)
}

func (e *env) vmDirSized(name string, size int64, regions []region) string {
	dir := filepath.Join(e.t.TempDir(), name)
	makeVMDir(e.t, dir, size, regions)
	return dir
}

func TestPushPullRoundTrip(t *testing.T) {
	e := newEnv(t)
	src := e.vmDir("src", testRegions)
	var pushes []PushProgress
	_, err := Push(context.Background(), src, e.ref("base:v1"), PushOptions{ChunkSize: testChunk, Progress: func(p PushProgress) { pushes = append(pushes, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pushes); n != 17 || pushes[n-1].BytesDone != testDiskSize || pushes[n-1].ChunksDone != 17 {
		t.Fatalf("push progress: %d reports, last %+v", n, pushes[n-1])
	}
	desc, err := Inspect(context.Background(), e.ref("base:v1"), Remote{})
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Image.Disk) != 17 || desc.Image.DiskSize != testDiskSize || desc.Image.Disk[16].Size != 12345 || desc.VM.CPUCount != 4 {
		t.Fatalf("inspect: %d chunks, size %d, vm %+v", len(desc.Image.Disk), desc.Image.DiskSize, desc.VM)
	}

	var last Progress
	var mu sync.Mutex
	start := time.Now()
	img, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{Progress: func(p Progress) { mu.Lock(); last = p; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pulled %d MiB in %v", testDiskSize>>20, time.Since(start))
	sameFile(t, filepath.Join(src, DiskFile), img.Disk)
	sameFile(t, filepath.Join(src, NVRAMFile), img.NVRAM)
	sameFile(t, filepath.Join(src, ConfigFile), img.Config)
	if img.Digest != desc.Digest || img.VM.MACAddress != "7e:2b:3a:11:22:33" || img.DiskSize != testDiskSize {
		t.Fatalf("image %+v", img)
	}
	if !last.Done || last.BytesDone != last.BytesTotal || last.ChunksDone != 17 {
		t.Fatalf("last progress %+v", last)
	}
	// Sparse: the data written is ~62 MiB; allow filesystem slack.
	fi, _ := os.Stat(img.Disk)
	if a := allocated(fi); a > 80*mib {
		t.Fatalf("pulled disk occupies %d MiB, not sparse", a>>20)
	}
	// Never touches only the cache; the all-zero chunks were never fetched.
	zeroChunks := 0
	for _, c := range desc.Image.Disk {
		if c.Digest == zeroDigest(c.Size) {
			zeroChunks++
			if e.proxy.gets(c.Layer.Digest.String()) != 0 {
				t.Errorf("all-zero chunk %d was downloaded", c.Index)
			}
		}
	}
	if zeroChunks < 8 {
		t.Fatalf("only %d all-zero chunks; the test disk is not what it should be", zeroChunks)
	}
	e.proxy.reset()
	for _, pol := range []PullPolicy{PullNever, PullIfNotPresent} {
		img2, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{Policy: pol})
		if err != nil || img2.Digest != img.Digest {
			t.Fatalf("%s: %v", pol, err)
		}
	}
	if _, err := e.cache.Pull(context.Background(), e.ref("other:v1"), PullOptions{Policy: PullNever}); !errors.Is(err, ErrNotPresent) {
		t.Fatalf("Never for an uncached image: %v", err)
	}
	list, err := e.cache.List()
	if err != nil || len(list) != 1 || list[0].Refs[0] != e.ref("base:v1") || list[0].Allocated > 80*mib {
		t.Fatalf("list: %v %+v", err, list)
	}
	// Pushing again uploads nothing.
	pushes = nil
	if _, err := Push(context.Background(), src, e.ref("base:v1"), PushOptions{ChunkSize: testChunk, Progress: func(p PushProgress) { pushes = append(pushes, p) }}); err != nil {
		t.Fatal(err)
	}
	if p := pushes[len(pushes)-1]; p.ChunksSkipped != 17 || p.BytesUploaded != 0 {
		t.Fatalf("second push: %+v", p)
	}
}

func TestPullResumesInterruptedBlobWithRange(t *testing.T) {
	e := newEnv(t)
	desc := e.push(e.vmDirSized("src", smallDiskSize, smallRegions), "base:v1", smallChunk)
	big := desc.Image.Disk[1] // holds the random region: a large blob
	e.proxy.mu.Lock()
	e.proxy.cutAfter[big.Layer.Digest.String()] = big.Layer.Size / 2
	e.proxy.mu.Unlock()
	img, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := big.Layer.Digest.String()
	if e.proxy.gets(d) != 2 || e.proxy.ranges[d] != 1 {
		t.Fatalf("chunk blob: %d GETs, %d ranged; want 2 and 1", e.proxy.gets(d), e.proxy.ranges[d])
	}
	f, _ := os.Open(img.Disk)
	defer f.Close()
	if got, _ := hashRegion(context.Background(), f, big.Offset, big.Size, big.Digest.Algorithm()); got != big.Digest {
		t.Fatal("resumed chunk differs")
	}
}

func TestPullCancelledThenResumed(t *testing.T) {
	e := newEnv(t)
	src := e.vmDirSized("src", smallDiskSize, smallRegions)
	desc := e.push(src, "base:v1", smallChunk)
	e.proxy.stall(desc.Image.Disk[7].Layer.Digest.String()) // random data: the pull cannot finish
	c := e.open(Options{Concurrency: 1})
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	_, err := c.Pull(ctx, e.ref("base:v1"), PullOptions{Progress: func(p Progress) {
		if p.ChunksDone >= 3 {
			once.Do(cancel)
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	if list, _ := c.List(); len(list) != 0 {
		t.Fatalf("a cancelled pull is visible: %+v", list)
	}
	// Wait until the shared pull has wound down and released its lock.
	unlock, err := lock(context.Background(), c.partialDir(desc.Digest)+".lock")
	if err != nil {
		t.Fatal(err)
	}
	var prog progressRecord
	if err := readJSON(filepath.Join(c.partialDir(desc.Digest), progressFile), &prog); err != nil {
		t.Fatal(err)
	}
	unlock()
	done := len(prog.Done)
	if done < 3 || done == len(desc.Image.Disk) {
		t.Fatalf("%d chunks recorded done after cancel", done)
	}
	e.proxy.reset()
	img, err := e.open(Options{}).Pull(context.Background(), e.ref("base:v1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(src, DiskFile), img.Disk)
	// Only the chunks not recorded (and not all-zero) were fetched again.
	want := 0
	for _, ch := range desc.Image.Disk {
		if _, ok := prog.Done[ch.Index]; !ok && ch.Digest != zeroDigest(ch.Size) {
			want++
		}
		if _, ok := prog.Done[ch.Index]; ok && e.proxy.gets(ch.Layer.Digest.String()) != 0 {
			t.Errorf("chunk %d was done but fetched again", ch.Index)
		}
	}
	if got := e.proxy.diskGets(desc.Image); got != want {
		t.Fatalf("resume fetched %d chunk blobs, want %d", got, want)
	}
}

func TestPullDetectsCorruptBlob(t *testing.T) {
	tests := []struct {
		name  string
		chunk int
		want  string
	}{
		// chunk 0 is text: LZ4 blocks that no longer decode
		{"undecodable", 0, "applelz4: corrupt stream"},
		// chunk 1 is random: stored blocks that decode to other bytes
		{"wrong bytes", 1, "the registry sent bytes with digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			desc := e.push(e.vmDirSized("src", smallDiskSize, smallRegions), "base:v1", smallChunk)
			bad := desc.Image.Disk[tc.chunk].Layer.Digest
			path := filepath.Join(e.regDir, "docker/registry/v2/blobs", bad.Algorithm().String(), bad.Encoded()[:2], bad.Encoded(), "data")
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			// at 5000: the first blocks; in the middle: chunk 1's random data
			at := int64(5000)
			if tc.chunk == 1 {
				blob, _ := os.ReadFile(path)
				at = int64(bytes.Index(blob, []byte("bv4-")) + 100)
			}
			if _, err := f.WriteAt([]byte("garbage!"), at); err != nil {
				t.Fatal(err)
			}
			f.Close()
			_, err = e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bad.String()) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull of a corrupt blob: %v", err)
			}
			t.Logf("reported: %v", err)
			if list, _ := e.cache.List(); len(list) != 0 {
				t.Fatalf("corrupt image visible: %+v", list)
			}
		})
	}
}

func TestDedupAcrossImages(t *testing.T) {
	e := newEnv(t)
	v1 := e.push(e.vmDirSized("v1", smallDiskSize, smallRegions), "base:v1", smallChunk)
	// v2 changes one region: only that chunk differs.
	regions2 := append(append([]region{}, smallRegions...), region{off: 90 * mib, size: 2 * mib, kind: "random", seed: 9})
	src2 := e.vmDirSized("v2", smallDiskSize, regions2)
	v2 := e.push(src2, "base:v2", smallChunk)
	if _, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{}); err != nil {
		t.Fatal(err)
	}
	e.proxy.reset()
	img, err := e.cache.Pull(context.Background(), e.ref("base:v2"), PullOptions{Policy: PullAlways})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(src2, DiskFile), img.Disk)
	changed := 0
	for i, ch := range v2.Image.Disk {
		if ch.Digest != v1.Image.Disk[i].Digest {
			changed++
		}
	}
	if changed != 1 || e.proxy.diskGets(v2.Image) != 1 {
		t.Fatalf("%d chunks changed, %d downloaded; want 1 and 1", changed, e.proxy.diskGets(v2.Image))
	}
}

func TestPullNoSpace(t *testing.T) {
	e := newEnv(t)
	e.push(e.vmDirSized("src", smallDiskSize, smallRegions), "base:v1", smallChunk)
	c := e.open(Options{freeSpace: func(string) (int64, error) { return 100 * mib, nil }})
	_, err := c.Pull(context.Background(), e.ref("base:v1"), PullOptions{})
	if !errors.Is(err, ErrNoSpace) || e.proxy.diskGets(mustInspect(t, e.ref("base:v1")).Image) != 0 {
		t.Fatalf("pull with too little space: %v", err)
	}
	t.Logf("reported: %v", err)
	assertNothingVisible(t, c)
}

func assertNothingVisible(t *testing.T, c *Cache) {
	t.Helper()
	if list, _ := c.List(); len(list) != 0 {
		t.Fatalf("image visible: %+v", list)
	}
	entries, _ := os.ReadDir(filepath.Join(c.Dir(), "partial"))
	for _, en := range entries {
		if en.IsDir() {
			t.Fatalf("partial pull left behind: %s", en.Name())
		}
	}
}

func mustInspect(t *testing.T, ref string) *Description {
	d, err := Inspect(context.Background(), ref, Remote{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPushPullBig is the multi-GiB round trip with tart's default 512 MiB
// chunks; it takes minutes, so it runs only with VZFLEET_IMAGE_BIG_TEST=1.
func TestPushPullBig(t *testing.T) {
	if os.Getenv("VZFLEET_IMAGE_BIG_TEST") == "" {
		t.Skip("set VZFLEET_IMAGE_BIG_TEST=1 for the 4 GiB round trip")
	}
	e := newEnv(t)
	const size = 4<<30 + 4097
	regions := []region{
		{off: 0, size: 64 * mib, kind: "text", seed: 1},
		{off: 700 * mib, size: 64 * mib, kind: "random", seed: 2},
		{off: 2048*mib - 10*mib, size: 20 * mib, kind: "text", seed: 3},
		{off: 4<<30 - 32*mib, size: 32*mib + 4097, kind: "random", seed: 4},
	}
	src := e.vmDirSized("src", size, regions)
	start := time.Now()
	desc := e.push(src, "big:1", 0)
	t.Logf("pushed 4 GiB in %v: %d chunks", time.Since(start), len(desc.Image.Disk))
	start = time.Now()
	img, err := e.cache.Pull(context.Background(), e.ref("big:1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pulled in %v", time.Since(start))
	sameFile(t, filepath.Join(src, DiskFile), img.Disk)
	fi, _ := os.Stat(img.Disk)
	if a := allocated(fi); a > 200*mib {
		t.Fatalf("pulled disk occupies %d MiB", a>>20)
	}
}

// Chunks are recorded done without syncing the disk, so after a power loss
// a recorded chunk may read back as zeros. A resumed pull must notice and
// fetch it again instead of publishing a wrong disk.
func TestPullResumeRefetchesLostChunk(t *testing.T) {
	e := newEnv(t)
	src := e.vmDirSized("src", smallDiskSize, smallRegions)
	desc := e.push(src, "base:v1", smallChunk)
	e.proxy.stall(desc.Image.Disk[7].Layer.Digest.String()) // random data: the pull cannot finish
	c := e.open(Options{Concurrency: 1})
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	_, err := c.Pull(ctx, e.ref("base:v1"), PullOptions{Progress: func(p Progress) {
		if p.ChunksDone >= 4 {
			once.Do(cancel)
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	unlock, err := lock(context.Background(), c.partialDir(desc.Digest)+".lock")
	if err != nil {
		t.Fatal(err)
	}
	var prog progressRecord
	if err := readJSON(filepath.Join(c.partialDir(desc.Digest), progressFile), &prog); err != nil {
		t.Fatal(err)
	}
	unlock()
	lost := desc.Image.Disk[1] // random data: recorded done (chunks go in order with Concurrency 1)
	if prog.Done[1] != lost.Digest {
		t.Fatalf("chunk 1 not recorded done: %v", prog.Done)
	}
	f, err := os.OpenFile(filepath.Join(c.partialDir(desc.Digest), DiskFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := punchHole(f, lost.Offset, lost.Size); err != nil {
		t.Fatal(err)
	}
	f.Close()

	e.proxy.reset()
	img, err := e.open(Options{}).Pull(context.Background(), e.ref("base:v1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(src, DiskFile), img.Disk)
	if n := e.proxy.gets(lost.Layer.Digest.String()); n != 1 {
		t.Fatalf("the lost chunk was fetched %d times, want 1", n)
	}
	for i, d := range prog.Done {
		if i != 1 && e.proxy.gets(desc.Image.Disk[i].Layer.Digest.String()) != 0 && d != zeroDigest(desc.Image.Disk[i].Size) {
			t.Errorf("chunk %d was done and intact but fetched again", i)
		}
	}
}
