package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

const gib = int64(1) << 30

// chunks are the data a test disk holds: offset -> content. The zero chunk
// must come back as a hole from a sparse copy.
var chunks = map[int64][]byte{
	0:             bytes.Repeat([]byte("boot"), 1024),
	3*gib + 12345: []byte("middle of the disk"),
	8*gib - 5:     []byte("tail!"),
}

// makeSparse creates a sparse file of size bytes holding chunks (those that
// fit) and one explicitly written 1 MiB run of zeros.
func makeSparse(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range chunks {
		if off+int64(len(b)) <= size {
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := f.WriteAt(make([]byte, 1<<20), 1*gib); err != nil {
		t.Fatal(err)
	}
}

func allocated(t testing.TB, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Blocks * 512
}

func checkContent(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	if info.Size() != size {
		t.Fatalf("%s: size %d, want %d", path, info.Size(), size)
	}
	for off, want := range chunks {
		got := make([]byte, len(want))
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s at %d: %q, want %q", path, off, got, want)
		}
	}
	got := make([]byte, 4096)
	if _, err := f.ReadAt(got, 5*gib); err != nil || !bytes.Equal(got, make([]byte, 4096)) {
		t.Errorf("%s: hole at 5 GiB reads %v, want zeros (%v)", path, got[:8], err)
	}
}

// TestCloneKeepsContentAndSparseness runs the clone Clone picks here and the
// sparse fallback explicitly: both keep the content, stay sparse, and are
// independent of the source afterwards.
func TestCloneKeepsContentAndSparseness(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		clone func(src, dst string) (Method, error)
	}{
		{"Clone", Clone},
		{"CopySparse", func(src, dst string) (Method, error) { return SparseCopy, CopySparse(src, dst) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
			size := 8 * gib
			makeSparse(t, src, size)
			m, err := tc.clone(src, dst)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("method %s; source allocates %d KiB, clone %d KiB", m, allocated(t, src)>>10, allocated(t, dst)>>10)
			checkContent(t, dst, size)
			if a := allocated(t, dst); a > 4<<20 {
				t.Errorf("clone of an 8 GiB sparse file allocates %d bytes, want < 4 MiB", a)
			}
			if m == SparseCopy && allocated(t, dst) >= allocated(t, src) {
				t.Errorf("sparse copy allocates %d bytes, source %d: the written zero run should have become a hole",
					allocated(t, dst), allocated(t, src))
			}
			f, err := os.OpenFile(dst, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("CLONE"), 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			checkContent(t, src, size)
			if _, err := tc.clone(src, dst); !errors.Is(err, os.ErrExist) {
				t.Errorf("cloning onto an existing file = %v, want ErrExist", err)
			}
		})
	}
}

// TestCloneMethodMatchesFilesystem: Clone shares extents exactly when the
// filesystem under the test's temp dir supports it (probed directly).
func TestCloneMethodMatchesFilesystem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	want := SparseCopy
	if reflinkWorks(t, dir) {
		want = sharedMethod
	}
	got, err := Clone(src, filepath.Join(dir, "dst"))
	if err != nil || got != want {
		t.Fatalf("Clone = %s, %v; the filesystem calls for %s", got, err, want)
	}
}

func TestCloneErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Clone(filepath.Join(dir, "missing"), filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Clone of a missing file = %v", err)
	}
	if err := CopySparse(dir, filepath.Join(dir, "y")); err == nil {
		t.Error("CopySparse of a directory succeeded")
	}
}

func TestStoreLifecycle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	disk, aux := filepath.Join(dir, "disk.img"), filepath.Join(dir, "nvram.bin")
	makeSparse(t, disk, 8*gib)
	if err := os.WriteFile(aux, []byte("nvram"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := Store{Root: filepath.Join(dir, "overlays")}
	a, err := s.Create("pod-a", disk, aux)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create("pod-b", disk, "")
	if err != nil {
		t.Fatal(err)
	}
	checkContent(t, a.DiskPath, 8*gib)
	if nv, _ := os.ReadFile(a.AuxPath); string(nv) != "nvram" {
		t.Errorf("nvram clone holds %q", nv)
	}
	if b.AuxPath != "" {
		t.Errorf("overlay without nvram has AuxPath %q", b.AuxPath)
	}
	if bytes.Equal(a.MAC, b.MAC) || bytes.Equal(a.MachineIdentifier, b.MachineIdentifier) {
		t.Error("two overlays share a MAC or machine identifier")
	}
	again, err := s.Get("pod-a")
	if err != nil || again.MAC.String() != a.MAC.String() || !bytes.Equal(again.MachineIdentifier, a.MachineIdentifier) || again.Method != a.Method {
		t.Errorf("Get = %+v, %v; want what Create returned (%+v)", again, err, a)
	}
	if _, err := s.Create("pod-a", disk, aux); !errors.Is(err, os.ErrExist) {
		t.Errorf("second Create of pod-a = %v, want ErrExist", err)
	}
	for _, bad := range []string{"", "../x", ".hidden", "a/b"} {
		if _, err := s.Create(bad, disk, ""); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
	}

	// A crash mid-create leaves a temp dir: GC removes it once stale, and
	// every overlay not in the live set.
	stale := filepath.Join(s.Root, tmpPrefix+"pod-c-123")
	fresh := filepath.Join(s.Root, tmpPrefix+"pod-d-456")
	for _, d := range []string{stale, fresh} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTmpAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	removed, err := s.GC(map[string]bool{"pod-b": true})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{tmpPrefix + "pod-c-123", "pod-a"}; !slices.Equal(removed, want) {
		t.Errorf("GC removed %v, want %v", removed, want)
	}
	if ids, _ := s.List(); !slices.Equal(ids, []string{"pod-b"}) {
		t.Errorf("after GC List = %v, want [pod-b]", ids)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("GC removed a create in progress: %v", err)
	}
	if err := s.Remove("pod-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("pod-b"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Get after Remove = %v, want ErrNotExist", err)
	}
	if err := s.Remove("pod-b"); err != nil {
		t.Errorf("second Remove = %v", err)
	}
}

func TestNewMAC(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		mac, err := NewMAC()
		if err != nil {
			t.Fatal(err)
		}
		if mac[0]&1 != 0 || mac[0]&2 == 0 {
			t.Fatalf("%s is not a locally administered unicast address", mac)
		}
		seen[mac.String()] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct MACs out of 100", len(seen))
	}
}

// TestMachineIdentifier decodes the bplist00 by its trailer, as
// CoreFoundation does, and finds {"ECID": <positive int>}.
func TestMachineIdentifier(t *testing.T) {
	t.Parallel()
	a, err := NewMachineIdentifier()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewMachineIdentifier()
	if bytes.Equal(a, b) {
		t.Fatal("two machine identifiers are equal")
	}
	if got := ecidPlist(0x0102030405060708); !bytes.Equal(got[:8], []byte("bplist00")) {
		t.Fatalf("no bplist00 header: %q", got[:8])
	}
	for _, p := range [][]byte{a, ecidPlist(42)} {
		tr := p[len(p)-32:]
		offSize, n, top, table := tr[6], binary.BigEndian.Uint64(tr[8:]), binary.BigEndian.Uint64(tr[16:]), binary.BigEndian.Uint64(tr[24:])
		if offSize != 1 || n != 3 || top != 0 {
			t.Fatalf("trailer: offset size %d, %d objects, top %d", offSize, n, top)
		}
		obj := func(i byte) []byte { return p[p[table+uint64(i)]:] }
		dict := obj(0)
		if dict[0] != 0xD1 {
			t.Fatalf("top object marker %#x, want a 1-entry dict", dict[0])
		}
		if key := obj(dict[1]); key[0] != 0x54 || string(key[1:5]) != "ECID" {
			t.Fatalf("key %q, want ECID", key[:5])
		}
		val := obj(dict[2])
		if val[0] != 0x13 || int64(binary.BigEndian.Uint64(val[1:9])) < 0 {
			t.Fatalf("value %x, want a positive 8-byte integer", val[:9])
		}
	}
}

// BenchmarkClone clones sparse disks of 8 and 64 GiB; with reflink the time
// must not grow with the disk size. The "shared" metric is 1 when the
// filesystem shared extents (reflink/clonefile), 0 for the sparse copy.
func BenchmarkClone(b *testing.B) {
	for _, size := range []int64{8 * gib, 64 * gib} {
		b.Run(fmt.Sprintf("%dGiB", size/gib), func(b *testing.B) {
			dir := b.TempDir()
			src := filepath.Join(dir, "src.img")
			makeSparse(b, src, size)
			var m Method
			i := 0
			for b.Loop() {
				dst := filepath.Join(dir, fmt.Sprintf("dst-%d", i))
				i++
				var err error
				if m, err = Clone(src, dst); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.Remove(dst)
				b.StartTimer()
			}
			shared := 0.0
			if m.Shared() {
				shared = 1
			}
			b.ReportMetric(shared, "shared")
			b.Logf("%d GiB: method %s", size/gib, m)
		})
	}
}
