package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrInvalid is wrapped by every error about a malformed manifest, config or
// annotation.
var ErrInvalid = errors.New("invalid VM image")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Layout tells which tool's format an image uses.
type Layout string

const (
	LayoutTart    Layout = "tart"
	LayoutMacOSVZ Layout = "macos-vz-kubelet"
)

// Compression is how a layer's bytes are encoded.
type Compression string

const (
	CompressionNone     Compression = "none"
	CompressionAppleLZ4 Compression = "apple-lz4"
	CompressionGzip     Compression = "gzip"
)

// Chunk is one disk layer and the part of the disk it fills.
type Chunk struct {
	Index       int
	Layer       ocispec.Descriptor // the blob in the registry
	Compression Compression
	Offset      int64         // where its bytes start in the disk file
	Size        int64         // uncompressed size
	Digest      digest.Digest // of the uncompressed bytes
}

// File is a small layer stored as one file (VM config, NVRAM).
type File struct {
	Layer       ocispec.Descriptor
	Compression Compression
	// Size and Digest describe the uncompressed bytes; for uncompressed
	// layers they equal the layer's.
	Size   int64
	Digest digest.Digest
}

// Image is a parsed, validated VM image manifest.
type Image struct {
	Layout   Layout
	Manifest ocispec.Manifest
	Config   File // VM config JSON (tart's config.json or macOS-vz-kubelet's)
	NVRAM    File // tart's nvram.bin, macOS-vz-kubelet's aux.img
	Disk     []Chunk
	DiskSize int64
}

// CompressedSize is the total size of the layers a pull downloads.
func (im *Image) CompressedSize() int64 {
	n := im.Config.Layer.Size + im.NVRAM.Layer.Size
	for _, c := range im.Disk {
		n += c.Layer.Size
	}
	return n
}

// ParseManifest parses an OCI image manifest and validates it as a VM image
// of either layout.
func ParseManifest(data []byte) (*Image, error) {
	if len(data) > MaxManifestSize {
		return nil, invalid("manifest is %d bytes, more than the %d-byte limit", len(data), MaxManifestSize)
	}
	var m ocispec.Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, invalid("manifest is not valid JSON: %v", err)
	}
	if m.SchemaVersion != 2 {
		return nil, invalid("manifest schemaVersion is %d, want 2", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest {
		return nil, invalid("manifest mediaType is %q, want %q (an image index or Docker manifest is not a VM image)", m.MediaType, ocispec.MediaTypeImageManifest)
	}
	if len(m.Layers) == 0 {
		return nil, invalid("manifest has no layers")
	}
	if len(m.Layers) > maxLayers {
		return nil, invalid("manifest has %d layers, more than %d", len(m.Layers), maxLayers)
	}
	if err := checkDescriptor("config", m.Config); err != nil {
		return nil, err
	}
	for i, l := range m.Layers {
		if err := checkDescriptor(fmt.Sprintf("layer %d", i), l); err != nil {
			return nil, err
		}
	}
	for _, l := range m.Layers {
		switch l.MediaType {
		case MediaTypeTartConfig, MediaTypeTartDisk, MediaTypeTartNVRAM, MediaTypeTartDiskV1:
			return parseTart(m)
		case MediaTypeMacOSVZDisk, MediaTypeMacOSVZAux, MediaTypeMacOSVZConfig:
			return parseMacOSVZ(m)
		}
	}
	return nil, invalid("no layer has a tart (application/vnd.cirruslabs.tart.*) or macOS-vz-kubelet (application/vnd.agoda.macosvz.*) media type, so it is not a VM image (config media type %q)", m.Config.MediaType)
}

func checkDescriptor(what string, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return invalid("%s digest %q: %v", what, d.Digest, err)
	}
	if d.Size < 0 {
		return invalid("%s %s has negative size %d", what, d.Digest, d.Size)
	}
	return nil
}

func parseTart(m ocispec.Manifest) (*Image, error) {
	im := &Image{Layout: LayoutTart, Manifest: m}
	var haveConfig, haveNVRAM bool
	for i, l := range m.Layers {
		switch l.MediaType {
		case MediaTypeTartConfig:
			if haveConfig {
				return nil, invalid("layer %d: a second VM config layer", i)
			}
			if l.Size > MaxConfigSize {
				return nil, invalid("layer %d: VM config is %d bytes, more than the %d-byte limit", i, l.Size, MaxConfigSize)
			}
			haveConfig = true
			im.Config = File{Layer: l, Compression: CompressionNone, Size: l.Size, Digest: l.Digest}
		case MediaTypeTartNVRAM:
			if haveNVRAM {
				return nil, invalid("layer %d: a second NVRAM layer", i)
			}
			if l.Size > MaxNVRAMSize {
				return nil, invalid("layer %d: NVRAM is %d bytes, more than the %d-byte limit", i, l.Size, MaxNVRAMSize)
			}
			haveNVRAM = true
			im.NVRAM = File{Layer: l, Compression: CompressionNone, Size: l.Size, Digest: l.Digest}
		case MediaTypeTartDisk:
			size, dgst, err := uncompressedInfo(i, l, AnnotationUncompressedSize, AnnotationUncompressedDigest)
			if err != nil {
				return nil, err
			}
			if im.DiskSize+size > maxDiskSize {
				return nil, invalid("layer %d: disk grows beyond %d bytes", i, int64(maxDiskSize))
			}
			im.Disk = append(im.Disk, Chunk{Index: len(im.Disk), Layer: l, Compression: CompressionAppleLZ4, Offset: im.DiskSize, Size: size, Digest: dgst})
			im.DiskSize += size
		case MediaTypeTartDiskV1:
			return nil, invalid("layer %d uses tart's retired disk layout %s; re-push the image with a current tart", i, MediaTypeTartDiskV1)
		default:
			// Unknown layers are ignored, as tart does.
		}
	}
	if !haveConfig {
		return nil, invalid("tart image has no VM config layer (%s)", MediaTypeTartConfig)
	}
	if !haveNVRAM {
		return nil, invalid("tart image has no NVRAM layer (%s)", MediaTypeTartNVRAM)
	}
	if len(im.Disk) == 0 {
		return nil, invalid("tart image has no disk layers (%s)", MediaTypeTartDisk)
	}
	if v, ok := m.Annotations[AnnotationDiskSize]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, invalid("manifest annotation %s=%q is not a size", AnnotationDiskSize, v)
		}
		if n != im.DiskSize {
			return nil, invalid("manifest annotation %s=%d disagrees with the disk layers, which add up to %d bytes", AnnotationDiskSize, n, im.DiskSize)
		}
	}
	return im, nil
}

func uncompressedInfo(i int, l ocispec.Descriptor, sizeKey, digestKey string) (int64, digest.Digest, error) {
	sv, ok := l.Annotations[sizeKey]
	if !ok {
		return 0, "", invalid("layer %d (%s) lacks the %s annotation", i, l.Digest, sizeKey)
	}
	size, err := strconv.ParseInt(sv, 10, 64)
	if err != nil || size < 0 {
		return 0, "", invalid("layer %d (%s): annotation %s=%q is not a size", i, l.Digest, sizeKey, sv)
	}
	if size > maxDiskSize {
		return 0, "", invalid("layer %d (%s): uncompressed size %d is implausibly large", i, l.Digest, size)
	}
	dv, ok := l.Annotations[digestKey]
	if !ok {
		return 0, "", invalid("layer %d (%s) lacks the %s annotation", i, l.Digest, digestKey)
	}
	d := digest.Digest(dv)
	if err := d.Validate(); err != nil {
		return 0, "", invalid("layer %d (%s): annotation %s=%q: %v", i, l.Digest, digestKey, dv, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return 0, "", invalid("layer %d (%s): annotation %s uses %s; only sha256 is supported", i, l.Digest, digestKey, d.Algorithm())
	}
	return size, d, nil
}

func parseMacOSVZ(m ocispec.Manifest) (*Image, error) {
	im := &Image{Layout: LayoutMacOSVZ, Manifest: m}
	var haveConfig, haveDisk, haveAux bool
	for i, l := range m.Layers {
		switch l.MediaType {
		case MediaTypeMacOSVZConfig:
			if haveConfig {
				return nil, invalid("layer %d: a second config layer", i)
			}
			if l.Size > MaxConfigSize {
				return nil, invalid("layer %d: config is %d bytes, more than the %d-byte limit", i, l.Size, MaxConfigSize)
			}
			haveConfig = true
			im.Config = File{Layer: l, Compression: CompressionNone, Size: l.Size, Digest: l.Digest}
		case MediaTypeMacOSVZAux:
			if haveAux {
				return nil, invalid("layer %d: a second auxiliary storage layer", i)
			}
			haveAux = true
			f, err := macOSVZFile(i, l)
			if err != nil {
				return nil, err
			}
			if f.Size > MaxNVRAMSize {
				return nil, invalid("layer %d: auxiliary storage is %d bytes, more than the %d-byte limit", i, f.Size, MaxNVRAMSize)
			}
			im.NVRAM = f
		case MediaTypeMacOSVZDisk:
			if haveDisk {
				return nil, invalid("layer %d: a second disk layer", i)
			}
			haveDisk = true
			f, err := macOSVZFile(i, l)
			if err != nil {
				return nil, err
			}
			if f.Size > maxDiskSize {
				return nil, invalid("layer %d: disk size %d is implausibly large", i, f.Size)
			}
			im.Disk = []Chunk{{Layer: l, Compression: f.Compression, Size: f.Size, Digest: f.Digest}}
			im.DiskSize = f.Size
		}
	}
	switch {
	case !haveConfig:
		return nil, invalid("macOS-vz-kubelet image has no config layer (%s)", MediaTypeMacOSVZConfig)
	case !haveDisk:
		return nil, invalid("macOS-vz-kubelet image has no disk layer (%s)", MediaTypeMacOSVZDisk)
	case !haveAux:
		return nil, invalid("macOS-vz-kubelet image has no auxiliary storage layer (%s)", MediaTypeMacOSVZAux)
	}
	return im, nil
}

// macOSVZFile: a layer with both uncompressed annotations is one gzip
// stream; without them it is stored as is.
func macOSVZFile(i int, l ocispec.Descriptor) (File, error) {
	_, hasSize := l.Annotations[AnnotationMacOSVZUncompressedSize]
	_, hasDigest := l.Annotations[AnnotationMacOSVZUncompressedDigest]
	if !hasSize && !hasDigest {
		return File{Layer: l, Compression: CompressionNone, Size: l.Size, Digest: l.Digest}, nil
	}
	size, d, err := uncompressedInfo(i, l, AnnotationMacOSVZUncompressedSize, AnnotationMacOSVZUncompressedDigest)
	if err != nil {
		return File{}, err
	}
	return File{Layer: l, Compression: CompressionGzip, Size: size, Digest: d}, nil
}

// NewTartManifest builds a tart manifest: config is the stub OCI config's
// descriptor, layers the VM config, disk chunks and NVRAM layers in order.
func NewTartManifest(config ocispec.Descriptor, layers []ocispec.Descriptor, diskSize int64, annotations map[string]string) ocispec.Manifest {
	ann := map[string]string{AnnotationDiskSize: strconv.FormatInt(diskSize, 10)}
	for k, v := range annotations {
		ann[k] = v
	}
	return ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      config,
		Layers:      layers,
		Annotations: ann,
	}
}

// DiskLayer annotates a disk chunk's descriptor with its uncompressed size
// and digest.
func DiskLayer(blob ocispec.Descriptor, size int64, uncompressed digest.Digest) ocispec.Descriptor {
	blob.MediaType = MediaTypeTartDisk
	blob.Annotations = map[string]string{
		AnnotationUncompressedSize:   strconv.FormatInt(size, 10),
		AnnotationUncompressedDigest: uncompressed.String(),
	}
	return blob
}
