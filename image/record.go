package image

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/vzfleet/vzfleet/image/format"
)

// Files beside the VM files in a cache entry.
const (
	manifestFile = "manifest.json"
	recordFile   = "record.json"
	progressFile = "progress.json"
	lastUsedFile = "last-used"
)

// chunkRecord is a disk region and the digest its bytes had when written.
type chunkRecord struct {
	Offset int64         `json:"offset"`
	Size   int64         `json:"size"`
	Digest digest.Digest `json:"digest"`
}

// record describes a complete cached image as it was verified. If the
// disk's size or modification time no longer match, the chunks are hashed
// again before the image is used.
type record struct {
	Manifest    digest.Digest `json:"manifest"`
	Reference   string        `json:"reference"`
	Layout      format.Layout `json:"layout"`
	DiskSize    int64         `json:"diskSize"`
	Chunks      []chunkRecord `json:"chunks"`
	NVRAM       digest.Digest `json:"nvram"`
	Config      digest.Digest `json:"config"`
	DiskModTime int64         `json:"diskModTime"` // UnixNano
	PulledAt    time.Time     `json:"pulledAt"`
}

// progressRecord lists the chunks of a partial pull already written:
// index -> uncompressed digest. The disk is not synced per chunk, so a pull
// that resumes after a crash hashes these chunks again before trusting them.
type progressRecord struct {
	Manifest digest.Digest         `json:"manifest"`
	Done     map[int]digest.Digest `json:"done"`
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeFileAtomic(path, b)
}

// writeFileAtomic writes path through a synced temporary file and a rename,
// so readers see the old or the new content, never a torn one.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
