package inventory

import (
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Select returns the hosts an expression picks, in inventory order. The
// expression is either
//   - comma-separated host name globs (path.Match syntax): "mini-0[1-3]",
//     "rack-a-*,mini-10"; or
//   - a Kubernetes label selector over the node labels, recognised by
//     containing '=' or '!' or a set operator: "role=ci",
//     "rack=a,tier!=canary", "rack in (a,b)".
//
// An empty expression selects every host. Selecting nothing is an error, so
// a mistyped --limit never passes silently as a no-op.
func (inv *Inventory) Select(expr string) ([]Host, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return append([]Host(nil), inv.Hosts...), nil
	}
	match, err := matcher(expr)
	if err != nil {
		return nil, err
	}
	var out []Host
	for _, h := range inv.Hosts {
		if match(h) {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--limit %q: no host matches; names are %s", expr, inv.hostNames())
	}
	return out, nil
}

func isLabelSelector(expr string) bool {
	return strings.ContainsAny(expr, "=!()") || strings.Contains(expr, " in ") || strings.Contains(expr, " notin ")
}

func matcher(expr string) (func(Host) bool, error) {
	if isLabelSelector(expr) {
		sel, err := labels.Parse(expr)
		if err != nil {
			return nil, fmt.Errorf("--limit %q: not a label selector (%w); write key=value, key!=value or key in (a,b)", expr, err)
		}
		return func(h Host) bool { return sel.Matches(labels.Set(h.Node.Labels)) }, nil
	}
	globs := strings.Split(expr, ",")
	for i, g := range globs {
		g = strings.TrimSpace(g)
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return nil, fmt.Errorf("--limit %q: %q is not a host name pattern; use names with * ? [a-z] wildcards", expr, g)
		}
		globs[i] = g
	}
	return func(h Host) bool {
		for _, g := range globs {
			if ok, _ := path.Match(g, h.Name); ok {
				return true
			}
		}
		return false
	}, nil
}

func (inv *Inventory) hostNames() string {
	const show = 10
	names := make([]string, 0, show)
	for i, h := range inv.Hosts {
		if i == show {
			names = append(names, fmt.Sprintf("... (%d hosts)", len(inv.Hosts)))
			break
		}
		names = append(names, h.Name)
	}
	return strings.Join(names, ", ")
}

// Stray is an entry for a node that no host of the inventory names, to
// retire without contacting its Mac (fleetctl retire --unreachable --node):
// it has the node's name and the cluster settings every host shares, and
// no SSH settings.
func (inv *Inventory) Stray(node string) (Host, error) {
	if len(inv.Hosts) == 0 {
		return Host{}, fmt.Errorf("node %s: %s has no host to take the cluster settings from", node, inv.File)
	}
	for _, h := range inv.Hosts {
		if h.Node.Name == node {
			return Host{}, fmt.Errorf("node %s is host %s's in %s: select it with --limit %s", node, h.Name, inv.File, h.Name)
		}
	}
	c := inv.Hosts[0].Cluster
	for _, h := range inv.Hosts[1:] {
		if h.Cluster.OperatorKubeconfig != c.OperatorKubeconfig || h.Cluster.APIServer != c.APIServer {
			return Host{}, fmt.Errorf("node %s: the hosts of %s are in more than one cluster (%s and %s differ in cluster settings), so which is the node's? Add the host back to the inventory and retire it with --limit",
				node, inv.File, inv.Hosts[0].Name, h.Name)
		}
	}
	return Host{Name: node, Node: Node{Name: node}, Cluster: Cluster{OperatorKubeconfig: c.OperatorKubeconfig, APIServer: c.APIServer}}, nil
}
