// Package image benchmarks vzfleet's image pull and push side by side with
// the oras CLI moving the same bytes, with oras-go alone, and with the floor
// of what a pull must do.
//
//	hack/tools/build.sh    # builds hack/tools/bin/oras (or set VZFLEET_TOOLS_BIN)
//	go test ./bench/image -run '^$' -bench . -benchtime 1x
//
// VZFLEET_BENCH_DISK_GIB sets the generated disk's size (default 1; the
// issue's reference run uses 8). The disk mixes zero, compressible and
// incompressible 4 MiB regions (50/30/20 %), like a used macOS disk.
// Everything lives under TMPDIR: TMPDIR=/dev/shm (with a 4 GiB disk, to fit
// in memory) takes the storage device out of the comparison and leaves
// what each pull costs in CPU.
//
// Besides time and MB/s (of the uncompressed disk), every result reports
// cpu-s: the CPU seconds this process and the oras CLI it started spent;
// registry-cpu-s: those of the registry serving it; machine-cpu-s: those of
// the whole machine, kernel threads included; and load1, the load average
// when it started. On a shared machine the CPU seconds vary less
// than the times.
//
// `oras pull` skips layers without a file name (an
// org.opencontainers.image.title annotation), which tart's disk layers do
// not have, so it would download nothing of a tart image. The fixture
// therefore also tags, in the same repository, a manifest listing the very
// same blobs with file names; `oras pull` of that downloads exactly the
// bytes vzfleet's pull does, verifies and stores them, but neither decodes
// nor writes a disk.
package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/vzfleet/vzfleet/image"
	"github.com/vzfleet/vzfleet/image/applelz4"
	"github.com/vzfleet/vzfleet/image/format"
	"github.com/vzfleet/vzfleet/test/harness"
)

type fixture struct {
	dir      string
	reg      *harness.Registry
	ref      string // the tart image vzfleet pushed
	orasRef  string // the same blobs, with file names for `oras pull`
	src      string // the VM directory
	chunks   string // the compressed disk chunks as files, for `oras push`
	diskSize int64
	desc     *image.Description
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		fix.reg.Stop()
		os.RemoveAll(fix.dir)
	}
	os.Exit(code)
}

func setup(b *testing.B) *fixture {
	b.Helper()
	fixOnce.Do(func() { fix, fixErr = newFixture() })
	if fixErr != nil {
		b.Fatal(fixErr)
	}
	return fix
}

func newFixture() (*fixture, error) {
	ctx := context.Background()
	gib := int64(1)
	if v, err := strconv.Atoi(os.Getenv("VZFLEET_BENCH_DISK_GIB")); err == nil && v > 0 {
		gib = int64(v)
	}
	dir, err := os.MkdirTemp("", "vzfleet-bench-")
	if err != nil {
		return nil, err
	}
	reg, err := harness.StartRegistry(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f := &fixture{dir: dir, reg: reg, ref: reg.Addr + "/bench/vm:1", orasRef: reg.Addr + "/bench/vm:oras",
		src: filepath.Join(dir, "vm"), chunks: filepath.Join(dir, "chunks"), diskSize: gib << 30}
	fix = f // so TestMain cleans up after a failure below
	if err := makeVM(f.src, f.diskSize); err != nil {
		return nil, err
	}
	if _, err := image.Push(ctx, f.src, f.ref, image.PushOptions{}); err != nil {
		return nil, err
	}
	if f.desc, err = image.Inspect(ctx, f.ref, image.Remote{}); err != nil {
		return nil, err
	}
	if err := f.tagWithFileNames(ctx); err != nil {
		return nil, err
	}
	if err := f.linkChunks(); err != nil {
		return nil, err
	}
	// Measurements start without the setup's writes still in flight.
	syscall.Sync()
	return f, nil
}

// tagWithFileNames pushes a manifest of the same blobs whose layers have
// file names, as orasRef.
func (f *fixture) tagWithFileNames(ctx context.Context) error {
	m := f.desc.Image.Manifest
	m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
	for i := range m.Layers {
		l := &m.Layers[i]
		ann := map[string]string{}
		for k, v := range l.Annotations {
			ann[k] = v
		}
		ann[ocispec.AnnotationTitle] = fmt.Sprintf("layer-%03d", i)
		l.Annotations = ann
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	repo, err := remote.NewRepository(f.reg.Addr + "/bench/vm")
	if err != nil {
		return err
	}
	repo.PlainHTTP = true
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	return repo.Manifests().PushReference(ctx, desc, bytes.NewReader(mb), "oras")
}

// linkChunks makes the compressed disk chunks (the registry's blob files)
// appear as files in f.chunks.
func (f *fixture) linkChunks() error {
	if err := os.MkdirAll(f.chunks, 0o755); err != nil {
		return err
	}
	for i, ch := range f.desc.Image.Disk {
		if err := os.Link(f.blobPath(ch.Layer), filepath.Join(f.chunks, fmt.Sprintf("disk-%03d.lz4", i))); err != nil {
			return err
		}
	}
	return nil
}

func (f *fixture) blobPath(d ocispec.Descriptor) string {
	e := d.Digest.Encoded()
	return filepath.Join(f.reg.StorageDir, "docker/registry/v2/blobs", d.Digest.Algorithm().String(), e[:2], e, "data")
}

// makeVM writes a VM directory whose disk mixes zero, compressible and
// random 4 MiB regions.
func makeVM(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := os.ReadFile("../../image/format/testdata/tart-config.json")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, image.ConfigFile), cfg, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, image.NVRAMFile), make([]byte, 128<<10), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, image.DiskFile))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4<<20)
	text := []byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit 0123456789.\n")
	for off := int64(0); off < size; off += int64(len(buf)) {
		switch k := rng.IntN(10); {
		case k < 5:
			continue
		case k < 8:
			for i := 0; i < len(buf); i += len(text) {
				copy(buf[i:], text)
				buf[i] = byte('a' + rng.IntN(26))
			}
		default:
			for i := 0; i+8 <= len(buf); i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
		}
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// orasCLI finds the oras binary hack/tools/build.sh builds.
func orasCLI(b *testing.B) string {
	b.Helper()
	path, err := harness.Tool("oras")
	if err != nil {
		b.Fatalf("the oras CLI is needed for the comparison: %v (hack/tools/build.sh builds it)", err)
	}
	return path
}

func runOras(b *testing.B, bin, dir string, args ...string) {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("oras %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}

// measure runs b's loop body and reports CPU seconds (of this process and
// its children, and of the registry) per iteration and the load average.
func measure(b *testing.B, f *fixture, body func()) {
	b.SetBytes(f.diskSize)
	load := loadAvg()
	self, reg, all := ownCPU(), harness.ProcessCPU(f.reg.Pid()), harness.MachineCPU()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	b.ReportMetric((ownCPU()-self).Seconds()/float64(n), "cpu-s/op")
	b.ReportMetric((harness.ProcessCPU(f.reg.Pid())-reg).Seconds()/float64(n), "registry-cpu-s/op")
	b.ReportMetric((harness.MachineCPU()-all).Seconds()/float64(n), "machine-cpu-s/op")
	// after the loop: b.Loop's first call drops metrics reported before it
	b.ReportMetric(load, "load1")
}

func ownCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return v
}

// BenchmarkPull compares, for one whole image per iteration:
//   - vzfleet: Cache.Pull (download, verify both digests, decompress, write
//     the sparse disk, sync it, publish)
//   - oras-pull: the oras CLI pulling the same blobs into a directory
//     (download, verify, store the compressed files; see the package doc)
//   - oras-pull-synced: the same, then sync(2): until the pulled files are
//     on disk, as vzfleet's disk is when its pull returns (oras leaves
//     them in the page cache)
//   - oras-copy: oras-go copying the artifact into an OCI layout
//   - floor: reading the registry's blob files and LZ4-decoding them in
//     memory, nothing verified or written
//   - floor-write: the floor, plus writing the decoded non-zero MiBs at
//     their offsets into a sparse file with direct I/O and syncing it: what
//     any pull that leaves a bootable disk must at least do
//
// All use 4 blobs in flight.
func BenchmarkPull(b *testing.B) {
	f := setup(b)
	bin := orasCLI(b)
	b.Run("vzfleet", func(b *testing.B) {
		measure(b, f, func() {
			c, err := image.OpenCache(b.TempDir(), image.Options{Concurrency: 4})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Pull(context.Background(), f.ref, image.PullOptions{}); err != nil {
				b.Fatal(err)
			}
		})
	})
	orasPull := func(b *testing.B) {
		runOras(b, bin, b.TempDir(), "pull", "--plain-http", "--no-tty", "--concurrency", "4", "-o", ".", f.orasRef)
	}
	b.Run("oras-pull", func(b *testing.B) {
		measure(b, f, func() { orasPull(b) })
	})
	b.Run("oras-pull-synced", func(b *testing.B) {
		measure(b, f, func() {
			orasPull(b)
			syscall.Sync()
		})
	})
	b.Run("oras-copy", func(b *testing.B) {
		measure(b, f, func() {
			repo, err := remote.NewRepository(f.reg.Addr + "/bench/vm")
			if err != nil {
				b.Fatal(err)
			}
			repo.PlainHTTP = true
			store, err := oci.New(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			opts := oras.DefaultCopyOptions
			opts.Concurrency = 4
			if _, err := oras.Copy(context.Background(), repo, "1", store, "1", opts); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("floor", func(b *testing.B) {
		measure(b, f, func() {
			err := f.decodeDisk(func(_ format.Chunk, r io.Reader) error {
				_, err := io.Copy(io.Discard, r)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("floor-write", func(b *testing.B) {
		measure(b, f, func() {
			if err := decodeToDisk(f, filepath.Join(b.TempDir(), image.DiskFile)); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// decodeDisk hands each of the registry's disk blobs, decoding, to use,
// 4 at a time.
func (f *fixture) decodeDisk(use func(ch format.Chunk, r io.Reader) error) error {
	g := new(errgroup.Group)
	g.SetLimit(4)
	for _, ch := range f.desc.Image.Disk {
		g.Go(func() error {
			bf, err := os.Open(f.blobPath(ch.Layer))
			if err != nil {
				return err
			}
			defer bf.Close()
			return use(ch, applelz4.NewReader(bf))
		})
	}
	return g.Wait()
}

// decodeToDisk decodes the registry's disk blobs into a sparse file at
// path, writing only non-zero MiBs, with direct I/O on Linux.
func decodeToDisk(f *fixture, path string) error {
	disk, err := createDirect(path)
	if err != nil {
		return err
	}
	defer disk.Close()
	if err := disk.Truncate(f.diskSize); err != nil {
		return err
	}
	zero := make([]byte, 1<<20)
	err = f.decodeDisk(func(ch format.Chunk, r io.Reader) error {
		buf := make([]byte, 1<<20) // page-aligned, as direct I/O needs
		for off := ch.Offset; off < ch.Offset+ch.Size; off += int64(len(buf)) {
			n, err := io.ReadFull(r, buf)
			if err != nil && err != io.ErrUnexpectedEOF {
				return err
			}
			if !bytes.Equal(buf[:n], zero[:n]) {
				if _, err := disk.WriteAt(buf[:n], off); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return disk.Sync()
}

// BenchmarkPush compares pushing into a new repository each time, so
// every blob is uploaded:
//   - vzfleet: image.Push of the VM directory (read the sparse disk, hash,
//     LZ4-compress in 512 MiB chunks, upload the chunks)
//   - oras-push: the oras CLI pushing the same three files as they are
//     (the whole disk uncompressed, as one blob)
//   - oras-push-chunks: the oras CLI pushing the compressed chunks vzfleet
//     uploads, as files (the same bytes on the wire, no compression)
//
// All use 4 blobs in flight.
func BenchmarkPush(b *testing.B) {
	f := setup(b)
	bin := orasCLI(b)
	i := 0
	next := func(kind string) string {
		i++
		return f.reg.Addr + "/bench/" + kind + strconv.Itoa(i) + ":1"
	}
	b.Run("vzfleet", func(b *testing.B) {
		measure(b, f, func() {
			if _, err := image.Push(context.Background(), f.src, next("push"), image.PushOptions{Concurrency: 4}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("oras-push", func(b *testing.B) {
		measure(b, f, func() {
			runOras(b, bin, f.src, "push", "--plain-http", "--no-tty", "--concurrency", "4", next("oras"), image.DiskFile, image.NVRAMFile, image.ConfigFile)
		})
	})
	b.Run("oras-push-chunks", func(b *testing.B) {
		measure(b, f, func() {
			args := []string{"push", "--plain-http", "--no-tty", "--concurrency", "4", next("oraschunks")}
			for i := range f.desc.Image.Disk {
				args = append(args, fmt.Sprintf("disk-%03d.lz4", i))
			}
			runOras(b, bin, f.chunks, args...)
		})
	})
}
