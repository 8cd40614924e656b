package inventory

import (
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	inv, err := Parse([]byte(`apiVersion: vzfleet.dev/v1alpha1
kind: Inventory
defaults:
  ssh: {user: admin}
  guestSSH: {password: {env: P}}
  node: {labels: {rack: a, role: ci}}
hosts:
  - {name: mini-01, ssh: {address: h1}}
  - {name: mini-02, ssh: {address: h2}, node: {labels: {rack: b}}}
  - {name: mini-10, ssh: {address: h3}, node: {labels: {role: canary}}}
  - {name: studio-1, ssh: {address: h4}, node: {labels: {rack: b, role: canary}}}
`), "t.yaml", testOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		expr string
		want string // names, or the start of an error after "error: "
	}{
		{"", "mini-01 mini-02 mini-10 studio-1"},
		{"mini-01", "mini-01"},
		{"mini-0*", "mini-01 mini-02"},
		{"mini-0[2-9],studio-*", "mini-02 studio-1"},
		{" mini-10 , mini-01 ", "mini-01 mini-10"},
		{"rack=a", "mini-01 mini-10"},
		{"rack=b,role=canary", "studio-1"},
		{"role!=ci", "mini-10 studio-1"},
		{"rack in (a,b),role notin (canary)", "mini-01 mini-02"},
		{"!missing", "mini-01 mini-02 mini-10 studio-1"},
		{"nomatch*", `error: --limit "nomatch*": no host matches; names are mini-01`},
		{"rack=c", `error: --limit "rack=c": no host matches`},
		{"mini-[", `error: --limit "mini-[": "mini-[" is not a host name pattern`},
		{"a,,b", `error: --limit "a,,b": "" is not a host name pattern`},
		{"rack in (a", `error: --limit "rack in (a": not a label selector`},
	}
	for _, c := range cases {
		hosts, err := inv.Select(c.expr)
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			var names []string
			for _, h := range hosts {
				names = append(names, h.Name)
			}
			got = strings.Join(names, " ")
		}
		if !strings.HasPrefix(got, c.want) || (err == nil && got != c.want) {
			t.Errorf("Select(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

func TestIntOrPercentOf(t *testing.T) {
	cases := []struct {
		v     IntOrPercent
		total int
		want  int
	}{
		{IntOrPercent{Value: 1}, 10, 1},
		{IntOrPercent{Value: 3}, 2, 2},
		{IntOrPercent{Value: 25, Percent: true}, 10, 2},
		{IntOrPercent{Value: 25, Percent: true}, 3, 1},
		{IntOrPercent{Value: 100, Percent: true}, 7, 7},
		{IntOrPercent{Value: 5}, 0, 5},
	}
	for _, c := range cases {
		if got := c.v.Of(c.total); got != c.want {
			t.Errorf("%s of %d = %d, want %d", c.v, c.total, got, c.want)
		}
	}
}

func TestStray(t *testing.T) {
	parse := func(hosts string) *Inventory {
		t.Helper()
		inv, err := Parse([]byte(`apiVersion: vzfleet.dev/v1alpha1
kind: Inventory
defaults:
  ssh: {user: admin}
  guestSSH: {password: {env: P}}
  cluster: {operatorKubeconfig: /etc/vzfleet/operator.kubeconfig}
hosts:
`+hosts), "t.yaml", testOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	inv := parse(`  - {name: mini-01, ssh: {address: h1}}
  - {name: mini-02, ssh: {address: h2}, node: {name: mac-02}}
`)
	h, err := inv.Stray("mini-09")
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "mini-09" || h.Node.Name != "mini-09" || h.Cluster.OperatorKubeconfig != "/etc/vzfleet/operator.kubeconfig" || h.SSH.Address != "" {
		t.Fatalf("stray entry %+v", h)
	}
	for node, want := range map[string]string{
		"mac-02":  "node mac-02 is host mini-02's in t.yaml: select it with --limit mini-02",
		"mini-01": "node mini-01 is host mini-01's",
	} {
		if _, err := inv.Stray(node); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Stray(%s): %v, want %q", node, err, want)
		}
	}
	two := parse(`  - {name: mini-01, ssh: {address: h1}}
  - {name: mini-02, ssh: {address: h2}, cluster: {operatorKubeconfig: /etc/vzfleet/other.kubeconfig}}
`)
	if _, err := two.Stray("mini-09"); err == nil || !strings.Contains(err.Error(), "more than one cluster (mini-01 and mini-02 differ") {
		t.Errorf("Stray in an inventory of two clusters: %v", err)
	}
}
