package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/vzfleet/vzfleet/test/harness"
)

// An artifact pushed with oras-go through the harness's registry comes back
// byte for byte, and its blobs are really in the registry's storage.
func TestRegistryOrasRoundTrip(t *testing.T) {
	t.Parallel()
	reg := harness.RegistryT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	layers := [][]byte{bytes.Repeat([]byte("disk "), 100_000), []byte(`{"cpuCount":4}`)}
	src := memory.New()
	var descs []ocispec.Descriptor
	for i, data := range layers {
		d := content.NewDescriptorFromBytes([]string{"application/vnd.test.disk", "application/vnd.test.config"}[i], data)
		if err := src.Push(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	manifest, err := oras.PackManifest(ctx, src, oras.PackManifestVersion1_1, "application/vnd.test.vm",
		oras.PackManifestOptions{Layers: descs})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Tag(ctx, manifest, "v1"); err != nil {
		t.Fatal(err)
	}

	repo, err := remote.NewRepository(reg.Addr + "/e2e/vm")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	if _, err := oras.Copy(ctx, src, "v1", repo, "v1", oras.DefaultCopyOptions); err != nil {
		t.Fatalf("push: %v", err)
	}

	dst := memory.New()
	got, err := oras.Copy(ctx, repo, "v1", dst, "v1", oras.DefaultCopyOptions)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if got.Digest != manifest.Digest {
		t.Fatalf("pulled manifest %s, pushed %s", got.Digest, manifest.Digest)
	}
	for i, d := range descs {
		pulled, err := content.FetchAll(ctx, dst, d)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if !bytes.Equal(pulled, layers[i]) {
			t.Fatalf("layer %d differs after the round trip", i)
		}
		if _, err := os.Stat(blobPath(reg, d.Digest)); err != nil {
			t.Fatalf("layer %d is not in the registry's storage: %v", i, err)
		}
	}
}

// blobPath is where distribution's filesystem driver keeps a blob.
func blobPath(reg *harness.Registry, d digest.Digest) string {
	return filepath.Join(reg.StorageDir, "docker", "registry", "v2", "blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
}
