package e2e

import (
	"context"
	"testing"
	"time"

	vke2e "github.com/virtual-kubelet/virtual-kubelet/test/e2e"

	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/vznode"
)

// vkSuiteSkips are the tests of virtual-kubelet's own e2e suite that cannot
// apply to vz-node, and why. Everything else in the suite runs.
var vkSuiteSkips = map[string]string{
	// Both reach the kubelet API through the pods/proxy subresource of a
	// pod named like the node, which assumes the agent itself runs as a pod
	// in the cluster; vz-node runs under launchd on the Mac. The
	// apiserver's pod proxy presents no client certificate, and vz-node
	// refuses anonymous callers by design. /stats/summary and
	// /metrics/resource are covered by TestVZNode (kubectl top through
	// metrics-server), TestVZNodeKubeletAPIAuth, and, for sidecars,
	// TestSidecarsRunBesideTheVM.
	"TestGetStatsSummary":    "the kubelet API through an in-cluster agent pod's proxy",
	"TestGetMetricsResource": "the kubelet API through an in-cluster agent pod's proxy",
}

// TestVirtualKubeletSuite runs virtual-kubelet v1.13.0's importable e2e
// suite (github.com/virtual-kubelet/virtual-kubelet/test/e2e) against
// vz-node with the sim driver and a real apiserver. The suite's pods use
// the image "foo" as their first container, so that name is a VM image in
// the node's cache. The node's InternalIP is a non-loopback address of its
// own, because the suite reads the provider's running pods through the
// apiserver's node proxy, which refuses loopback addresses.
func TestVirtualKubeletSuite(t *testing.T) {
	harness.RequireRoot(t)
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{})
	const name = "mac-vk-suite"
	ip := harness.ExtraAddressT(t)
	n := vznode.StartT(t, cp, vznode.Options{Name: name, IP: ip})
	if err := n.AddImage("foo"); err != nil {
		t.Fatal(err)
	}

	ns := "vk-suite"
	if _, err := cp.Kubectl(context.Background(), "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}

	suite := vke2e.NewEndToEndTestSuite(vke2e.EndToEndTestSuiteConfig{
		Kubeconfig:   cp.AdminKubeconfig,
		Namespace:    ns,
		NodeName:     name,
		WatchTimeout: 90 * time.Second,
		ShouldSkipTest: func(test string) bool {
			if why, ok := vkSuiteSkips[test]; ok {
				t.Logf("skipping %s: %s", test, why)
				return true
			}
			return false
		},
	})
	suite.Run(t)
}
