package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// killTagged kills every process whose environment holds tag: the guest's
// processes, including those a command left running in the background
// after its session ended, as powering a machine off ends them all.
func killTagged(tag string) {
	paths, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range paths {
		env, err := os.ReadFile(p)
		if err != nil || !hasEnvEntry(env, tag) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// hasEnvEntry reports whether the NUL-separated environment env holds the
// entry tag.
func hasEnvEntry(env []byte, tag string) bool {
	for e := range bytes.SplitSeq(env, []byte{0}) {
		if string(e) == tag {
			return true
		}
	}
	return false
}
