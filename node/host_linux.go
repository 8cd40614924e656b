package node

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// readProc reads pid's CPU time (with its reaped children, where the sim's
// guest commands run) and resident memory from /proc.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	// Fields after the command name, which may contain spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procSample{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22 {
		return procSample{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks float64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseFloat(f[k], 64)
		ticks += v
	}
	rssPages, _ := strconv.ParseUint(f[21], 10, 64)
	return procSample{CPUSeconds: ticks / clockTicks, RSSBytes: rssPages * uint64(os.Getpagesize()), At: time.Now()}, nil
}

func readHostUsage() hostUsage {
	var u hostUsage
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 4 && f[0] == "cpu" {
				for _, k := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
					if k < len(f) {
						v, _ := strconv.ParseFloat(f[k], 64)
						u.CPUSeconds += v / clockTicks
					}
				}
			}
			if len(f) == 2 && f[0] == "btime" {
				s, _ := strconv.ParseInt(f[1], 10, 64)
				u.Boot = time.Unix(s, 0)
			}
		}
	}
	mi := meminfo()
	u.MemoryTotalBytes = mi["MemTotal"]
	u.MemoryAvailableBytes = mi["MemAvailable"]
	u.MemoryUsedBytes = u.MemoryTotalBytes - min(u.MemoryTotalBytes, u.MemoryAvailableBytes)
	return u
}

func meminfo() map[string]uint64 {
	out := map[string]uint64{}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(f[0], 10, 64)
		if len(f) > 1 && f[1] == "kB" {
			n <<= 10
		}
		out[k] = n
	}
	return out
}

func readHostFacts() hostFacts {
	h := hostFacts{CPUs: runtime.NumCPU(), MemoryBytes: meminfo()["MemTotal"], OSImage: "Linux"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				h.OSImage = strings.Trim(v, `"`)
			}
		}
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		h.KernelVersion = unix.ByteSliceToString(uts.Release[:])
	}
	if data, err := os.ReadFile("/etc/machine-id"); err == nil {
		h.MachineID = strings.TrimSpace(string(data))
	}
	return h
}
