package image

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/vzfleet/vzfleet/image/format"
)

func TestChunkWriter(t *testing.T) {
	t.Parallel()
	const size = 4 << 20
	content := make([]byte, size)
	copy(content[100:], bytes.Repeat([]byte("data"), 1000))      // start of the chunk
	copy(content[2<<20+5:], bytes.Repeat([]byte("more"), 50000)) // straddles write boundaries
	tests := []struct {
		name   string
		base   int64 // chunk offset in the file
		stale  bool  // the region held other bytes before
		dirty  bool
		direct bool // with a direct-I/O handle, where the OS has one
		refuse bool // a direct handle whose writes fail (read-only)
		feed   []byte
		err    error
	}{
		{name: "fresh file", base: 3 << 20, feed: content},
		{name: "dirty region", base: 3 << 20, stale: true, dirty: true, feed: content},
		{name: "longer than declared", base: 3 << 20, feed: append(append([]byte{}, content...), 'x'), err: errChunkTooLong},
		{name: "direct", base: 3 << 20, direct: true, feed: content},
		{name: "direct unaligned chunk", base: 3<<20 + 1234, direct: true, stale: true, dirty: true, feed: content},
		{name: "direct refused", base: 3 << 20, refuse: true, stale: true, dirty: true, feed: content},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			base := tc.base
			f.Truncate(base + size + 4096)
			if tc.stale {
				f.WriteAt(bytes.Repeat([]byte{0xee}, size), base)
			}
			f.WriteAt([]byte("guard"), base+size) // just past the chunk
			w := newChunkWriter(f, base, size, tc.dirty, sha256.New(), nil)
			var direct *os.File
			if tc.direct {
				if direct = openDirect(f.Name()); direct != nil {
					defer direct.Close()
				}
				w.direct = direct
			}
			if tc.refuse {
				if direct, err = os.Open(f.Name()); err != nil {
					t.Fatal(err)
				}
				defer direct.Close()
				w.direct = direct
			}
			var werr error
			step := 70001
			if tc.direct || tc.refuse {
				step = 1 << 20 // whole pipeline buffers, as a pull writes them
			}
			for p := tc.feed; len(p) > 0 && werr == nil; {
				k := min(len(p), step)
				_, werr = w.Write(p[:k])
				p = p[k:]
			}
			if werr == nil {
				werr = w.Close()
			}
			if !errors.Is(werr, tc.err) {
				t.Fatalf("got %v, want %v", werr, tc.err)
			}
			got := make([]byte, size+5)
			f.ReadAt(got, base)
			if !bytes.Equal(got[size:], []byte("guard")) {
				t.Fatal("wrote past the chunk")
			}
			if tc.err != nil {
				return
			}
			if !bytes.Equal(got[:size], content) {
				t.Fatal("chunk content differs")
			}
			if tc.direct && direct != nil && w.viaCache && base%directAlign == 0 {
				t.Fatal("aligned writes fell back from direct I/O to the page cache")
			}
			if tc.refuse && !w.viaCache {
				t.Fatal("writes the direct handle refused were not redone through the page cache")
			}
			if fi, _ := f.Stat(); allocated(fi) > 1<<20 {
				t.Fatalf("zero runs were written: %d bytes allocated", allocated(fi))
			}
		})
	}
}

func TestZeroDigestOfTartChunk(t *testing.T) {
	t.Parallel()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for range format.DefaultChunkSize / int64(len(buf)) {
		h.Write(buf)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != zeroDigest512MiB || zeroDigest(format.DefaultChunkSize) != got {
		t.Fatalf("sha256 of 512 MiB of zeros is %s; the constant says %s", got, zeroDigest512MiB)
	}
}
