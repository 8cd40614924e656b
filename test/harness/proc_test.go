package harness

import (
	"os"
	"testing"
	"time"
)

// Both clocks see the CPU time a busy loop spends here: this process's
// and the machine's.
func TestCPUClocks(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc here")
	}
	self, machine := ProcessCPU(os.Getpid()), MachineCPU()
	for start := time.Now(); ProcessCPU(os.Getpid())-self < 300*time.Millisecond; {
		if time.Since(start) > time.Minute {
			t.Fatalf("a busy loop spent %s of CPU in a minute, by ProcessCPU", ProcessCPU(os.Getpid())-self)
		}
		for i := 0; i < 1e6; i++ {
			_ = i * i
		}
	}
	if got := MachineCPU() - machine; got < 250*time.Millisecond {
		t.Errorf("MachineCPU grew by %s while this process alone spent 300ms", got)
	}
}
