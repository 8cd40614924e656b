package leases

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Update rewrites the lease file at path with fn's result, holding an
// exclusive lock (path + ".lock") so writers in other processes take turns,
// and replacing the file atomically so readers never see half a file.
func Update(path string, fn func([]Lease) ([]Lease, error)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("leases: lock %s: %w", path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("leases: lock %s: %w", path, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	cur, err := Read(path)
	if err != nil {
		return err
	}
	next, err := fn(cur)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := Format(&buf, next); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("leases: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("leases: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("leases: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("leases: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("leases: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("leases: replace %s: %w", path, err)
	}
	return nil
}

// Put records l as the newest lease, first dropping any lease for the same
// MAC address or the same IP address (bootpd keeps one lease per client and
// lists the newest first).
func Put(path string, l Lease) error {
	mac := l.MAC()
	return Update(path, func(cur []Lease) ([]Lease, error) {
		out := []Lease{l}
		for _, c := range cur {
			if sameMAC(c.MAC(), mac) || (c.IP != nil && c.IP.Equal(l.IP)) {
				continue
			}
			out = append(out, c)
		}
		return out, nil
	})
}

// Release removes every lease for mac, as bootpd does when a client releases
// its address.
func Release(path string, mac net.HardwareAddr) error {
	return Update(path, func(cur []Lease) ([]Lease, error) {
		out := cur[:0]
		for _, c := range cur {
			if !sameMAC(c.MAC(), mac) {
				out = append(out, c)
			}
		}
		return out, nil
	})
}
