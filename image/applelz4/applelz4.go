// Package applelz4 reads and writes LZ4 data in the block framing of Apple's
// Compression framework (COMPRESSION_LZ4), the format of tart's disk layers.
//
// A stream is a sequence of blocks, each starting with a 4-byte magic:
//
//	"bv41" decoded size (u32 LE), encoded size (u32 LE), raw LZ4 block
//	"bv4-" size (u32 LE), stored bytes
//	"bv4$" end of stream
//
// A compressed block may copy from the output of the blocks before it (a
// 64 KiB window), so the decoder keeps that history as the dictionary of the
// next block. The encoder writes blocks of 64 KiB that never reach back into
// earlier blocks, which every conforming decoder (Apple's included) accepts.
package applelz4

import (
	"errors"
	"fmt"
)

const (
	// WindowSize is how far back an LZ4 match may reach.
	WindowSize = 64 << 10
	// BlockSize is the decoded size of the blocks the Writer emits.
	BlockSize = 64 << 10
	// MaxBlockSize is the largest decoded (or stored) block the Reader
	// accepts; Apple's encoder writes blocks of about 64 KiB, and the limit
	// bounds the memory a hostile stream can make the Reader allocate.
	MaxBlockSize = 4 << 20
)

var (
	magicCompressed = [4]byte{'b', 'v', '4', '1'}
	magicStored     = [4]byte{'b', 'v', '4', '-'}
	magicEnd        = [4]byte{'b', 'v', '4', '$'}
)

// ErrCorrupt is wrapped by every error about malformed input, so callers can
// tell bad data (re-download it) from I/O failures.
var ErrCorrupt = errors.New("applelz4: corrupt stream")

func corrupt(block int, offset int64, format string, args ...any) error {
	return fmt.Errorf("%w: block %d at compressed offset %d: "+format, append([]any{ErrCorrupt, block, offset}, args...)...)
}
