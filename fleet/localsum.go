package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// sumCacheEntry is a local file's sha256 as it was when the file had this
// size, mtime and inode.
type sumCacheEntry struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtimeNs"`
	Inode   uint64 `json:"inode"`
	SHA256  string `json:"sha256"`
	// Version is what this binary reported on a host (`vz-node version`).
	Version string `json:"version,omitempty"`
}

// fileSHA256 returns a local file's sha256, its size and the version a
// host reported for it (recordVersion; "" when none). The sum comes from
// cacheFile (when set) while the file's size, mtime and inode are the
// ones recorded there; otherwise the file is hashed as a stream and the
// sum recorded. Hashing the vz-node binary costs more than the rest of a
// no-op apply's local work, on every run.
func fileSHA256(path, cacheFile string) (string, int64, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", 0, "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", 0, "", err
	}
	key := sumCacheEntry{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(), Inode: fileInode(fi)}
	cache := map[string]sumCacheEntry{}
	if cacheFile != "" {
		if b, err := os.ReadFile(cacheFile); err == nil {
			_ = json.Unmarshal(b, &cache)
		}
		if e, ok := cache[abs]; ok && e.SHA256 != "" && e.Size == key.Size && e.MtimeNs == key.MtimeNs && e.Inode == key.Inode {
			return e.SHA256, e.Size, e.Version, nil
		}
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, "", err
	}
	key.SHA256, key.Size = hex.EncodeToString(h.Sum(nil)), n
	if cacheFile != "" {
		cache[abs] = key
		// Best effort: without the cache the next run hashes again.
		_ = writeSumCache(cacheFile, cache)
	}
	return key.SHA256, n, "", nil
}

// recordVersion notes in cacheFile the version the binary at path (with
// sum) reported, so later runs need not ask a host. Best effort.
func recordVersion(cacheFile, path, sum, version string) {
	if cacheFile == "" {
		return
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return
	}
	cache := map[string]sumCacheEntry{}
	if b, err := os.ReadFile(cacheFile); err == nil {
		_ = json.Unmarshal(b, &cache)
	}
	if e, ok := cache[abs]; ok && e.SHA256 == sum {
		e.Version = version
		cache[abs] = e
		_ = writeSumCache(cacheFile, cache)
	}
}

func writeSumCache(cacheFile string, cache map[string]sumCacheEntry) error {
	for p := range cache {
		if _, err := os.Stat(p); err != nil {
			delete(cache, p)
		}
	}
	b, err := json.Marshal(cache)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cacheFile), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(cacheFile), ".sums-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), cacheFile); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("sum cache: %w", err)
	}
	return nil
}

// defaultSumCache is where fleetctl keeps local files' sums: the user's
// cache directory, or nowhere when there is none.
func defaultSumCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "vzfleet", "sha256-cache.json")
}
