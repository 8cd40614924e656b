package image

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestChunkWriter(t *testing.T) {
	t.Parallel()
	const base, size = 3 << 20, 4 << 20
	content := make([]byte, size)
	copy(content[100:], bytes.Repeat([]byte("data"), 1000))      // start of the chunk
	copy(content[2<<20+5:], bytes.Repeat([]byte("more"), 50000)) // straddles staging buffers
	tests := []struct {
		name  string
		stale bool // the region held other bytes before
		dirty bool
		feed  []byte
		err   error
	}{
		{name: "fresh file", feed: content},
		{name: "dirty region", stale: true, dirty: true, feed: content},
		{name: "longer than declared", feed: append(append([]byte{}, content...), 'x'), err: errChunkTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Truncate(base + size + 4096)
			if tc.stale {
				f.WriteAt(bytes.Repeat([]byte{0xee}, size), base)
			}
			f.WriteAt([]byte("guard"), base+size) // just past the chunk
			w := newChunkWriter(f, base, size, tc.dirty, sha256.New(), nil)
			defer w.release()
			var werr error
			for p := tc.feed; len(p) > 0 && werr == nil; {
				k := min(len(p), 70001)
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
			if fi, _ := f.Stat(); allocated(fi) > 1<<20 {
				t.Fatalf("zero runs were written: %d bytes allocated", allocated(fi))
			}
		})
	}
}
