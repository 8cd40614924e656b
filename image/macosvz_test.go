package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/vzfleet/vzfleet/image/format"
)

// pushMacOSVZ pushes an image laid out as macOS-vz-kubelet does: the disk
// and aux files as one gzip stream each, the config as plain JSON.
func pushMacOSVZ(t *testing.T, ref string, disk, aux []byte) {
	t.Helper()
	r, err := ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	rm := Remote{}
	repo, err := rm.repository(r)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	blob := func(mediaType string, b []byte, plain []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mediaType, b)
		if plain != nil {
			d.Annotations = map[string]string{
				format.AnnotationMacOSVZUncompressedSize:   strconv.Itoa(len(plain)),
				format.AnnotationMacOSVZUncompressedDigest: digest.FromBytes(plain).String(),
			}
		}
		if err := repo.Blobs().Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg, _ := os.ReadFile("format/testdata/macosvz-config.json")
	empty := blob(ocispec.MediaTypeEmptyJSON, []byte("{}"), nil)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: format.MediaTypeMacOSVZArtifact,
		Config:       empty,
		Layers: []ocispec.Descriptor{
			blob(format.MediaTypeMacOSVZDisk, gz(disk), disk),
			blob(format.MediaTypeMacOSVZAux, gz(aux), aux),
			blob(format.MediaTypeMacOSVZConfig, cfg, nil),
		},
	}
	mb, _ := json.Marshal(m)
	md := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	if err := repo.Manifests().PushReference(ctx, md, bytes.NewReader(mb), r.Reference); err != nil {
		t.Fatal(err)
	}
}

func TestPullMacOSVZImage(t *testing.T) {
	e := newEnv(t)
	src := e.vmDirSized("src", 48*mib+7, []region{{off: mib, size: 3 * mib, kind: "text", seed: 1}, {off: 30 * mib, size: mib, kind: "random", seed: 2}})
	disk, _ := os.ReadFile(filepath.Join(src, DiskFile))
	aux := bytes.Repeat([]byte("aux!"), 4096)
	pushMacOSVZ(t, e.ref("vz:1"), disk, aux)

	img, err := e.cache.Pull(context.Background(), e.ref("vz:1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Layout != format.LayoutMacOSVZ || img.DiskSize != int64(len(disk)) {
		t.Fatalf("image %+v", img)
	}
	sameFile(t, filepath.Join(src, DiskFile), img.Disk)
	if b, _ := os.ReadFile(img.NVRAM); !bytes.Equal(b, aux) {
		t.Fatal("aux.img differs")
	}
	tart, _ := format.ParseVMConfig(mustRead(t, "format/testdata/tart-config.json"))
	if img.VM.ECID != tart.ECID || img.VM.HardwareModel != tart.HardwareModel {
		t.Fatalf("converted config %+v", img.VM)
	}
	fi, _ := os.Stat(img.Disk)
	if allocated(fi) > 8*mib {
		t.Fatalf("gzip-layout disk not sparse: %d bytes", allocated(fi))
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
