// Package format describes macOS VM images stored in OCI registries: tart's
// layout (a VM config layer, the disk as LZ4-compressed chunks, an NVRAM
// layer, a stub OCI image config) and macOS-vz-kubelet's layout (one gzip
// stream per file). It parses and validates manifests and VM configs and
// builds tart manifests; it does no I/O.
package format

// Media types and annotations of tart's format.
const (
	MediaTypeTartConfig = "application/vnd.cirruslabs.tart.config.v1"
	MediaTypeTartDisk   = "application/vnd.cirruslabs.tart.disk.v2"
	MediaTypeTartNVRAM  = "application/vnd.cirruslabs.tart.nvram.v1"
	// MediaTypeTartDiskV1 is tart's retired disk layout, refused with a hint.
	MediaTypeTartDiskV1 = "application/vnd.cirruslabs.tart.disk.v1"

	// AnnotationDiskSize (manifest) is the uncompressed size of the disk.
	AnnotationDiskSize = "org.cirruslabs.tart.uncompressed-disk-size"
	// AnnotationUploadTime (manifest) is when tart pushed the image.
	AnnotationUploadTime = "org.cirruslabs.tart.upload-time"
	// AnnotationUncompressedSize (disk layer) is the chunk's size on disk.
	AnnotationUncompressedSize = "org.cirruslabs.tart.uncompressed-size"
	// AnnotationUncompressedDigest (disk layer) is the digest of the chunk's
	// uncompressed bytes.
	AnnotationUncompressedDigest = "org.cirruslabs.tart.uncompressed-content-digest"
	// LabelDiskFormat (stub OCI config label) is the disk format: raw or asif.
	LabelDiskFormat = "org.cirruslabs.tart.disk.format"

	// DefaultChunkSize is the uncompressed size of tart's disk chunks. Readers
	// never assume it: offsets come from the per-layer annotations.
	DefaultChunkSize = 512 << 20
)

// Media types and annotations of macOS-vz-kubelet's format.
const (
	MediaTypeMacOSVZArtifact = "application/vnd.agoda.macosvz.artifact"
	MediaTypeMacOSVZDisk     = "application/vnd.agoda.macosvz.disk.image.v1"
	MediaTypeMacOSVZAux      = "application/vnd.agoda.macosvz.aux.image.v1"
	MediaTypeMacOSVZConfig   = "application/vnd.agoda.macosvz.config.v1+json"

	AnnotationMacOSVZUncompressedSize   = "com.agoda.macosvz.content.uncompressed-size"
	AnnotationMacOSVZUncompressedDigest = "com.agoda.macosvz.content.uncompressed-digest"
)

// Limits on what a parser accepts from a registry.
const (
	MaxManifestSize = 4 << 20
	MaxConfigSize   = 1 << 20
	MaxNVRAMSize    = 256 << 20
	maxLayers       = 100000
	maxDiskSize     = 1 << 50
)
