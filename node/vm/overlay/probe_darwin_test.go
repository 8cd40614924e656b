package overlay

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

const sharedMethod = Clonefile

// reflinkWorks probes clonefile(2) in dir directly, without Clone.
func reflinkWorks(t *testing.T, dir string) bool {
	a := filepath.Join(dir, "probe-a")
	if err := os.WriteFile(a, []byte("probe"), 0o644); err != nil {
		t.Fatal(err)
	}
	return unix.Clonefile(a, filepath.Join(dir, "probe-b"), 0) == nil
}
