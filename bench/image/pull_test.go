// Package image benchmarks vzfleet's image pull and push against the same
// work done with oras-go alone and against the floor of what a pull must do.
//
//	go test ./bench/image -run '^$' -bench . -benchtime 1x
//
// VZFLEET_BENCH_DISK_GIB sets the generated disk's size (default 1; the
// issue's reference run uses 8). The disk mixes zero, compressible and
// incompressible 4 MiB regions (50/30/20 %), like a used macOS disk.
package image

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/vzfleet/vzfleet/image"
	"github.com/vzfleet/vzfleet/image/applelz4"
	"github.com/vzfleet/vzfleet/test/harness"
)

type fixture struct {
	reg      *harness.Registry
	ref      string
	src      string
	diskSize int64
	desc     *image.Description
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func setup(b *testing.B) *fixture {
	b.Helper()
	fixOnce.Do(func() {
		gib := int64(1)
		if v, err := strconv.Atoi(os.Getenv("VZFLEET_BENCH_DISK_GIB")); err == nil && v > 0 {
			gib = int64(v)
		}
		dir, err := os.MkdirTemp("", "vzfleet-bench-")
		if err != nil {
			fixErr = err
			return
		}
		reg, err := harness.StartRegistry(context.Background(), dir)
		if err != nil {
			fixErr = err
			return
		}
		f := &fixture{reg: reg, ref: reg.Addr + "/bench/vm:1", src: filepath.Join(dir, "vm"), diskSize: gib << 30}
		if fixErr = makeVM(f.src, f.diskSize); fixErr != nil {
			return
		}
		if _, fixErr = image.Push(context.Background(), f.src, f.ref, image.PushOptions{}); fixErr != nil {
			return
		}
		f.desc, fixErr = image.Inspect(context.Background(), f.ref, image.Remote{})
		fix = f
	})
	if fixErr != nil {
		b.Fatal(fixErr)
	}
	return fix
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

// BenchmarkPull compares, for one whole image per iteration:
//   - vzfleet: Cache.Pull (download, decompress, verify, write the sparse disk)
//   - oras-copy: oras-go copying the same artifact into an OCI layout on
//     disk, as `oras pull`/`oras copy` do (download and store the
//     compressed blobs; no decompression)
//   - floor: reading the registry's blob files and LZ4-decoding them in
//     memory, nothing written
func BenchmarkPull(b *testing.B) {
	f := setup(b)
	b.Run("vzfleet", func(b *testing.B) {
		b.SetBytes(f.diskSize)
		for b.Loop() {
			c, err := image.OpenCache(b.TempDir(), image.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Pull(context.Background(), f.ref, image.PullOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("oras-copy", func(b *testing.B) {
		b.SetBytes(f.diskSize)
		for b.Loop() {
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
		}
	})
	b.Run("floor", func(b *testing.B) {
		b.SetBytes(f.diskSize)
		for b.Loop() {
			g := new(errgroup.Group)
			g.SetLimit(4)
			for _, ch := range f.desc.Image.Disk {
				g.Go(func() error {
					d := ch.Layer.Digest
					bf, err := os.Open(filepath.Join(f.reg.StorageDir, "docker/registry/v2/blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data"))
					if err != nil {
						return err
					}
					defer bf.Close()
					_, err = io.Copy(io.Discard, applelz4.NewReader(bf))
					return err
				})
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPush measures packaging and pushing the VM directory; the
// second and later iterations find every blob present and upload nothing,
// so run it with -benchtime 1x for the cold number.
func BenchmarkPush(b *testing.B) {
	f := setup(b)
	b.SetBytes(f.diskSize)
	i := 0
	for b.Loop() {
		i++
		if _, err := image.Push(context.Background(), f.src, f.reg.Addr+"/bench/push"+strconv.Itoa(i)+":1", image.PushOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
