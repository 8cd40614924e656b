package image

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// An all-hole chunk is pushed without reading it; its layer must be the
// one reading its zeros would give (tart and older vzfleet pushes agree).
func TestPushHoleChunkSameAsWrittenZeros(t *testing.T) {
	e := newEnv(t)
	const size = 4 * smallChunk
	regions := []region{{off: 0, size: mib, kind: "text", seed: 1}, {off: 3 * smallChunk, size: mib, kind: "random", seed: 2}}
	holes := e.vmDirSized("holes", size, regions)
	zeros := e.vmDirSized("zeros", size, regions)
	f, err := os.OpenFile(filepath.Join(zeros, DiskFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 2*smallChunk), smallChunk); err != nil { // chunks 1 and 2: allocated zeros
		t.Fatal(err)
	}
	f.Close()

	for dir, want := range map[string]bool{holes: true, zeros: false} {
		f, err := os.Open(filepath.Join(dir, DiskFile))
		if err != nil {
			t.Fatal(err)
		}
		if got := holeOnly(f, smallChunk, smallChunk); got != want {
			t.Fatalf("%s: chunk 1 hole-only = %v, want %v", dir, got, want)
		}
		f.Close()
	}
	a := e.push(holes, "holes:v1", smallChunk)
	b := e.push(zeros, "zeros:v1", smallChunk)
	if len(a.Image.Disk) != 4 || len(b.Image.Disk) != 4 {
		t.Fatalf("chunks: %d and %d, want 4", len(a.Image.Disk), len(b.Image.Disk))
	}
	for i := range a.Image.Disk {
		ca, cb := a.Image.Disk[i], b.Image.Disk[i]
		if ca.Layer.Digest != cb.Layer.Digest || ca.Layer.Size != cb.Layer.Size || ca.Digest != cb.Digest {
			t.Errorf("chunk %d: from holes %s (%d bytes, content %s), from zeros %s (%d bytes, content %s)",
				i, ca.Layer.Digest, ca.Layer.Size, ca.Digest, cb.Layer.Digest, cb.Layer.Size, cb.Digest)
		}
	}
	img, err := e.cache.Pull(context.Background(), e.ref("holes:v1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(holes, DiskFile), img.Disk)
}
