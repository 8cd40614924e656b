package sim

import "golang.org/x/sys/unix"

// hostMemory reads hw.memsize.
func hostMemory() (uint64, error) {
	return unix.SysctlUint64("hw.memsize")
}
