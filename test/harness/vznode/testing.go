package vznode

import (
	"testing"

	"github.com/vzfleet/vzfleet/test/harness"
)

// StartT starts a Node for a test or benchmark and stops it, and its VMs,
// at cleanup, printing its log's tail when the test failed.
func StartT(t testing.TB, cp *harness.ControlPlane, opts Options) *Node {
	t.Helper()
	harness.RequireRoot(t)
	n, err := Start(cp, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("vz-node %s: %v", opts.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- vz-node log tail (%s) ---\n%s", n.LogPath, n.Proc.Tail(60))
		}
		n.Stop()
	})
	return n
}
