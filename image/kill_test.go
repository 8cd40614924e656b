package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMain lets the test binary double as a pull process that a test can
// kill with SIGKILL, as a crash or power loss would.
func TestMain(m *testing.M) {
	if dir := os.Getenv("VZFLEET_TEST_PULL_CACHE"); dir != "" {
		c, err := OpenCache(dir, Options{Concurrency: 1})
		if err == nil {
			_, err = c.Pull(context.Background(), os.Getenv("VZFLEET_TEST_PULL_REF"), PullOptions{})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPullKilledMidChunkResumes(t *testing.T) {
	e := newEnv(t)
	src := e.vmDirSized("src", smallDiskSize, smallRegions)
	desc := e.push(src, "base:v1", smallChunk)
	victim := desc.Image.Disk[1] // 16-32 MiB: random data, a large blob
	reached := make(chan struct{})
	e.proxy.mu.Lock()
	e.proxy.hold = map[string]holdAt{victim.Layer.Digest.String(): {after: victim.Layer.Size / 2, reached: reached}}
	e.proxy.mu.Unlock()

	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "VZFLEET_TEST_PULL_CACHE="+e.cacheDir, "VZFLEET_TEST_PULL_REF="+e.ref("base:v1"))
	child.Stdout, child.Stderr = io.Discard, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		child.Process.Kill()
		t.Fatal("the child pull never reached the middle of chunk 1")
	}
	child.Process.Kill()
	child.Wait()

	var prog progressRecord
	if err := readJSON(filepath.Join(e.cache.partialDir(desc.Digest), progressFile), &prog); err != nil {
		t.Fatal(err)
	}
	if _, ok := prog.Done[0]; !ok || len(prog.Done) != 1 {
		t.Fatalf("after the kill, chunks recorded done: %v; want only chunk 0", prog.Done)
	}
	e.proxy.reset()
	img, err := e.cache.Pull(context.Background(), e.ref("base:v1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(src, DiskFile), img.Disk)
	if n := e.proxy.gets(desc.Image.Disk[0].Layer.Digest.String()); n != 0 {
		t.Fatalf("chunk 0 was complete before the kill but fetched %d times", n)
	}
	if n := e.proxy.gets(victim.Layer.Digest.String()); n != 1 {
		t.Fatalf("the interrupted chunk was fetched %d times, want 1", n)
	}
}
