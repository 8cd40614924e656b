package image

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/vzfleet/vzfleet/image/format"
)

// Description is what a remote image holds.
type Description struct {
	Reference string
	Digest    digest.Digest // of the manifest
	Image     *format.Image
	VM        *format.VMConfig
}

// Inspect resolves ref and describes the image without downloading the disk.
func Inspect(ctx context.Context, ref string, rm Remote) (*Description, error) {
	d, err := inspect(ctx, ref, rm)
	return d, classify(err)
}

func inspect(ctx context.Context, ref string, rm Remote) (*Description, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	repo, err := rm.repository(r)
	if err != nil {
		return nil, err
	}
	desc, im, err := fetchManifest(ctx, repo, r)
	if err != nil {
		return nil, err
	}
	cfg, err := fetchSmall(ctx, repo, im.Config.Layer, format.MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("%s: VM config: %w", ref, err)
	}
	vm, err := parseVMConfig(im, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return &Description{Reference: r.String(), Digest: desc.Digest, Image: im, VM: vm}, nil
}

// fetchManifest resolves r and fetches and parses its manifest.
func fetchManifest(ctx context.Context, repo *remote.Repository, r registry.Reference) (ocispec.Descriptor, *format.Image, error) {
	desc, rc, err := repo.Manifests().FetchReference(ctx, r.Reference)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("resolve %s: %w", r, err)
	}
	defer rc.Close()
	if desc.Size > format.MaxManifestSize {
		return ocispec.Descriptor{}, nil, fmt.Errorf("resolve %s: manifest is %d bytes, more than the %d-byte limit", r, desc.Size, format.MaxManifestSize)
	}
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("fetch manifest of %s: %w", r, err)
	}
	im, err := format.ParseManifest(b)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s (%s): %w", r, desc.Digest, err)
	}
	return desc, im, nil
}

// fetchSmall fetches a blob of at most limit bytes and verifies it.
func fetchSmall(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d-byte limit", desc.Digest, desc.Size, limit)
	}
	rc, err := repo.Blobs().Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	b, err := content.ReadAll(io.LimitReader(rc, desc.Size+1), desc)
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s: %w", desc.Digest, err)
	}
	return b, nil
}

// parseVMConfig turns an image's config layer into tart's VM config.
func parseVMConfig(im *format.Image, b []byte) (*format.VMConfig, error) {
	if im.Layout == format.LayoutMacOSVZ {
		return format.VMConfigFromMacOSVZ(b, randomMAC())
	}
	return format.ParseVMConfig(b)
}

// randomMAC is a locally administered unicast MAC address.
func randomMAC() string {
	b := make([]byte, 6)
	rand.Read(b)
	b[0] = b[0]&^1 | 2
	return net.HardwareAddr(b).String()
}
