package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/test/harness"
)

// TestMain gives every fleetctl the tests run an SSH mux directory of
// their own (VZFLEET_SSH_MUX_DIR), so the connections fleetctl keeps
// between runs are these tests' alone, and stops the muxes started there
// when the tests end.
func TestMain(m *testing.M) {
	base, err := os.MkdirTemp("", "vze") // short: the socket's path must fit
	if err != nil {
		panic(err)
	}
	dir := filepath.Join(base, "ssh")
	os.Setenv("VZFLEET_SSH_MUX_DIR", dir)
	code := m.Run()
	for _, pid := range muxPids(dir) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	for deadline := time.Now().Add(10 * time.Second); len(muxPids(dir)) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	os.RemoveAll(base)
	os.Exit(code)
}

func muxPids(dir string) []int { return harness.ProcessesRunning("ssh-mux", "serve", "--dir", dir) }
