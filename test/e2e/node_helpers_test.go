package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/node"
	"github.com/vzfleet/vzfleet/node/supervisor"
	"github.com/vzfleet/vzfleet/test/harness"
)

// The VM image every node test runs: a directory in vz-node's cache (the
// sim boots any disk file).
const nodeTestImage = "registry.local/macos-sim:15"

var (
	vzNodeOnce sync.Once
	vzNodeBin  string
	vzNodeErr  error
)

// buildVZNode builds cmd/vz-node once per test binary.
func buildVZNode(t *testing.T) string {
	t.Helper()
	vzNodeOnce.Do(func() {
		root, err := harness.RepoRoot()
		if err != nil {
			vzNodeErr = err
			return
		}
		dir, err := os.MkdirTemp("", "vz-node-e2e-")
		if err != nil {
			vzNodeErr = err
			return
		}
		vzNodeBin = filepath.Join(dir, "vz-node")
		cmd := exec.Command("go", "build", "-o", vzNodeBin, "./cmd/vz-node")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			vzNodeErr = fmt.Errorf("go build ./cmd/vz-node: %w\n%s", err, out)
		}
	})
	if vzNodeErr != nil {
		t.Fatal(vzNodeErr)
	}
	return vzNodeBin
}

// vzNode is one vz-node process registered with the control plane.
type vzNode struct {
	t        *testing.T
	cp       *harness.ControlPlane
	name     string
	bin      string
	args     []string
	env      []string
	logPath  string
	proc     *harness.Process
	stateDir string
	cacheDir string
	port     int
}

// startVZNode runs vz-node as node name with the sim driver, a serving
// certificate from the cluster CA, client certificates verified against it,
// and guests that accept admin/admin over SSH. Its kubelet API listens on
// loopback, which is also its InternalIP.
func startVZNode(t *testing.T, cp *harness.ControlPlane, name string, extra ...string) *vzNode {
	t.Helper()
	return startVZNodeAt(t, cp, name, net.ParseIP("127.0.0.1"), extra...)
}

// startVZNodeAt is startVZNode with the kubelet API and InternalIP on ip.
func startVZNodeAt(t *testing.T, cp *harness.ControlPlane, name string, ip net.IP, extra ...string) *vzNode {
	t.Helper()
	harness.RequireRoot(t)
	bin := buildVZNode(t)
	kubeconfig, _, err := cp.NodeKubeconfig(name)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := cp.KubeletServingCert(name, ip)
	if err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n := &vzNode{
		t: t, cp: cp, name: name, bin: bin, port: port,
		stateDir: filepath.Join(dir, "state"), cacheDir: filepath.Join(dir, "cache"),
		logPath: filepath.Join(dir, "vz-node.log"),
	}
	n.args = append([]string{
		"--nodename", name,
		"--driver", "sim",
		"--listen-address", net.JoinHostPort(ip.String(), strconv.Itoa(port)),
		"--state-dir", n.stateDir,
		"--cache-dir", n.cacheDir,
		"--leases-file", filepath.Join(dir, "dhcpd_leases"),
		"--sim-boot-delay", "300ms",
		"--reserve-cpu", "0",
		"--reserve-memory", "512Mi",
		"--startup-timeout", "60",
		"--condition-check-interval", "2s",
		"--log-level", "debug",
	}, extra...)
	n.env = []string{
		"KUBECONFIG=" + kubeconfig,
		"APISERVER_CERT_LOCATION=" + serving.CertPath,
		"APISERVER_KEY_LOCATION=" + serving.KeyPath,
		"APISERVER_CA_CERT_LOCATION=" + cp.CA.CertPath,
		"VKUBELET_POD_IP=" + ip.String(),
		"VZ_SSH_USER=admin",
		"VZ_SSH_PASSWORD=admin",
	}
	n.addImage(nodeTestImage)
	n.start()
	t.Cleanup(n.cleanup)
	return n
}

// addImage puts a VM image directory into the node's cache.
func (n *vzNode) addImage(ref string) {
	dir := node.LocalImageDir(n.cacheDir, ref)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	disk, err := os.Create(filepath.Join(dir, node.ImageDiskFile))
	if err != nil {
		n.t.Fatal(err)
	}
	if err := disk.Truncate(64 << 20); err != nil {
		n.t.Fatal(err)
	}
	disk.Close()
	if err := os.WriteFile(filepath.Join(dir, node.ImageNVRAMFile), []byte("nvram"), 0o644); err != nil {
		n.t.Fatal(err)
	}
	cfg := `{"version":1,"os":"darwin","arch":"arm64","cpuCount":1,"memorySize":2147483648,` +
		`"hardwareModel":"c2ltLWhhcmR3YXJlLW1vZGVs","ecid":"MTIzNDU2Nzg=","macAddress":"02:00:00:00:00:01","diskFormat":"raw"}`
	if err := os.WriteFile(filepath.Join(dir, node.ImageConfigFile), []byte(cfg), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n *vzNode) start() {
	n.t.Helper()
	p, err := harness.StartProcess("vz-node-"+n.name, n.logPath, n.bin, n.args, n.env)
	if err != nil {
		n.t.Fatal(err)
	}
	n.proc = p
}

// kill9 kills vz-node as a crash would: its VM supervisors live on.
func (n *vzNode) kill9() {
	n.t.Helper()
	if err := syscall.Kill(n.proc.Pid(), syscall.SIGKILL); err != nil {
		n.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if done, _ := n.proc.Exited(); done {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatal("vz-node did not die on SIGKILL")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanup stops vz-node and every VM supervisor it started (they run in
// their own sessions, outside the harness's process group).
func (n *vzNode) cleanup() {
	if n.t.Failed() {
		n.t.Logf("--- vz-node log tail (%s) ---\n%s", n.logPath, n.proc.Tail(60))
	}
	n.proc.Stop()
	ids, _ := supervisor.List(n.stateDir)
	for _, id := range ids {
		if st, err := supervisor.ReadState(supervisor.Dir(n.stateDir, id)); err == nil && supervisor.Alive(st.PID) {
			_ = syscall.Kill(st.PID, syscall.SIGTERM)
			deadline := time.Now().Add(5 * time.Second)
			for supervisor.Alive(st.PID) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
		}
	}
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
