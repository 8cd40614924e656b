package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/vzfleet/vzfleet/image"
)

// ImageCacheOptions configure NewImageCache.
type ImageCacheOptions struct {
	// Insecure lists registries (host or host:port) reached over plain
	// HTTP; loopback registries always are.
	Insecure []string
	// DockerConfigFiles are docker config.json files with the node's own
	// registry credentials, tried after a pod's imagePullSecrets.
	DockerConfigFiles []string
	// Concurrency is how many disk chunks one pull fetches at once.
	Concurrency int
	// InUse reports images the cache must not prune (ones VMs run from).
	InUse func(digest string) bool
	// Progress, if set, receives each pull's progress reports.
	Progress func(image.Progress)
	Logger   *slog.Logger
}

// imageCache is the ImageSource on top of image.Cache, the OCI pull engine.
type imageCache struct {
	cache    *image.Cache
	files    []string
	progress func(image.Progress)
}

// NewImageCache opens the digest-addressed image cache in dir as the node's
// ImageSource: pods' images are pulled from their registries (with the
// pods' imagePullSecrets) as their imagePullPolicy says.
func NewImageCache(dir string, opts ImageCacheOptions) (ImageSource, error) {
	o := image.Options{
		Remote:      image.Remote{Insecure: opts.Insecure, Auth: image.Auth{DockerConfigFiles: opts.DockerConfigFiles}, UserAgent: "vz-node"},
		Concurrency: opts.Concurrency,
		Logger:      opts.Logger,
	}
	if opts.InUse != nil {
		o.InUse = func(d digest.Digest) bool { return opts.InUse(d.String()) }
	}
	c, err := image.OpenCache(dir, o)
	if err != nil {
		return nil, err
	}
	return &imageCache{cache: c, files: opts.DockerConfigFiles, progress: opts.Progress}, nil
}

// Ensure implements ImageSource.
func (s *imageCache) Ensure(ctx context.Context, ref string, policy corev1.PullPolicy, auth []RegistryAuth) (LocalImage, error) {
	opts := image.PullOptions{Policy: pullPolicy(policy), Progress: s.progress}
	if len(auth) > 0 {
		a, err := imageAuth(auth)
		if err != nil {
			return LocalImage{}, fmt.Errorf("VM image %s: %w", ref, err)
		}
		a.DockerConfigFiles = s.files
		opts.Auth = &a
	}
	img, err := s.cache.Pull(ctx, ref, opts)
	switch {
	case errors.Is(err, image.ErrNotPresent):
		return LocalImage{}, fmt.Errorf("%w: %s is not in the cache and imagePullPolicy is Never", ErrImageNotFound, ref)
	case errors.Is(err, errdef.ErrNotFound):
		return LocalImage{}, fmt.Errorf("%w: %w", ErrImageNotFound, err)
	case err != nil:
		return LocalImage{}, err
	}
	return localImage(ref, img), nil
}

// pullPolicy maps Kubernetes' imagePullPolicy; empty (not defaulted by an
// API server) is IfNotPresent.
func pullPolicy(p corev1.PullPolicy) image.PullPolicy {
	switch p {
	case corev1.PullAlways:
		return image.PullAlways
	case corev1.PullNever:
		return image.PullNever
	default:
		return image.PullIfNotPresent
	}
}

// imageAuth turns pull-secret credentials into a docker config document, so
// each credential is used only for its own registry.
func imageAuth(auth []RegistryAuth) (image.Auth, error) {
	type entry struct {
		Username      string `json:"username,omitempty"`
		Password      string `json:"password,omitempty"`
		IdentityToken string `json:"identitytoken,omitempty"`
	}
	auths := map[string]entry{}
	for _, a := range auth {
		auths[registryHost(a.Registry)] = entry{Username: a.Username, Password: a.Password, IdentityToken: a.Token}
	}
	doc, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return image.Auth{}, fmt.Errorf("registry credentials: %w", err)
	}
	return image.Auth{DockerConfigJSON: [][]byte{doc}}, nil
}

// registryHost reduces a docker config key ("https://host:port/v1/",
// "host:port") to host[:port], keeping Docker Hub's legacy key, which the
// lookup knows.
func registryHost(key string) string {
	if !strings.Contains(key, "://") {
		h, _, _ := strings.Cut(key, "/")
		return h
	}
	u, err := url.Parse(key)
	if err != nil || u.Host == "" || u.Host == "index.docker.io" {
		return key
	}
	return u.Host
}

func localImage(ref string, img *image.Image) LocalImage {
	li := LocalImage{
		Ref: ref, Digest: img.Digest.String(), DiskPath: img.Disk, NVRAMPath: img.NVRAM,
		ConfigPath: img.Config, SizeBytes: img.DiskSize,
	}
	if vm := img.VM; vm != nil {
		li.Config = ImageConfig{
			CPUCount: uint(max(vm.CPUCount, 0)), MemorySize: vm.MemorySize,
			HardwareModel: vm.HardwareModel, ECID: vm.ECID, MACAddress: vm.MACAddress, OS: vm.OS, Arch: vm.Arch,
		}
	}
	return li
}

// OCICacheDir is where, under vz-node's cacheDir, the OCI pull engine keeps
// its images. The node and `vz-node pull`/`vz-node images` (and so fleetctl
// prepull) must agree on it, so both take it from here.
func OCICacheDir(cacheDir string) string { return filepath.Join(cacheDir, "oci") }

// Images implements ImageLister: the cached images as the node status lists
// them, each named by its references and by digest, sized by the space its
// (sparse) files occupy.
func (s *imageCache) Images() ([]corev1.ContainerImage, error) {
	imgs, err := s.cache.List()
	if err != nil {
		return nil, err
	}
	out := make([]corev1.ContainerImage, 0, len(imgs))
	for _, img := range imgs {
		names := append([]string(nil), img.Refs...)
		if len(img.Refs) > 0 {
			repo, _, _ := strings.Cut(img.Refs[0], "@")
			if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
				repo = repo[:i]
			}
			names = append(names, repo+"@"+img.Digest.String())
		} else {
			names = append(names, img.Digest.String())
		}
		out = append(out, corev1.ContainerImage{Names: names, SizeBytes: img.Allocated})
	}
	return out, nil
}
