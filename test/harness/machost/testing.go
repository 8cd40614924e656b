package machost

import (
	"context"
	"testing"
	"time"
)

// LabT starts a lab for a test in a temporary directory (unless opts.Dir is
// set) and stops it at cleanup, printing the hosts' log tails when the test
// failed. It fails the test when the lab cannot start.
func LabT(t testing.TB, opts LabOptions) *Lab {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Log == nil {
		opts.Log = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab, err := StartLab(ctx, opts)
	if err != nil {
		t.Fatalf("simulated Mac hosts: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range lab.Hosts {
				t.Logf("--- %s: sshd log ---\n%s\n--- %s: launchd log ---\n%s", h.Name, tail(h.SSHLog(), 15), h.Name, tail(h.LaunchdLog(), 15))
			}
		}
		if err := lab.Stop(); err != nil {
			t.Errorf("stopping the simulated hosts: %v", err)
		}
	})
	return lab
}

func tail(s string, n int) string {
	end := len(s)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' && i != len(s)-1 {
			n--
			if n == 0 {
				return s[i+1 : end]
			}
		}
	}
	return s
}
