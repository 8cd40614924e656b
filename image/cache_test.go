package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Concurrent callers share one download; when every caller has gone, the
// download stops.
func TestPullWaitersShareOnePull(t *testing.T) {
	e := newEnv(t)
	desc := e.push(e.vmDirSized("src", smallDiskSize, smallRegions), "base:v1", smallChunk)
	c := e.open(Options{Concurrency: 1})

	var wg sync.WaitGroup
	imgs := make([]*Image, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			imgs[i], errs[i] = c.Pull(context.Background(), e.ref("base:v1"), PullOptions{})
		}()
	}
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil || imgs[i].Digest != desc.Digest {
			t.Fatalf("waiter %d: %v", i, errs[i])
		}
	}
	for _, ch := range desc.Image.Disk {
		if n := e.proxy.gets(ch.Layer.Digest.String()); n > 1 {
			t.Fatalf("chunk %d fetched %d times by 3 waiters", ch.Index, n)
		}
	}

	// Second image: two waiters, both leave; the pull must stop.
	v2 := e.push(e.vmDirSized("src2", smallDiskSize, append(smallRegions, region{off: 200 * mib, size: 20 * mib, kind: "random", seed: 11})), "base:v2", smallChunk)
	e.proxy.stall(v2.Image.Disk[12].Layer.Digest.String()) // new in v2: the pull cannot finish on its own
	slow := e.open(Options{Concurrency: 1})
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	started := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 2)
	go func() {
		_, err := slow.Pull(ctx1, e.ref("base:v2"), PullOptions{Progress: func(Progress) { once.Do(func() { close(started) }) }})
		errc <- err
	}()
	<-started
	go func() { _, err := slow.Pull(ctx2, e.ref("base:v2"), PullOptions{}); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	cancel1()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("first waiter: %v", err)
	}
	slow.mu.Lock()
	running := len(slow.flights)
	slow.mu.Unlock()
	if running != 1 {
		t.Fatalf("pull stopped while a waiter remained (%d flights)", running)
	}
	cancel2()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("second waiter: %v", err)
	}
	slow.mu.Lock()
	running = len(slow.flights)
	slow.mu.Unlock()
	if running != 0 {
		t.Fatal("pull still registered after every waiter left")
	}
	// The abandoned pull winds down and releases its lock.
	lockCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := mustInspect(t, e.ref("base:v2")).Digest
	unlock, err := lock(lockCtx, slow.partialDir(d)+".lock")
	if err != nil {
		t.Fatalf("abandoned pull did not stop: %v", err)
	}
	unlock()
	if _, err := os.Stat(slow.imageDir(d)); !os.IsNotExist(err) {
		t.Fatalf("abandoned pull published the image: %v", err)
	}
}

// A cached disk that changed after it was recorded is verified before use;
// only chunks that no longer match are fetched again.
func TestCachedDiskReverified(t *testing.T) {
	e := newEnv(t)
	src := e.vmDirSized("src", smallDiskSize, smallRegions)
	desc := e.push(src, "base:v1", smallChunk)
	img, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Only the timestamp changes: verified, no download.
	later := time.Now().Add(time.Hour)
	os.Chtimes(img.Disk, later, later)
	e.proxy.reset()
	if _, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{Policy: PullNever}); err != nil {
		t.Fatalf("re-verified unchanged content: %v", err)
	}
	if n := e.proxy.diskGets(desc.Image); n != 0 {
		t.Fatalf("%d downloads for an intact disk", n)
	}

	// A byte changes in chunk 3 (48-64 MiB), in a run that should be zero:
	// the repair must punch it out, not skip it.
	f, err := os.OpenFile(img.Disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, 49*mib)
	f.Close()
	if _, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{Policy: PullNever}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Never with a damaged cached disk: %v", err)
	}
	img2, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{Policy: PullIfNotPresent})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(src, DiskFile), img2.Disk)
	if n, want := e.proxy.diskGets(desc.Image), e.proxy.gets(desc.Image.Disk[3].Layer.Digest.String()); n != 1 || want != 1 {
		t.Fatalf("repair downloaded %d chunks (chunk 3: %d); want only chunk 3", n, want)
	}
}

func TestPrune(t *testing.T) {
	e := newEnv(t)
	var digests []string
	for i, name := range []string{"a:1", "b:1", "c:1"} {
		regions := []region{{off: int64(i) * 16 * mib, size: 4 * mib, kind: "random", seed: uint64(i)}}
		e.push(e.vmDirSized(name[:1], 64*mib, regions), name, smallChunk)
		img, err := e.cache.Pull(context.Background(), e.ref(name), PullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, img.Digest.String())
		time.Sleep(20 * time.Millisecond)
	}
	// Use "a" again: "b" is now the least recently used.
	if _, err := e.cache.Pull(context.Background(), e.ref("a:1"), PullOptions{Policy: PullNever}); err != nil {
		t.Fatal(err)
	}
	list, _ := e.cache.List()
	var total int64
	for _, img := range list {
		total += img.Allocated
	}
	c := e.open(Options{InUse: func(d digest.Digest) bool { return d.String() == digests[2] }})
	removed, err := c.Prune(context.Background(), total-1)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].Digest.String() != digests[1] {
		t.Fatalf("pruned %+v, want only b", removed)
	}
	// A budget of zero keeps only what is in use.
	if removed, _ = c.Prune(context.Background(), 0); len(removed) != 1 || removed[0].Digest.String() != digests[0] {
		t.Fatalf("second prune removed %+v", removed)
	}
	list, _ = c.List()
	if len(list) != 1 || list[0].Digest.String() != digests[2] {
		t.Fatalf("left %+v", list)
	}
	if _, err := c.Pull(context.Background(), e.ref("b:1"), PullOptions{Policy: PullNever}); !errors.Is(err, ErrNotPresent) {
		t.Fatalf("pruned image still resolvable: %v", err)
	}
}
