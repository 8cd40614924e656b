package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ImageSource makes a VM image available on local disk. The OCI pull engine
// (image/) implements it; LocalDirSource serves images already in the cache.
type ImageSource interface {
	// Ensure returns the local image for ref, pulling it when policy and the
	// cache say so. auth holds registry credentials from imagePullSecrets.
	Ensure(ctx context.Context, ref string, policy corev1.PullPolicy, auth []RegistryAuth) (LocalImage, error)
}

// ImageLister is implemented by image sources that can list what they hold,
// for the node status's image list.
type ImageLister interface {
	Images() ([]corev1.ContainerImage, error)
}

// RegistryAuth is one registry credential from a pull secret.
type RegistryAuth struct {
	Registry string
	Username string
	Password string
	Token    string
}

// ErrImageNotFound: the image is neither cached nor pullable.
var ErrImageNotFound = errors.New("VM image not found")

// LocalImage is an unpacked VM image: its disk, auxiliary storage (NVRAM)
// and hardware configuration.
type LocalImage struct {
	Ref        string
	Digest     string
	DiskPath   string
	NVRAMPath  string
	Config     ImageConfig
	SizeBytes  int64
	ConfigPath string
}

// ImageConfig is the VM configuration stored with an image (tart's
// config.json fields that vz-node needs).
type ImageConfig struct {
	CPUCount      uint   `json:"cpuCount"`
	MemorySize    uint64 `json:"memorySize"`
	HardwareModel string `json:"hardwareModel"` // base64
	ECID          string `json:"ecid"`          // base64 machine identifier
	MACAddress    string `json:"macAddress"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
}

// HardwareModelBytes decodes the base64 hardware model.
func (c ImageConfig) HardwareModelBytes() ([]byte, error) {
	return base64.StdEncoding.DecodeString(c.HardwareModel)
}

// Image file names inside an image directory.
const (
	ImageDiskFile   = "disk.img"
	ImageNVRAMFile  = "nvram.bin"
	ImageConfigFile = "config.json"
)

// LocalDirSource serves images unpacked under Root, one directory per
// reference (see LocalImageDir). It never pulls: a missing image is
// ErrImageNotFound.
type LocalDirSource struct{ Root string }

// LocalImageDir is where LocalDirSource looks for ref: the reference with
// its registry, repository and tag or digest, made path-safe.
func LocalImageDir(root, ref string) string {
	r := strings.NewReplacer("/", "_", ":", "_", "@", "_")
	return filepath.Join(root, "images", r.Replace(ref))
}

// Ensure implements ImageSource.
func (s LocalDirSource) Ensure(ctx context.Context, ref string, _ corev1.PullPolicy, _ []RegistryAuth) (LocalImage, error) {
	if err := ctx.Err(); err != nil {
		return LocalImage{}, err
	}
	dir := LocalImageDir(s.Root, ref)
	img := LocalImage{
		Ref:        ref,
		DiskPath:   filepath.Join(dir, ImageDiskFile),
		NVRAMPath:  filepath.Join(dir, ImageNVRAMFile),
		ConfigPath: filepath.Join(dir, ImageConfigFile),
	}
	fi, err := os.Stat(img.DiskPath)
	if errors.Is(err, os.ErrNotExist) {
		return LocalImage{}, fmt.Errorf("%w: %s is not in the cache (%s)", ErrImageNotFound, ref, dir)
	}
	if err != nil {
		return LocalImage{}, fmt.Errorf("VM image %s: %w", ref, err)
	}
	img.SizeBytes = fi.Size()
	if data, err := os.ReadFile(img.ConfigPath); err == nil {
		if err := json.Unmarshal(data, &img.Config); err != nil {
			return LocalImage{}, fmt.Errorf("VM image %s: %s: %w", ref, img.ConfigPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return LocalImage{}, fmt.Errorf("VM image %s: %w", ref, err)
	}
	if _, err := os.Stat(img.NVRAMPath); err != nil {
		img.NVRAMPath = ""
	}
	img.Digest = "dir:" + filepath.Base(dir)
	return img, nil
}
