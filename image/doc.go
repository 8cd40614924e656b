// Package image moves macOS VM images between OCI registries and a host:
// Push packages a VM directory (disk.img, nvram.bin, config.json) in tart's
// format, Inspect describes a remote image, and Cache is the pull engine and
// the digest-addressed local store vz-node boots VMs from.
//
// The cache directory holds
//
//	images/<alg>-<hex>/   complete images, named by manifest digest:
//	                      disk.img, nvram.bin, config.json, manifest.json,
//	                      record.json (what was verified), last-used
//	partial/<alg>-<hex>/  pulls in progress, renamed into images/ when complete
//	refs.json             the digest each reference last resolved to
//
// A pull downloads disk chunks in parallel, each streamed from the registry
// through the decompressor straight into the disk file at its offset; zero
// runs are left as holes. Every downloaded blob is verified against its
// digest as it arrives, the size it decodes to against the chunk's, and the
// chunk is recorded as done in partial/.../progress.json so a crashed pull
// fetches only the chunks still missing. Bytes that did not just arrive
// verified are checked against the chunk's uncompressed digest: chunks
// recorded before a crash, chunks copied from another image, and a cached
// disk changed since its record. An interrupted blob download continues
// with an HTTP Range request. Chunks that a cached image already holds
// (same uncompressed digest) are copied locally, which makes pulling a new
// version of an image fetch only the chunks that changed.
package image
