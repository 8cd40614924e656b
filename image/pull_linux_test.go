package image

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/vzfleet/vzfleet/test/harness"
)

// A real full file system: a small tmpfs, with the free-space check fooled
// so the writes themselves hit ENOSPC.
func TestPullDiskFull(t *testing.T) {
	harness.RequireRoot(t) // to mount a tmpfs
	e := newEnv(t)
	e.push(e.vmDirSized("src", smallDiskSize, smallRegions), "base:v1", smallChunk)
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=12m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	c, err := OpenCache(mnt, Options{freeSpace: func(string) (int64, error) { return 1 << 40, nil }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Pull(context.Background(), e.ref("base:v1"), PullOptions{})
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("pull into a full file system: %v", err)
	}
	t.Logf("reported: %v", err)
	assertNothingVisible(t, c)
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	if free := int64(st.Bfree) * st.Bsize; free < 10*mib {
		t.Fatalf("only %d MiB free after the failed pull: the partial image was left behind", free>>20)
	}
}
