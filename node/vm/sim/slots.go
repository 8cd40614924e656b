package sim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A slot is one of the host's MaxRunning places for a running guest: an
// exclusive flock on <StateDir>/.vm-slots/slot-N held while the guest runs.
// The kernel drops the lock when the holding process dies, so a killed
// supervisor never leaks its slot, and every process sharing StateDir
// counts against the same limit.
type slot struct {
	f *os.File
	n int
}

func slotPath(stateDir string, n int) string {
	return filepath.Join(stateDir, slotsDir, fmt.Sprintf("slot-%d", n))
}

// acquireSlot takes a free slot or fails with errNoSlot.
func acquireSlot(stateDir string, max int) (*slot, error) {
	for n := range max {
		f, err := os.OpenFile(slotPath(stateDir, n), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("vm slot: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &slot{f: f, n: n}, nil
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("vm slot %s: %w", slotPath(stateDir, n), err)
		}
	}
	return nil, errNoSlot
}

var errNoSlot = errors.New("no free slot")

func (s *slot) release() {
	unix.Flock(int(s.f.Fd()), unix.LOCK_UN)
	s.f.Close()
}

// UsedSlots counts the running guests of every process sharing stateDir,
// out of max slots: what a node checks for leaked VMs.
func UsedSlots(stateDir string, max int) (int, error) {
	used := 0
	for n := range max {
		f, err := os.OpenFile(slotPath(stateDir, n), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return 0, fmt.Errorf("vm slot: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		f.Close() // closing drops the probe's lock
		switch {
		case errors.Is(err, unix.EWOULDBLOCK):
			used++
		case err != nil:
			return 0, fmt.Errorf("vm slot %s: %w", slotPath(stateDir, n), err)
		}
	}
	return used, nil
}
