package harness

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
