package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/vznode"
)

// The VM image every node test runs: a directory in vz-node's cache (the
// sim boots any disk file).
const nodeTestImage = vznode.TestImage

// buildVZNode builds cmd/vz-node once per test binary.
func buildVZNode(t *testing.T) string {
	t.Helper()
	bin, err := vznode.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startVZNode runs vz-node as node name with the sim driver (see package
// vznode), extra flags last. Its kubelet API listens on loopback, which is
// also its InternalIP.
func startVZNode(t *testing.T, cp *harness.ControlPlane, name string, extra ...string) *vznode.Node {
	t.Helper()
	return vznode.StartT(t, cp, vznode.Options{Name: name, Args: extra})
}

// nodeKubectl runs kubectl as the cluster admin.
func nodeKubectl(t *testing.T, cp *harness.ControlPlane, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := cp.Kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return string(out)
}

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func nodeGetPod(t *testing.T, cp *harness.ControlPlane, ns, name string) (*corev1.Pod, error) {
	t.Helper()
	return cp.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
}

// waitPodRunningReady waits until the pod runs, is Ready and has an IP.
func waitPodRunningReady(t *testing.T, cp *harness.ControlPlane, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, 90*time.Second, "pod "+name+" Running and Ready", func() error {
		p, err := nodeGetPod(t, cp, ns, name)
		if err != nil {
			return err
		}
		pod = p
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || len(p.Status.ContainerStatuses) == 0 || !p.Status.ContainerStatuses[0].Ready {
			b, _ := json.Marshal(p.Status)
			return fmt.Errorf("status %s", b)
		}
		return nil
	})
	return pod
}

// vmPod is a pod whose VM runs on a darwin node.
func vmPod(name string) string {
	return strings.ReplaceAll(`apiVersion: v1
kind: Pod
metadata:
  name: NAME
  namespace: default
spec:
  nodeSelector:
    kubernetes.io/os: darwin
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Equal
    value: vz
    effect: NoSchedule
  terminationGracePeriodSeconds: 10
  containers:
  - name: macos
    image: `+nodeTestImage+`
    resources:
      requests:
        cpu: "1"
        memory: 2Gi
`, "NAME", name)
}

// portForward runs `kubectl port-forward pod/POD :PORT` as the cluster
// admin until the test ends, and returns the local address kubectl
// forwards from.
func portForward(t *testing.T, cp *harness.ControlPlane, pod string, port int) string {
	t.Helper()
	bin, err := harness.Tool("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig="+cp.AdminKubeconfig, "port-forward", "--address=127.0.0.1", "pod/"+pod, fmt.Sprintf(":%d", port))
	var stderr harness.LockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	// It prints "Forwarding from 127.0.0.1:NNNNN -> PORT" once listening.
	timer := time.AfterFunc(30*time.Second, cancel)
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	timer.Stop()
	go func() { _, _ = io.Copy(io.Discard, r) }()
	_, rest, ok := strings.Cut(line, "Forwarding from ")
	if err != nil || !ok {
		t.Fatalf("kubectl port-forward pod/%s :%d: %q, %v\n%s", pod, port, line, err, stderr.String())
	}
	return strings.Fields(rest)[0]
}
