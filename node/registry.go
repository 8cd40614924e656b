package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/image"
)

// registrySource pulls VM images with the OCI pull engine (image.Cache).
// Images already unpacked by hand under the cache directory (LocalDirSource)
// are served first, so a host can run an image without a registry.
type registrySource struct {
	local LocalDirSource
	cache *image.Cache
}

// NewRegistrySource opens the pull engine's cache in dir and serves images
// from it, falling back to local (which may be zero) for hand-placed ones.
func NewRegistrySource(dir string, local LocalDirSource, opts image.Options) (ImageSource, error) {
	c, err := image.OpenCache(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("VM image cache %s: %w", dir, err)
	}
	return registrySource{local: local, cache: c}, nil
}

func (s registrySource) Ensure(ctx context.Context, ref string, policy corev1.PullPolicy, auth []RegistryAuth) (LocalImage, error) {
	if s.local.Root != "" {
		img, err := s.local.Ensure(ctx, ref, policy, auth)
		if err == nil || !errors.Is(err, ErrImageNotFound) {
			return img, err
		}
	}
	opts := image.PullOptions{Policy: image.PullPolicy(policy)}
	if len(auth) > 0 {
		doc, err := dockerConfig(auth)
		if err != nil {
			return LocalImage{}, err
		}
		opts.Auth = &image.Auth{DockerConfigJSON: [][]byte{doc}}
	}
	img, err := s.cache.Pull(ctx, ref, opts)
	if errors.Is(err, image.ErrNotPresent) {
		return LocalImage{}, fmt.Errorf("%w: %s (imagePullPolicy Never)", ErrImageNotFound, ref)
	}
	if err != nil {
		return LocalImage{}, err
	}
	li := LocalImage{
		Ref: ref, Digest: img.Digest.String(), DiskPath: img.Disk, NVRAMPath: img.NVRAM,
		ConfigPath: img.Config, SizeBytes: img.DiskSize,
	}
	if _, err := os.Stat(li.NVRAMPath); err != nil {
		li.NVRAMPath = ""
	}
	if vm := img.VM; vm != nil {
		li.Config = ImageConfig{
			CPUCount: uint(max(0, vm.CPUCount)), MemorySize: vm.MemorySize, HardwareModel: vm.HardwareModel,
			ECID: vm.ECID, MACAddress: vm.MACAddress, OS: vm.OS, Arch: vm.Arch,
		}
	}
	return li, nil
}

// dockerConfig renders pull-secret credentials as a docker config document.
func dockerConfig(auth []RegistryAuth) ([]byte, error) {
	type entry struct {
		Auth          string `json:"auth,omitempty"`
		IdentityToken string `json:"identitytoken,omitempty"`
	}
	doc := struct {
		Auths map[string]entry `json:"auths"`
	}{Auths: map[string]entry{}}
	for _, a := range auth {
		e := entry{IdentityToken: a.Token}
		if a.Username != "" {
			e.Auth = base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password))
		}
		doc.Auths[a.Registry] = e
	}
	return json.Marshal(doc)
}
