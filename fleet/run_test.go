package fleet

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestFileContains(t *testing.T) {
	t.Parallel()
	needle := []byte(virtualizationEntitlement)
	at := func(size, off int) []byte {
		b := bytes.Repeat([]byte{0xcf}, size)
		if off >= 0 {
			copy(b[off:], needle)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		content []byte
		want    bool
	}{
		{"empty", nil, false},
		{"only the needle", needle, true},
		{"shorter than the needle", needle[:5], false},
		{"absent from several reads", at(3<<20, -1), false},
		{"at the start", at(3<<20, 0), true},
		{"at the end", at(3<<20, 3<<20-len(needle)), true},
		{"across the first read's end", at(3<<20, 1<<20-7), true},
		{"across a later read's end", at(3<<20, 2<<20-len(needle)+4), true},
		{"all but its last byte", at(2<<20, 2<<20-len(needle)+1)[:2<<20], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := filepath.Join(t.TempDir(), "vz-node")
			if err := os.WriteFile(name, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := fileContains(name, needle)
			if err != nil || got != tc.want {
				t.Fatalf("fileContains = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := fileContains(filepath.Join(t.TempDir(), "missing"), needle); !os.IsNotExist(err) {
		t.Fatalf("a missing file: %v", err)
	}
}
