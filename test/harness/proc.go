package harness

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Descendants lists the pids below pid (children, grandchildren, ...), read
// from /proc; it is empty where there is no /proc. Daemons such as sshd put
// each connection in a session of its own, beyond the reach of a process
// group kill, so stopping them for good means finding these.
func Descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: the fields
		// start after the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(fields[1]); err == nil {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		// The hop limit guards against a cycle from pids reused mid-scan.
		for a, hops := parent[p], 0; a > 1 && hops < 64; a, hops = parent[a], hops+1 {
			if a == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// ProcessesRunning lists the pids whose command line holds args, in a row.
func ProcessesRunning(args ...string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte("\x00" + strings.Join(args, "\x00") + "\x00")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(append([]byte{0}, cmdline...), want) {
			out = append(out, p)
		}
	}
	return out
}

// ProcessCPU is the user and system time process pid has used (0 where
// there is no /proc or no such process).
func ProcessCPU(pid int) time.Duration {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	// utime and stime are the 12th and 13th fields after the command
	// name, in clock ticks (100 per second on Linux).
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	s, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// MachineCPU is the CPU time all processes and the kernel have spent on
// this machine since it booted (every CPU's busy time, from /proc/stat;
// 0 where there is none): the whole cost of a run whose parts share the
// machine, kernel threads doing a process's I/O included (they are charged
// to no process).
func MachineCPU() time.Duration {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	// user nice system idle iowait irq softirq steal; guest time is
	// counted in user already.
	for i, field := range fields[1:min(len(fields), 9)] {
		v, _ := strconv.ParseInt(field, 10, 64)
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}
