package overlay

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

const sharedMethod = Reflink

// reflinkWorks probes FICLONE in dir directly, without Clone.
func reflinkWorks(t *testing.T, dir string) bool {
	a, err := os.Create(filepath.Join(dir, "probe-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.WriteString("probe"); err != nil {
		t.Fatal(err)
	}
	b, err := os.Create(filepath.Join(dir, "probe-b"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return unix.IoctlFileClone(int(b.Fd()), int(a.Fd())) == nil
}
