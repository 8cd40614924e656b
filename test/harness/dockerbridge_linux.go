package harness

import (
	"fmt"
	"os/exec"
	"strings"
)

// newDockerBridge creates a bridge of its own for a dockerd the harness
// starts, with a /24 of 172.30.0.0/16, and returns its name and a function
// that deletes it. Each dockerd needs one: they cannot share docker0, and
// without a bridge (--bridge=none) containers have no network, so ports
// cannot be published. Creating the link is what claims a name and its
// subnet: concurrent test binaries each get the first one still free.
func newDockerBridge() (name string, remove func(), err error) {
	for n := range 256 {
		name = fmt.Sprintf("vzfdock%d", n)
		if exec.Command("ip", "link", "add", name, "type", "bridge").Run() != nil {
			continue // taken, or ip(8) cannot add bridges: see below
		}
		remove = func() { _ = exec.Command("ip", "link", "del", name).Run() }
		for _, step := range [][]string{
			{"ip", "addr", "add", fmt.Sprintf("172.30.%d.1/24", n), "dev", name},
			{"ip", "link", "set", name, "up"},
		} {
			if out, err := exec.Command(step[0], step[1:]...).CombinedOutput(); err != nil {
				remove()
				return "", nil, fmt.Errorf("docker bridge %s: %s: %w: %s", name, strings.Join(step, " "), err, strings.TrimSpace(string(out)))
			}
		}
		return name, remove, nil
	}
	out, err := exec.Command("ip", "link", "add", "vzfdockprobe", "type", "bridge").CombinedOutput()
	if err == nil {
		_ = exec.Command("ip", "link", "del", "vzfdockprobe").Run()
		return "", nil, fmt.Errorf("docker bridge: vzfdock0 to vzfdock255 all exist; delete the stale ones (ip link del vzfdockN)")
	}
	return "", nil, fmt.Errorf("docker bridge: ip link add: %w: %s (the harness's dockerd needs root and iproute2)", err, strings.TrimSpace(string(out)))
}
