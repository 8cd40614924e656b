package harness

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// ExtraAddress adds ip/32 to the loopback interface of this network
// namespace and returns a function that removes it. Tests use it to give a
// node a non-loopback InternalIP: the apiserver refuses to proxy
// (nodes/NAME/proxy) to loopback and link-local addresses, whatever
// interface holds them.
func ExtraAddress(ip net.IP) (remove func(), err error) {
	if ip.To4() == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return nil, fmt.Errorf("extra address %s: want a routable IPv4 address", ip)
	}
	cidr := ip.String() + "/32"
	if out, err := exec.Command("ip", "addr", "add", cidr, "dev", "lo").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip addr add %s dev lo: %w: %s", cidr, err, strings.TrimSpace(string(out)))
	}
	return func() { _ = exec.Command("ip", "addr", "del", cidr, "dev", "lo").Run() }, nil
}
