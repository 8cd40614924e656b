package harness

import (
	"os/exec"
	"strings"
	"testing"
)

// Only a statically linked busybox can be an image by itself; a dynamic
// one (Debian's busybox package) is refused with what to install.
func TestCheckStatic(t *testing.T) {
	t.Parallel()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("%v (make deps installs busybox-static)", err)
	}
	if err := checkStatic(bb); err != nil {
		t.Fatal(err)
	}
	ls, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStatic(ls); err == nil || !strings.Contains(err.Error(), "install busybox-static") {
		t.Fatalf("a dynamic program: %v, want advice to install busybox-static", err)
	}
}
