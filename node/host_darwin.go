package node

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// readProc reads pid's CPU time and resident memory with ps(1): there is no
// /proc, and libproc needs cgo.
func readProc(pid int) (procSample, error) {
	out, err := exec.Command("/bin/ps", "-o", "rss=,time=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return procSample{}, fmt.Errorf("ps %d: %w", pid, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return procSample{}, fmt.Errorf("ps %d: unexpected output %q", pid, out)
	}
	rssKB, _ := strconv.ParseUint(f[0], 10, 64)
	return procSample{CPUSeconds: parsePSTime(f[1]), RSSBytes: rssKB << 10, At: time.Now()}, nil
}

// parsePSTime reads ps's "[[dd-]hh:]mm:ss.ss".
func parsePSTime(s string) float64 {
	var days float64
	if d, rest, ok := strings.Cut(s, "-"); ok {
		days, _ = strconv.ParseFloat(d, 64)
		s = rest
	}
	total := days * 86400
	parts := strings.Split(s, ":")
	mult := 1.0
	for i := len(parts) - 1; i >= 0; i-- {
		v, _ := strconv.ParseFloat(parts[i], 64)
		total += v * mult
		mult *= 60
	}
	return total
}

func readHostUsage() hostUsage {
	var u hostUsage
	u.MemoryTotalBytes, _ = unix.SysctlUint64("hw.memsize")
	if tv, err := unix.SysctlTimeval("kern.boottime"); err == nil {
		u.Boot = time.Unix(tv.Unix())
	}
	// Free + inactive + speculative pages are available, as Activity
	// Monitor counts them.
	if out, err := exec.Command("/usr/bin/vm_stat").Output(); err == nil {
		page := uint64(16384)
		sc := bufio.NewScanner(bytes.NewReader(out))
		var avail uint64
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "page size of "); i >= 0 {
				fmt.Sscanf(line[i:], "page size of %d bytes", &page)
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch k {
			case "Pages free", "Pages inactive", "Pages speculative":
				n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), "."), 10, 64)
				avail += n
			}
		}
		u.MemoryAvailableBytes = avail * page
	}
	u.MemoryUsedBytes = u.MemoryTotalBytes - min(u.MemoryTotalBytes, u.MemoryAvailableBytes)
	return u
}

func readHostFacts() hostFacts {
	h := hostFacts{CPUs: runtime.NumCPU(), OSImage: "macOS"}
	h.MemoryBytes, _ = unix.SysctlUint64("hw.memsize")
	h.CPUModel, _ = unix.Sysctl("machdep.cpu.brand_string")
	h.KernelVersion, _ = unix.Sysctl("kern.osrelease")
	if v, err := unix.Sysctl("kern.osproductversion"); err == nil {
		h.MacOSVersion = v
		h.OSImage = "macOS " + v
	}
	h.MachineID, _ = unix.Sysctl("kern.uuid")
	return h
}
