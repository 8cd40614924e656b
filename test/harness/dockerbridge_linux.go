package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// bridgeLockDir holds a lock file per bridge name: a live process that
// owns vzfdockN holds vzfdockN.lock. The kernel drops the lock when the
// process dies, however it dies, so a bridge whose lock is free is a stale
// one a killed test binary left behind, and is taken over.
var bridgeLockDir = "/run/vzfleet-docker-bridges"

// newDockerBridge creates a bridge of its own for a dockerd the harness
// starts, with a /24 of 172.30.0.0/16, and returns its name and a function
// that deletes it. Each dockerd needs one: they cannot share docker0, and
// without a bridge (--bridge=none) containers have no network, so ports
// cannot be published. Concurrent test binaries each get the first name
// whose lock is free.
func newDockerBridge() (name string, remove func(), err error) {
	if err := os.MkdirAll(bridgeLockDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("docker bridge: %w", err)
	}
	for n := range 256 {
		name = fmt.Sprintf("vzfdock%d", n)
		lock, ok, err := lockBridge(name)
		if err != nil {
			return "", nil, err
		}
		if !ok {
			continue
		}
		remove = func() {
			_ = exec.Command("ip", "link", "del", name).Run()
			lock.Close()
		}
		_ = exec.Command("ip", "link", "del", name).Run() // a stale one
		for _, step := range [][]string{
			{"ip", "link", "add", name, "type", "bridge"},
			{"ip", "addr", "add", fmt.Sprintf("172.30.%d.1/24", n), "dev", name},
			{"ip", "link", "set", name, "up"},
		} {
			if out, err := exec.Command(step[0], step[1:]...).CombinedOutput(); err != nil {
				remove()
				return "", nil, fmt.Errorf("docker bridge %s: %s: %w: %s (the harness's dockerd needs root and iproute2)", name, strings.Join(step, " "), err, strings.TrimSpace(string(out)))
			}
		}
		return name, remove, nil
	}
	return "", nil, errors.New("docker bridge: vzfdock0 to vzfdock255 are all held by running processes")
}

// lockBridge takes the lock on bridge name without waiting; ok is false
// when a live process holds it. The returned file holds the lock until it
// is closed.
func lockBridge(name string) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(filepath.Join(bridgeLockDir, name+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("docker bridge: %w", err)
	}
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); {
	case err == nil:
		return f, true, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		f.Close()
		return nil, false, nil
	default:
		f.Close()
		return nil, false, fmt.Errorf("docker bridge: lock %s: %w", f.Name(), err)
	}
}
