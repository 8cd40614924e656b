package fleet

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The sum of a local file is computed once and then taken from the cache
// while the file's size, mtime and inode stay; any change hashes again.
func TestFileSHA256Cache(t *testing.T) {
	dir := t.TempDir()
	bin, cache := filepath.Join(dir, "vz-node"), filepath.Join(dir, "cache", "sums.json")
	if err := os.WriteFile(bin, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, size, version, err := fileSHA256(bin, cache)
	if err != nil || sum != sha256Hex([]byte("v1")) || size != 2 || version != "" {
		t.Fatalf("first = %s %d %q %v", sum, size, version, err)
	}
	recordVersion(cache, bin, sum, "v1.0.0")
	recordVersion(cache, bin, "other", "v9") // another binary's answer is not taken
	if _, _, version, _ := fileSHA256(bin, cache); version != "v1.0.0" {
		t.Errorf("recorded version = %q, want v1.0.0", version)
	}

	// Doctor the recorded sum: an unchanged file must be answered from
	// the cache, not hashed.
	var entries map[string]sumCacheEntry
	b, err := os.ReadFile(cache)
	if err != nil || json.Unmarshal(b, &entries) != nil || len(entries) != 1 {
		t.Fatalf("cache file: %s %v", b, err)
	}
	e := entries[bin]
	e.SHA256 = "cached"
	entries[bin] = e
	b, _ = json.Marshal(entries)
	if err := os.WriteFile(cache, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if sum, _, _, _ := fileSHA256(bin, cache); sum != "cached" {
		t.Errorf("unchanged file hashed again: %s", sum)
	}

	// Same size, new mtime: hashed again and recorded.
	if err := os.WriteFile(bin, []byte("v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bin, time.Now(), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if sum, _, version, _ := fileSHA256(bin, cache); sum != sha256Hex([]byte("v2")) || version != "" {
		t.Errorf("changed file: %s %q", sum, version)
	}
	if sum, _, _, _ := fileSHA256(bin, ""); sum != sha256Hex([]byte("v2")) {
		t.Errorf("without a cache: %s", sum)
	}
	if _, _, _, err := fileSHA256(filepath.Join(dir, "missing"), cache); err == nil {
		t.Error("a missing file has a sum")
	}
}

// Hosts asking for the same thing wait for the first one's answer; a
// failure lets the next host try; different keys do not wait for each
// other.
func TestRunnerShared(t *testing.T) {
	r := newRunner(ModeApply, nil, 1, Options{SumCacheFile: "none"})
	var mu sync.Mutex
	computed, got := 0, map[string]int{}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			err := r.shared("version x", func(known string) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				if known == "" {
					computed++
					if computed == 1 {
						return "", errors.New("host down")
					}
					known = "v1"
				}
				got[known]++
				return known, nil
			})
			if err != nil && err.Error() != "host down" {
				t.Errorf("goroutine %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if computed != 2 || got["v1"] != 7 {
		t.Errorf("computed %d times, answers %v; want 2 (one failed) and v1 seven times", computed, got)
	}

	// A slow key does not hold up another.
	release := make(chan struct{})
	go func() { _ = r.shared("slow", func(string) (string, error) { <-release; return "s", nil }) }()
	done := make(chan struct{})
	go func() { _ = r.shared("fast", func(string) (string, error) { return "f", nil }); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("a key waited for another")
	}
	close(release)
}
