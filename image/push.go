package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/vzfleet/vzfleet/image/applelz4"
	"github.com/vzfleet/vzfleet/image/format"
)

// Names of the files in a VM directory (tart's layout).
const (
	DiskFile   = "disk.img"
	NVRAMFile  = "nvram.bin"
	ConfigFile = "config.json"
)

// PushOptions tune Push.
type PushOptions struct {
	Remote Remote
	// Concurrency is how many chunks are compressed and uploaded at once
	// (default: the number of CPUs, at most 4). Each holds its compressed
	// chunk in memory.
	Concurrency int
	// ChunkSize is the uncompressed size of a disk chunk (default 512 MiB,
	// tart's).
	ChunkSize int64
	// Labels are added to the stub OCI config's labels.
	Labels map[string]string
	// Progress, if set, is called as chunks complete.
	Progress func(PushProgress)
}

// PushProgress reports a push.
type PushProgress struct {
	BytesDone, BytesTotal int64 // uncompressed disk bytes processed
	BytesUploaded         int64 // compressed bytes sent (skipped blobs excluded)
	ChunksSkipped         int   // chunks the registry already had
	ChunksDone            int
	ChunksTotal           int
}

// Push packages the VM directory dir in tart's format and pushes it as ref.
// Blobs the registry already has are not uploaded again. It returns the
// manifest's descriptor.
func Push(ctx context.Context, dir, ref string, opts PushOptions) (ocispec.Descriptor, error) {
	desc, err := push(ctx, dir, ref, opts)
	return desc, classify(err)
}

func push(ctx context.Context, dir, ref string, opts PushOptions) (ocispec.Descriptor, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	repo, err := opts.Remote.repository(r)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = format.DefaultChunkSize
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = min(runtime.NumCPU(), 4)
	}

	cfgBytes, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: read VM config: %w", dir, err)
	}
	vm, err := format.ParseVMConfig(cfgBytes)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: %s: %w", dir, ConfigFile, err)
	}
	nvram, err := os.ReadFile(filepath.Join(dir, NVRAMFile))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: read NVRAM: %w", dir, err)
	}
	disk, err := os.Open(filepath.Join(dir, DiskFile))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: %w", dir, err)
	}
	defer disk.Close()
	fi, err := disk.Stat()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: %w", dir, err)
	}

	cfgDesc, err := pushBytes(ctx, repo, format.MediaTypeTartConfig, cfgBytes)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: VM config: %w", ref, err)
	}
	chunks, err := pushDisk(ctx, repo, disk, fi.Size(), opts)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: disk: %w", ref, err)
	}
	nvDesc, err := pushBytes(ctx, repo, format.MediaTypeTartNVRAM, nvram)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: NVRAM: %w", ref, err)
	}
	stub, err := format.StubConfig(vm, opts.Labels)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	stubDesc, err := pushBytes(ctx, repo, ocispec.MediaTypeImageConfig, stub)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: OCI config: %w", ref, err)
	}
	layers := append(append([]ocispec.Descriptor{cfgDesc}, chunks...), nvDesc)
	m := format.NewTartManifest(stubDesc, layers, fi.Size(), nil)
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: encode manifest: %w", ref, err)
	}
	if _, err := format.ParseManifest(mb); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: built an invalid manifest: %w", ref, err)
	}
	mDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	if r.ValidateReferenceAsDigest() == nil {
		if digest.Digest(r.Reference) != mDesc.Digest {
			return ocispec.Descriptor{}, fmt.Errorf("push %s: the manifest's digest is %s", ref, mDesc.Digest)
		}
		err = repo.Manifests().Push(ctx, mDesc, bytes.NewReader(mb))
	} else {
		err = repo.Manifests().PushReference(ctx, mDesc, bytes.NewReader(mb), r.Reference)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push %s: manifest: %w", ref, err)
	}
	return mDesc, nil
}

func pushBytes(ctx context.Context, repo *remote.Repository, mediaType string, b []byte) (ocispec.Descriptor, error) {
	desc := content.NewDescriptorFromBytes(mediaType, b)
	return desc, pushBlob(ctx, repo, desc, b)
}

// pushBlob uploads b unless the registry has it.
func pushBlob(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, b []byte) error {
	ok, err := repo.Blobs().Exists(ctx, desc)
	if err != nil {
		return fmt.Errorf("check blob %s: %w", desc.Digest, err)
	}
	if ok {
		return nil
	}
	if err := repo.Blobs().Push(ctx, desc, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("upload blob %s (%d bytes): %w", desc.Digest, desc.Size, err)
	}
	return nil
}

// pushDisk compresses and uploads the disk's chunks in parallel and returns
// their annotated descriptors in order.
//
// A chunk is compressed twice: once for its digest (the registry needs it
// before the upload, and a blob it already has is not sent at all), and
// again streaming into the upload. Compressing costs less than holding a
// 512 MiB chunk in memory: touching that much fresh memory costs more CPU
// than LZ4 does, and would take up to Concurrency x 512 MiB of RAM on a host
// whose memory belongs to VMs.
func pushDisk(ctx context.Context, repo *remote.Repository, disk *os.File, size int64, opts PushOptions) ([]ocispec.Descriptor, error) {
	n := int((size + opts.ChunkSize - 1) / opts.ChunkSize)
	if n == 0 {
		return nil, errors.New("disk image is empty")
	}
	descs := make([]ocispec.Descriptor, n)
	var (
		mu   sync.Mutex
		prog = PushProgress{BytesTotal: size, ChunksTotal: n}
	)
	report := func(update func(p *PushProgress)) {
		mu.Lock()
		defer mu.Unlock()
		update(&prog)
		if opts.Progress != nil {
			opts.Progress(prog)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for i := range n {
		g.Go(func() error {
			off := int64(i) * opts.ChunkSize
			length := min(opts.ChunkSize, size-off)
			src := func() io.Reader { return io.NewSectionReader(disk, off, length) }
			var blob ocispec.Descriptor
			var plain digest.Digest
			if holeOnly(disk, off, length) {
				// Common in VM disks: nothing to read, digests known.
				src = func() io.Reader { return io.LimitReader(zeroReader{}, length) }
				z, err := zeroChunks.blob(ctx, length)
				if err != nil {
					return fmt.Errorf("chunk %d: compress: %w", i, err)
				}
				blob, plain = z, zeroDigest(length)
			} else {
				// Pass 1: the digests, the compressed bytes thrown away.
				h := sha256.New()
				zh := &countingHash{Hash: sha256.New()}
				if err := compressChunk(ctx, src(), zh, h); err != nil {
					return fmt.Errorf("chunk %d: compress: %w", i, err)
				}
				blob = ocispec.Descriptor{MediaType: format.MediaTypeTartDisk, Digest: digest.NewDigest(digest.SHA256, zh.Hash), Size: zh.n}
				plain = digest.NewDigest(digest.SHA256, h)
			}
			exists, err := repo.Blobs().Exists(ctx, blob)
			if err != nil {
				return fmt.Errorf("chunk %d: check blob %s: %w", i, blob.Digest, err)
			}
			if !exists {
				if err := uploadChunk(ctx, repo, src(), blob); err != nil {
					return fmt.Errorf("chunk %d: upload blob %s (%d bytes): %w", i, blob.Digest, blob.Size, err)
				}
			}
			descs[i] = format.DiskLayer(blob, length, plain)
			report(func(p *PushProgress) {
				p.ChunksDone++
				p.BytesDone += length
				if exists {
					p.ChunksSkipped++
				} else {
					p.BytesUploaded += blob.Size
				}
			})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return descs, nil
}

// pieceHasher feeds a hash in pieces (see hashInPieces).
type pieceHasher struct{ h hash.Hash }

func (p pieceHasher) Write(b []byte) (int, error) {
	hashInPieces(p.h, b)
	return len(b), nil
}

// compressChunk LZ4-compresses src into w, feeding the uncompressed bytes
// to h too when h is not nil.
func compressChunk(ctx context.Context, src io.Reader, w io.Writer, h hash.Hash) error {
	z := applelz4.NewWriter(w)
	dst := io.Writer(z)
	if h != nil {
		dst = io.MultiWriter(z, pieceHasher{h})
	}
	buf := getPipeBuf()
	defer putPipeBuf(buf)
	if _, err := io.CopyBuffer(dst, &ctxReader{ctx, src}, *buf); err != nil {
		return err
	}
	return z.Close()
}

// uploadChunk compresses the chunk again, streaming it into the upload of
// blob. Compression is deterministic, so the bytes match blob's digest
// unless the disk changed since, which the registry then reports.
func uploadChunk(ctx context.Context, repo *remote.Repository, src io.Reader, blob ocispec.Descriptor) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		bw := bufio.NewWriterSize(pw, 1<<20)
		err := compressChunk(ctx, src, bw, nil)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	err := repo.Blobs().Push(ctx, blob, pr)
	pr.CloseWithError(errors.New("upload ended")) // stops the compressor if the upload failed
	<-done
	return err
}

// zeroReader reads zeros.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// zeroChunks remembers the compressed blob of an all-zero chunk per size,
// so a disk's empty chunks are compressed once per process, not once each.
var zeroChunks = zeroBlobs{m: map[int64]ocispec.Descriptor{}}

type zeroBlobs struct {
	mu sync.Mutex
	m  map[int64]ocispec.Descriptor
}

func (z *zeroBlobs) blob(ctx context.Context, size int64) (ocispec.Descriptor, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if d, ok := z.m[size]; ok {
		return d, nil
	}
	zh := &countingHash{Hash: sha256.New()}
	if err := compressChunk(ctx, io.LimitReader(zeroReader{}, size), zh, nil); err != nil {
		return ocispec.Descriptor{}, err
	}
	d := ocispec.Descriptor{MediaType: format.MediaTypeTartDisk, Digest: digest.NewDigest(digest.SHA256, zh.Hash), Size: zh.n}
	z.m[size] = d
	return d, nil
}
