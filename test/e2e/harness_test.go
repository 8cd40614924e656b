package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vzfleet/vzfleet/test/harness"
)

// A node credential minted by the harness acts as exactly that node: it can
// register its own Node object, which kubectl then reads back, and the Node
// authorizer with NodeRestriction refuses it any other node.
func TestNodeCredentialRegistersOwnNodeOnly(t *testing.T) {
	t.Parallel()
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	kubeconfig, _, err := cp.NodeKubeconfig("mac-01")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	nodeClient := kubernetes.NewForConfigOrDie(cfg)

	own := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   "mac-01",
		Labels: map[string]string{"kubernetes.io/os": "darwin", "kubernetes.io/arch": "arm64"},
	}}
	if _, err := nodeClient.CoreV1().Nodes().Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatalf("node credential creating its own Node: %v", err)
	}

	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "mac-02"}}
	_, err = nodeClient.CoreV1().Nodes().Create(ctx, other, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("node credential creating another Node: got %v, want Forbidden", err)
	}

	out, err := cp.Kubectl(ctx, "get", "node", "mac-01", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got corev1.Node
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("kubectl output is not a Node: %v\n%s", err, out)
	}
	if got.Name != "mac-01" || got.Labels["kubernetes.io/os"] != "darwin" {
		t.Fatalf("kubectl read back %s with labels %v", got.Name, got.Labels)
	}
	out, err = cp.Kubectl(ctx, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"gitVersion": "v1.35.`) {
		t.Fatalf("kubectl/apiserver version is not the pinned v1.35 release:\n%s", out)
	}
}

// With the scheduler and controller-manager, a Deployment that tolerates the
// virtual node's taint is scheduled onto a Ready node.
func TestDeploymentSchedulesOntoNode(t *testing.T) {
	t.Parallel()
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{Scheduler: true, ControllerManager: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "mac-01", Labels: map[string]string{"kubernetes.io/os": "darwin"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{
			Key: "virtual-kubelet.io/provider", Value: "vz", Effect: corev1.TaintEffectNoSchedule,
		}}},
	}
	created, err := cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = corev1.NodeStatus{
		Capacity:    corev1.ResourceList{"cpu": mustQuantity("8"), "memory": mustQuantity("16Gi"), "pods": mustQuantity("2")},
		Allocatable: corev1.ResourceList{"cpu": mustQuantity("8"), "memory": mustQuantity("16Gi"), "pods": mustQuantity("2")},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "Test",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	if _, err := cp.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: macos-ci, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: macos-ci}}
  template:
    metadata: {labels: {app: macos-ci}}
    spec:
      nodeSelector: {kubernetes.io/os: darwin}
      tolerations: [{key: virtual-kubelet.io/provider, operator: Exists, effect: NoSchedule}]
      containers: [{name: vm, image: ghcr.io/cirruslabs/macos-sequoia-base:latest}]
`
	if out, err := cp.Apply(ctx, manifest); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for {
		pods, err := cp.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=macos-ci"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 1 && pods.Items[0].Spec.NodeName == "mac-01" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the Deployment's pod was not scheduled onto mac-01: %+v", pods.Items)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// metrics-server is reachable through the apiserver's aggregation layer, so
// `kubectl top` can be tested against our nodes.
func TestMetricsAPIServedThroughAggregator(t *testing.T) {
	t.Parallel()
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{MetricsServer: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := cp.Kubectl(ctx, "api-versions")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "metrics.k8s.io/v1beta1") {
		t.Fatalf("kubectl api-versions lacks metrics.k8s.io/v1beta1:\n%s", out)
	}
	if out, err := cp.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"); err != nil {
		t.Fatalf("listing node metrics: %v\n%s", err, out)
	}
}
