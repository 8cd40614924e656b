package node

import (
	"time"
)

// hostUsage is the host's own resource use, for node stats and conditions.
type hostUsage struct {
	Boot                 time.Time
	CPUSeconds           float64
	MemoryTotalBytes     uint64
	MemoryUsedBytes      uint64
	MemoryAvailableBytes uint64
}

// hostFacts describe the machine for the node's labels and info.
type hostFacts struct {
	CPUModel      string
	CPUs          int
	MemoryBytes   uint64
	OSImage       string
	KernelVersion string
	// MacOSVersion is empty off macOS.
	MacOSVersion string
	MachineID    string
}
