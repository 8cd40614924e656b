package machost

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDir holds one lock file per subnet in use, held by the lab's process:
// a lab that finds the lock free knows that whatever carries that subnet's
// names is left over from a killed run.
const lockDir = "/run/vzfleet-machost"

// network is a lab's bridge and the names derived from its subnet's third
// octet: bridge vzfleet-br<N>, namespaces vzfleet<N>-<host>, host-side veths
// vzf<N>-<last octet>.
type network struct {
	subnet, gateway, bridge string
	prefix                  [3]byte
	id                      int
	lock                    *os.File
	iptables                bool
	log                     func(string, ...any)
}

func (n *network) ip(octet int) string {
	return fmt.Sprintf("%d.%d.%d.%d", n.prefix[0], n.prefix[1], n.prefix[2], octet)
}

func (n *network) namespace(host string) string { return fmt.Sprintf("vzfleet%d-%s", n.id, host) }

func (n *network) veth(octet int) string { return fmt.Sprintf("vzf%d-%d", n.id, octet) }

func (n *network) nsPrefix() string { return fmt.Sprintf("vzfleet%d-", n.id) }

func (n *network) vethPrefix() string { return fmt.Sprintf("vzf%d-", n.id) }

// setupNetwork claims a subnet (the given one, or the first free default),
// removes what a killed run left on it, and creates the bridge.
func setupNetwork(subnet string, logf func(string, ...any)) (*network, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("machost: %w", err)
	}
	var candidates []string
	if subnet != "" {
		candidates = []string{subnet}
	} else {
		for i := 0; i < 64; i++ {
			candidates = append(candidates, fmt.Sprintf("10.213.%d.0/24", i))
		}
	}
	var reasons []string
	for _, c := range candidates {
		n, err := claim(c, logf)
		if err == nil {
			return n, nil
		}
		if subnet != "" {
			return nil, err
		}
		reasons = append(reasons, err.Error())
	}
	return nil, fmt.Errorf("machost: no free subnet among 10.213.0.0/24..10.213.63.0/24 (set LabOptions.Subnet):\n%s", strings.Join(reasons, "\n"))
}

func claim(subnet string, logf func(string, ...any)) (*network, error) {
	ip, ipnet, err := net.ParseCIDR(subnet)
	ip4 := ip.To4()
	if err != nil || ip4 == nil {
		return nil, fmt.Errorf("machost: subnet %q: want an IPv4 /24 such as 10.213.7.0/24", subnet)
	}
	if ones, _ := ipnet.Mask.Size(); ones != 24 {
		return nil, fmt.Errorf("machost: subnet %q: want a /24", subnet)
	}
	n := &network{subnet: ipnet.String(), prefix: [3]byte{ip4[0], ip4[1], ip4[2]}, id: int(ip4[2]), log: logf}
	n.gateway = n.ip(1)
	n.bridge = fmt.Sprintf("vzfleet-br%d", n.id)
	lock, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("net-%d.lock", n.id)), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("machost: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("machost: %s: another lab holds %s", subnet, lock.Name())
	}
	n.lock = lock
	if err := n.checkFree(); err != nil {
		n.release()
		return nil, err
	}
	n.removeStale()
	if err := n.createBridge(); err != nil {
		_ = n.teardown()
		return nil, err
	}
	return n, nil
}

// checkFree refuses a subnet that some other interface on the machine uses.
func (n *network) checkFree() error {
	_, ipnet, _ := net.ParseCIDR(n.subnet)
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("machost: listing interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		if ifc.Name == n.bridge {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if an, ok := a.(*net.IPNet); ok && (ipnet.Contains(an.IP) || an.Contains(ipnet.IP)) {
				return fmt.Errorf("machost: subnet %s overlaps %s on %s", n.subnet, an, ifc.Name)
			}
		}
	}
	return nil
}

// removeStale deletes namespaces, links and the firewall rule that a killed
// lab left with this subnet's names; the lock proves their owner is gone.
func (n *network) removeStale() {
	for _, ns := range n.namespaces() {
		n.log("machost: removing namespace %s left by an earlier run", ns)
		n.deleteNamespace(ns)
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		if strings.HasPrefix(l.Name(), n.vethPrefix()) || l.Name() == n.bridge {
			_ = run("ip", "link", "del", l.Name())
		}
	}
	n.iptables = hasIPTables()
	for n.iptables && exec.Command("iptables", n.ruleArgs("-C")...).Run() == nil {
		_ = run("iptables", n.ruleArgs("-D")...)
	}
}

func (n *network) namespaces() []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), n.nsPrefix()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func (n *network) deleteNamespace(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = run("ip", "netns", "del", ns)
}

func hasIPTables() bool {
	_, err := exec.LookPath("iptables")
	return err == nil
}

func (n *network) ruleArgs(op string) []string {
	return []string{"-w", op, "FORWARD", "-i", n.bridge, "-o", n.bridge, "-j", "ACCEPT"}
}

func (n *network) createBridge() error {
	steps := [][]string{
		{"ip", "link", "add", n.bridge, "type", "bridge"},
		{"ip", "addr", "add", n.gateway + "/24", "dev", n.bridge},
		{"ip", "link", "set", n.bridge, "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return fmt.Errorf("machost: bridge: %w", err)
		}
	}
	// dockerd sets the FORWARD policy to DROP, which would cut the hosts off
	// from each other across the bridge.
	if n.iptables {
		if err := run("iptables", n.ruleArgs("-I")...); err != nil {
			return fmt.Errorf("machost: %w", err)
		}
	}
	return nil
}

// hostLink is what addHosts needs of a host.
type hostLink struct{ ns, veth, ip string }

// addHosts creates the hosts' namespaces and their links into the bridge,
// batching the ip commands: one process for the machine's side, one per
// namespace.
func (n *network) addHosts(hosts []hostLink) error {
	var root strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&root, "netns add %s\n", h.ns)
		fmt.Fprintf(&root, "link add %s type veth peer name eth0 netns %s\n", h.veth, h.ns)
		fmt.Fprintf(&root, "link set %s master %s up\n", h.veth, n.bridge)
	}
	if err := runBatch(nil, root.String()); err != nil {
		return err
	}
	for _, h := range hosts {
		in := fmt.Sprintf("addr add %s/24 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via %s\n", h.ip, n.gateway)
		if err := runBatch([]string{"-n", h.ns}, in); err != nil {
			return fmt.Errorf("%s: %w", h.ns, err)
		}
	}
	return nil
}

func runBatch(opts []string, batch string) error {
	cmd := exec.Command("ip", append(opts, "-batch", "-")...)
	cmd.Stdin = strings.NewReader(batch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s -batch: %w: %s\n(batch was:\n%s)", strings.Join(opts, " "), err, strings.TrimSpace(string(out)), batch)
	}
	return nil
}

// teardown removes everything of this subnet and releases it.
func (n *network) teardown() error {
	var errs []error
	for _, ns := range n.namespaces() {
		n.deleteNamespace(ns)
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		if strings.HasPrefix(l.Name(), n.vethPrefix()) {
			_ = run("ip", "link", "del", l.Name())
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.bridge)); err == nil {
		if err := run("ip", "link", "del", n.bridge); err != nil {
			errs = append(errs, err)
		}
	}
	for n.iptables && exec.Command("iptables", n.ruleArgs("-C")...).Run() == nil {
		if err := run("iptables", n.ruleArgs("-D")...); err != nil {
			errs = append(errs, err)
			break
		}
	}
	if left := n.namespaces(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left: %v", left))
	}
	n.release()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("machost: tearing down %s: %w", n.subnet, err)
	}
	return nil
}

func (n *network) release() {
	if n.lock != nil {
		n.lock.Close()
		n.lock = nil
	}
}

// RemoveLeftovers deletes the namespaces, bridges and firewall rules of labs
// whose process is gone (killed, or interrupted before Stop); labs still
// running are left alone. A new lab does this for its own subnet anyway;
// this is for tidying a machine, e.g. after `make demo` was interrupted.
func RemoveLeftovers(logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ids := map[int]bool{}
	collect := func(dir, prefix string) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			rest, ok := strings.CutPrefix(e.Name(), prefix)
			if !ok {
				continue
			}
			num, _, _ := strings.Cut(rest, "-")
			if id, err := strconv.Atoi(num); err == nil && id >= 0 && id < 256 {
				ids[id] = true
			}
		}
	}
	collect("/run/netns", "vzfleet")
	collect("/sys/class/net", "vzfleet-br")
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return fmt.Errorf("machost: %w", err)
	}
	var errs []error
	for id := range ids {
		n := &network{id: id, bridge: fmt.Sprintf("vzfleet-br%d", id), log: logf}
		lock, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("net-%d.lock", id)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			lock.Close() // a running lab
			continue
		}
		n.lock = lock
		n.removeStale()
		if err := n.teardown(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
