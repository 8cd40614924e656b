package harness

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A bridge left behind by a process that died without cleaning up (its
// lock gone with it) is taken over by the next dockerd, while one whose
// owner lives is not.
func TestDockerBridgeTakesOverStale(t *testing.T) {
	if os.Getenv("VZFLEET_BRIDGE_CHILD") != "" {
		name, _, err := newDockerBridge()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(name)
		os.Exit(0) // dies without removing it, as a killed test binary does
	}
	RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestDockerBridgeTakesOverStale$")
	cmd.Env = append(os.Environ(), "VZFLEET_BRIDGE_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	stale := strings.TrimSpace(string(out))
	if exec.Command("ip", "link", "show", stale).Run() != nil {
		t.Fatalf("the child's bridge %q does not exist", stale)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", stale).Run() })

	name, remove, err := newDockerBridge()
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	if name != stale {
		t.Fatalf("got bridge %s, want the stale %s taken over", name, stale)
	}
	other, removeOther, err := newDockerBridge()
	if err != nil {
		t.Fatal(err)
	}
	removeOther()
	if other == name {
		t.Fatalf("a second dockerd got %s, which the first holds", other)
	}
	if exec.Command("ip", "link", "show", other).Run() == nil {
		t.Fatalf("bridge %s is left after its removal", other)
	}
}
