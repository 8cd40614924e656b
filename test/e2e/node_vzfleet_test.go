package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/vzfleet/vzfleet/node/supervisor"
	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/vznode"
)

// TestVZNode drives one vz-node (sim driver) through a pod's life with
// kubectl against a real apiserver, scheduler and controller-manager. The
// steps share the node and build on each other.
func TestVZNode(t *testing.T) {
	harness.RequireRoot(t)
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{Scheduler: true, ControllerManager: true, MetricsServer: true})
	const name = "mac-e2e-1"
	n := startVZNode(t, cp, name)
	ctx := context.Background()

	if !t.Run("node registers Ready with labels, taint and capacity", func(t *testing.T) {
		var node *corev1.Node
		eventually(t, 90*time.Second, "node Ready", func() error {
			var err error
			node, err = cp.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", node.Status.Conditions)
		})
		if node.Labels["kubernetes.io/os"] != "darwin" || node.Labels["kubernetes.io/arch"] == "" || node.Labels["vzfleet.dev/vm-driver"] != "sim" {
			t.Errorf("labels %v", node.Labels)
		}
		tainted := false
		for _, tn := range node.Spec.Taints {
			tainted = tainted || tn.Key == "virtual-kubelet.io/provider" && tn.Value == "vz" && tn.Effect == corev1.TaintEffectNoSchedule
		}
		if !tainted {
			t.Errorf("no virtual-kubelet.io/provider=vz:NoSchedule taint in %+v", node.Spec.Taints)
		}
		if pods := node.Status.Capacity[corev1.ResourcePods]; pods.Value() != 2 {
			t.Errorf("pods capacity %s, want 2", pods.String())
		}
		if !strings.HasPrefix(node.Status.NodeInfo.ContainerRuntimeVersion, "vz://") || node.Status.NodeInfo.OperatingSystem != "darwin" {
			t.Errorf("node info %+v", node.Status.NodeInfo)
		}
		if len(node.Status.Addresses) == 0 || node.Status.Addresses[0].Address != "127.0.0.1" {
			t.Errorf("addresses %+v", node.Status.Addresses)
		}
		conds := map[corev1.NodeConditionType]corev1.ConditionStatus{}
		for _, c := range node.Status.Conditions {
			conds[c.Type] = c.Status
		}
		if conds[corev1.NodeDiskPressure] == "" || conds[corev1.NodeMemoryPressure] == "" || conds["VMSlotLeak"] != corev1.ConditionFalse {
			t.Errorf("conditions %v", conds)
		}
		t.Logf("vz-node RSS idle: %s", rss(n.Proc.Pid()))
		lease, err := cp.Client.CoordinationV1().Leases("kube-node-lease").Get(ctx, name, metav1.GetOptions{})
		if err != nil || lease.Spec.RenewTime == nil {
			t.Errorf("node lease: %v %+v", err, lease)
		}
	}) {
		t.FailNow()
	}

	t.Run("kubelet API refuses callers without credentials", func(t *testing.T) {
		insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		for _, path := range []string{"/pods", "/stats/summary", "/metrics/resource", "/containerLogs/default/x/macos"} {
			resp, err := insecure.Get(fmt.Sprintf("https://127.0.0.1:%d%s", n.Port, path))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s without credentials: %s, want 401", path, resp.Status)
			}
		}
		// With the certificate the apiserver presents to kubelets (signed
		// by the cluster CA) the same API answers.
		if out := kubeletGet(t, cp, n, "/pods"); !strings.Contains(out, `"kind":"PodList"`) {
			t.Errorf("GET /pods with a client certificate: %s", out)
		}
	})

	var podName string
	t.Run("a Deployment lands on the node and runs Ready with an IP", func(t *testing.T) {
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
      terminationGracePeriodSeconds: 10
      containers:
      - name: macos
        image: ` + nodeTestImage + `
        resources: {requests: {cpu: "1", memory: 2Gi}}
        readinessProbe:
          exec: {command: [sh, -c, "test -d ."]}
          periodSeconds: 1
`
		if out, err := cp.Apply(ctx, manifest); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		eventually(t, 90*time.Second, "the Deployment's pod", func() error {
			pods, err := cp.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=macos-ci"})
			if err != nil {
				return err
			}
			if len(pods.Items) != 1 || pods.Items[0].Spec.NodeName != name {
				return fmt.Errorf("%d pods", len(pods.Items))
			}
			podName = pods.Items[0].Name
			return nil
		})
		pod := waitPodRunningReady(t, cp, "default", podName)
		cs := pod.Status.ContainerStatuses[0]
		if cs.ContainerID != "vz://"+string(pod.UID) || pod.Status.HostIP != "127.0.0.1" || !strings.HasPrefix(pod.Status.PodIP, "127.") {
			t.Errorf("status %+v", pod.Status)
		}
		events := nodeKubectl(t, cp, "get", "events", "-n", "default", "--field-selector", "involvedObject.name="+podName)
		for _, reason := range []string{"Pulling", "Pulled", "Created", "Started"} {
			if !strings.Contains(events, reason) {
				t.Errorf("no %s event:\n%s", reason, events)
			}
		}
	})
	if podName == "" {
		t.FailNow()
	}

	t.Run("kubectl exec passes argv, stdin and exit codes", func(t *testing.T) {
		out, code := nodeKubectlCode(t, cp, "", "exec", podName, "--", "printf", "[%s]", "a b", "$HOME", "'q'")
		if code != 0 || out != "[a b][$HOME]['q']" {
			t.Errorf("exec printf: exit %d, output %q", code, out)
		}
		out, code = nodeKubectlCode(t, cp, "hello from stdin", "exec", "-i", podName, "--", "cat")
		if code != 0 || out != "hello from stdin" {
			t.Errorf("exec -i cat: exit %d, output %q", code, out)
		}
		_, code = nodeKubectlCode(t, cp, "", "exec", podName, "--", "sh", "-c", "exit 7")
		if code != 7 {
			t.Errorf("exec exit 7: kubectl exited %d", code)
		}
	})

	t.Run("kubectl logs shows the guest's log", func(t *testing.T) {
		out := nodeKubectl(t, cp, "logs", podName)
		if !strings.Contains(out, "sshd") {
			t.Errorf("logs have no sshd entries:\n%s", out)
		}
		tail := strings.TrimSpace(nodeKubectl(t, cp, "logs", "--tail=2", podName))
		if lines := strings.Count(tail, "\n") + 1; lines != 2 {
			t.Errorf("logs --tail=2 gave %d lines:\n%s", lines, tail)
		}
		ts := strings.TrimSpace(nodeKubectl(t, cp, "logs", "--tail=1", "--timestamps", podName))
		if _, err := time.Parse(time.RFC3339Nano, strings.Fields(ts)[0]); err != nil {
			t.Errorf("logs --timestamps: %q: %v", ts, err)
		}
	})

	t.Run("kubectl logs --follow streams new guest log lines", func(t *testing.T) {
		bin, err := harness.Tool("kubectl")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		follow := exec.CommandContext(ctx, bin, "--kubeconfig="+cp.AdminKubeconfig, "logs", "--follow", "--since=30s", podName)
		out := &harness.LockedBuffer{}
		follow.Stdout, follow.Stderr = out, out
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = follow.Wait() }()
		// Each exec is a line in the guest's log, so keep making new ones
		// until the follower shows one.
		eventually(t, 30*time.Second, "an exec's log line in logs --follow", func() error {
			nodeKubectlCode(t, cp, "", "exec", podName, "--", "date", "-u")
			if !strings.Contains(out.String(), "exec: date (1 arguments)") {
				return fmt.Errorf("follower output so far:\n%s", out.String())
			}
			return nil
		})
	})

	t.Run("kubectl exec -t and attach get a terminal that follows resizes", func(t *testing.T) {
		bin, err := harness.Tool("kubectl")
		if err != nil {
			t.Fatal(err)
		}
		kc := "--kubeconfig=" + cp.AdminKubeconfig
		s := startTmux(t, 100, 30, "sh", "-c", bin+" "+kc+" exec -it "+podName+" -- sh; echo kubectl-exit=$?; sleep 600")
		s.keys(true, "stty size; tty")
		s.keys(false, "Enter")
		s.waitScreen("the guest shell's terminal size", 30*time.Second, contains("30 100", "/dev/pts/"))
		if out, err := s.tmux("resize-window", "-t", "main", "-x", "90", "-y", "20"); err != nil {
			t.Fatalf("tmux resize-window: %v\n%s", err, out)
		}
		s.keys(true, "clear; stty size")
		s.keys(false, "Enter")
		s.waitScreen("the resized terminal in the guest", 30*time.Second, contains("20 90"))
		s.keys(true, "exit 5")
		s.keys(false, "Enter")
		s.waitScreen("kubectl's exit code", 30*time.Second, contains("kubectl-exit=5"))

		a := startTmux(t, 100, 30, "sh", "-c", bin+" "+kc+" attach -it "+podName+"; echo kubectl-exit=$?; sleep 600")
		a.keys(true, "echo attached-$((40+2))")
		a.keys(false, "Enter")
		a.waitScreen("a command in the attached shell", 30*time.Second, contains("attached-42"))
		a.keys(true, "exit")
		a.keys(false, "Enter")
		a.waitScreen("kubectl attach to end", 30*time.Second, contains("kubectl-exit=0"))
	})

	t.Run("stats and resource metrics report the VM", func(t *testing.T) {
		raw := kubeletGet(t, cp, n, "/stats/summary")
		var sum statsv1alpha1.Summary
		if err := json.Unmarshal([]byte(raw), &sum); err != nil {
			t.Fatalf("%v: %s", err, raw)
		}
		if len(sum.Pods) != 1 || sum.Pods[0].PodRef.Name != podName || sum.Pods[0].Memory == nil || *sum.Pods[0].Memory.WorkingSetBytes == 0 {
			t.Errorf("stats summary: %s", raw)
		}
		metrics := kubeletGet(t, cp, n, "/metrics/resource")
		want := fmt.Sprintf(`container_memory_working_set_bytes{container="macos",namespace="default",pod=%q}`, podName)
		if !strings.Contains(metrics, want) || !strings.Contains(metrics, "node_cpu_usage_seconds_total") {
			t.Errorf("metrics/resource lacks %s:\n%s", want, metrics)
		}
	})

	t.Run("kubectl top shows the VM's CPU and memory through metrics-server", func(t *testing.T) {
		eventually(t, 90*time.Second, "kubectl top pod "+podName, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := cp.Kubectl(ctx, "top", "pod", podName, "--no-headers")
			if err != nil {
				return err
			}
			// NAME CPU(cores) MEMORY(bytes), e.g. "vm-abc 3m 21Mi".
			f := strings.Fields(string(out))
			if len(f) != 3 || f[0] != podName || !strings.HasSuffix(f[2], "Mi") && !strings.HasSuffix(f[2], "Ki") {
				return fmt.Errorf("unexpected kubectl top output %q", out)
			}
			return nil
		})
	})

	t.Run("deleting the pod removes its VM, overlay and state", func(t *testing.T) {
		pod, err := nodeGetPod(t, cp, "default", podName)
		if err != nil {
			t.Fatal(err)
		}
		dir := supervisor.Dir(n.StateDir, string(pod.UID))
		if _, err := os.Stat(dir + "/overlay/disk.img"); err != nil {
			t.Fatalf("overlay of the running VM: %v", err)
		}
		nodeKubectl(t, cp, "scale", "deployment/macos-ci", "--replicas=0")
		eventually(t, 60*time.Second, "the pod to be gone", func() error {
			if _, err := nodeGetPod(t, cp, "default", podName); err == nil {
				return errors.New("still there")
			}
			return nil
		})
		eventually(t, 30*time.Second, "the VM state dir to be removed", func() error {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				return fmt.Errorf("%s still there (%v)", dir, err)
			}
			return nil
		})
	})

	t.Run("a pod beyond the VM limit waits for a slot; VMs survive kill -9", func(t *testing.T) {
		for _, p := range []string{"vm-a", "vm-b"} {
			if out, err := cp.Apply(ctx, vmPod(p)); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		a := waitPodRunningReady(t, cp, "default", "vm-a")
		b := waitPodRunningReady(t, cp, "default", "vm-b")
		// Bound to the node directly: the scheduler would hold it back
		// (pods capacity 2); vz-node itself must queue it.
		if out, err := cp.Apply(ctx, vmPod("vm-c")+"  nodeName: "+name+"\n"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		waitWaiting(t, cp, "vm-c")

		t.Logf("vz-node RSS with 2 VMs running: %s", rss(n.Proc.Pid()))
		pids := supervisorPIDs(t, n, a.UID, b.UID)
		if err := n.Kill9(); err != nil {
			t.Fatal(err)
		}
		if err := n.Restart(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // let the new agent re-adopt and publish
		for _, before := range []*corev1.Pod{a, b} {
			after := waitPodRunningReady(t, cp, "default", before.Name)
			bc, ac := before.Status.ContainerStatuses[0], after.Status.ContainerStatuses[0]
			if ac.RestartCount != bc.RestartCount || !ac.State.Running.StartedAt.Equal(&bc.State.Running.StartedAt) || after.Status.PodIP != before.Status.PodIP {
				t.Errorf("pod %s changed across the restart:\nbefore %+v\nafter  %+v", before.Name, bc, ac)
			}
		}
		if now := supervisorPIDs(t, n, a.UID, b.UID); now != pids {
			t.Errorf("VM supervisors changed across the agent restart: %v -> %v", pids, now)
		}
		waitWaiting(t, cp, "vm-c")
		out, code := nodeKubectlCode(t, cp, "", "exec", "vm-a", "--", "echo", "still here")
		if code != 0 || out != "still here\n" {
			t.Errorf("exec after the restart: %d %q", code, out)
		}

		nodeKubectl(t, cp, "delete", "pod", "vm-a", "--wait=false")
		waitPodRunningReady(t, cp, "default", "vm-c")
	})

	t.Run("a pod asking more than the host has fails with a reason", func(t *testing.T) {
		big := strings.Replace(vmPod("too-big"), `cpu: "1"`, `cpu: "64"`, 1) + "  nodeName: " + name + "\n"
		if out, err := cp.Apply(ctx, big); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		eventually(t, 30*time.Second, "too-big to fail", func() error {
			p, err := nodeGetPod(t, cp, "default", "too-big")
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "RequestsExceedHost" {
				return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
			}
			return nil
		})
		events := nodeKubectl(t, cp, "get", "events", "-n", "default", "--field-selector", "involvedObject.name=too-big")
		if !strings.Contains(events, "RequestsExceedHost") {
			t.Errorf("no RequestsExceedHost event:\n%s", events)
		}
	})

	t.Run("restartPolicy Always restarts a VM that shut itself down", func(t *testing.T) {
		// The connection may drop as the guest powers off; the exit code
		// does not matter.
		nodeKubectlCode(t, cp, "", "exec", "vm-b", "--", "sudo", "shutdown", "-h", "now")
		eventually(t, 60*time.Second, "vm-b restarted", func() error {
			p, err := nodeGetPod(t, cp, "default", "vm-b")
			if err != nil {
				return err
			}
			cs := p.Status.ContainerStatuses
			if len(cs) == 0 || cs[0].RestartCount != 1 || !cs[0].Ready || cs[0].LastTerminationState.Terminated == nil {
				return fmt.Errorf("status %+v", cs)
			}
			if term := cs[0].LastTerminationState.Terminated; term.ExitCode != 0 || term.Reason != "Completed" {
				return fmt.Errorf("last termination %+v", term)
			}
			return nil
		})
	})
}

func waitWaiting(t *testing.T, cp *harness.ControlPlane, name string) {
	t.Helper()
	eventually(t, 60*time.Second, name+" Pending(WaitingForVMSlot)", func() error {
		p, err := nodeGetPod(t, cp, "default", name)
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodPending || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil ||
			p.Status.ContainerStatuses[0].State.Waiting.Reason != "WaitingForVMSlot" {
			return fmt.Errorf("status %+v", p.Status)
		}
		return nil
	})
}

func supervisorPIDs(t *testing.T, n *vznode.Node, uids ...types.UID) string {
	t.Helper()
	var out []string
	for _, uid := range uids {
		st, err := supervisor.ReadState(supervisor.Dir(n.StateDir, string(uid)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(st.PID))
	}
	return strings.Join(out, ",")
}

// nodeKubectlCode runs kubectl with stdin and returns its stdout and exit code.
func nodeKubectlCode(t *testing.T, cp *harness.ControlPlane, stdin string, args ...string) (string, int) {
	t.Helper()
	bin, err := harness.Tool("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig=" + cp.AdminKubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String(), 0
}

// kubeletGet calls vz-node's kubelet API as the apiserver does: with the
// cluster CA's kubelet client certificate.
func kubeletGet(t *testing.T, cp *harness.ControlPlane, n *vznode.Node, path string) string {
	t.Helper()
	cert, err := tls.X509KeyPair(cp.KubeletClient.CertPEM, cp.KubeletClient.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, Certificates: []tls.Certificate{cert},
	}}}
	resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d%s", n.Port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body)
}

// rss reads a process's resident set size from /proc, for the test log.
func rss(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
