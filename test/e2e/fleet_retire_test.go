package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/fleet/status"
)

// retire takes one host out of a running fleet. While a
// PodDisruptionBudget forbids evicting its running VM pod, the host fails
// at its drain and keeps everything but its cordon. Without the budget the
// pod is evicted and its VM stopped; vz-node's launchd job, its files and
// the Node go, and no vz-node registers the node again; the other hosts
// are untouched. A host that elevates with sudo is retired with --purge,
// which removes its image cache and log too. apply brings them back. A host
// that died is retired with --unreachable, which the node's live lease
// refuses until it has run out; taken out of the inventory first, it shows
// in fleetctl status as a stray, and is retired with --node.
func TestFleetRetire(t *testing.T) {
	fl := startFleetLab(t)
	ref := fl.pushTestVM("e2e/retire:v1", 32<<20).ref
	fl.writeInventory(map[string]string{"mini-02": "    images:\n      - " + ref + "\n"})
	if out, code := fl.apply("v0.1.0-e2e"); code != 0 {
		t.Fatalf("cold apply exited %d:\n%s", code, out)
	}
	if out, code := fl.fleetctl("retire", "-f", fl.inventory); code == 0 || !strings.Contains(out, "which hosts?") {
		t.Fatalf("retire without --limit: exit %d, want a refusal that asks which hosts:\n%s", code, out)
	}

	ctx := context.Background()
	manifest := strings.NewReplacer("IMAGE", ref).Replace(`apiVersion: v1
kind: Pod
metadata:
  name: build
  namespace: default
  labels: {app: build}
spec:
  nodeName: mini-02
  terminationGracePeriodSeconds: 5
  tolerations:
  - {key: vzfleet.dev/macos, operator: Exists}
  - {key: virtual-kubelet.io/provider, operator: Exists}
  containers:
  - name: macos
    image: IMAGE
    resources: {requests: {cpu: "1", memory: 2Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: build
  namespace: default
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: build}
`)
	if out, err := fl.cp.Apply(ctx, manifest); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	pods := fl.cp.Client.CoreV1().Pods("default")
	eventually(t, 90*time.Second, "the build pod running on mini-02", func() error {
		p, err := pods.Get(ctx, "build", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("the build pod failed: %s %s", p.Status.Reason, p.Status.Message)
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s: %s %s %+v", p.Status.Phase, p.Status.Reason, p.Status.Message, p.Status.ContainerStatuses)
		}
		return nil
	})

	// A dry run names the pod, the job and the paths, and changes nothing.
	out, code := fl.fleetctl("retire", "-f", fl.inventory, "--limit", "mini-02", "--dry-run")
	for _, want := range []string{"would cordon node mini-02 and evict 1 pod(s): default/build, then delete the node",
		"would boot out system/dev.vzfleet.vz-node (running", "would remove", binaryPath, configDir + "/kubeconfig", "1 of 1 hosts would be retired; nothing was changed (dry run)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("retire --dry-run: exit %d, output lacks %q", code, want)
		}
	}
	if n := fl.node("mini-02"); n.Spec.Unschedulable {
		t.Fatal("retire --dry-run cordoned the node")
	}

	// The budget forbids the eviction: the drain fails in time, and the
	// host keeps its pod, vz-node and files; only the cordon is new.
	out, code = fl.fleetctl("retire", "-f", fl.inventory, "--limit", "mini-02", "--drain-timeout", "5s")
	if l := summaryLine(t, out, "mini-02"); code == 0 || !strings.Contains(l, "FAILED") || !strings.Contains(l, "drain: node mini-02 still runs 1 pod(s)") ||
		!strings.Contains(l, "default/build") || !strings.Contains(l, "eviction refused") {
		t.Fatalf("retire under a PodDisruptionBudget: exit %d, summary %q; want mini-02 FAILED at its drain, naming the pod and the refusal", code, l)
	}
	if n := fl.assertNodeReady("mini-02", "v0.1.0-e2e"); !n.Spec.Unschedulable {
		t.Error("mini-02 is not cordoned after its drain failed")
	}
	if p, err := pods.Get(ctx, "build", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("the protected pod after the failed drain: %v (deleting: %v)", err, p.DeletionTimestamp)
	}
	h := fl.lab.Host("mini-02")
	if _, err := os.Stat(h.Path(binaryPath)); err != nil {
		t.Fatalf("vz-node was removed although the drain failed: %v", err)
	}
	// fleetctl status shows the cordon.
	js, _ := runFleetctl(t, fl.fleetctlBin, "status", fl.inventory, "-o", "json", "--ssh-config", "none", "--limit", "mini-02")
	var st struct {
		Hosts []struct {
			Host     string `json:"host"`
			Ready    string `json:"ready"`
			Cordoned bool   `json:"cordoned"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(js, &st); err != nil || len(st.Hosts) != 1 || !st.Hosts[0].Cordoned || st.Hosts[0].Ready != "True" {
		t.Errorf("fleetctl status -o json after the failed drain: %+v (%v), want mini-02 Ready and cordoned\n%s", st, err, js)
	}

	// Without the budget: the pod is evicted, and the host retired.
	if err := fl.cp.Client.PolicyV1().PodDisruptionBudgets("default").Delete(ctx, "build", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	out, code = fl.fleetctl("retire", "-f", fl.inventory, "--limit", "mini-02", "--drain-timeout", "2m")
	if l := summaryLine(t, out, "mini-02"); code != 0 || !strings.Contains(l, "retired") {
		t.Fatalf("retire: exit %d, summary %q", code, l)
	}
	for _, want := range []string{"evicting pod default/build", "launchctl bootout system/", "node mini-02 deleted", "retired 1 of 1 hosts"} {
		if !strings.Contains(out, want) {
			t.Errorf("retire's output lacks %q", want)
		}
	}
	if _, err := pods.Get(ctx, "build", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the build pod after the retire: %v, want it gone", err)
	}
	for _, p := range []string{binaryPath, configDir + "/kubeconfig", configDir + "/guest-ssh-key", configDir + "/vz-node.yaml", "/Library/LaunchDaemons/dev.vzfleet.vz-node.plist", "/var/db/vzfleet"} {
		if _, err := os.Stat(h.Path(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s on the retired host: %v, want it removed", p, err)
		}
	}
	if _, err := os.Stat(h.Path("/Library/Caches/vzfleet")); err != nil {
		t.Errorf("the image cache, which only --purge removes: %v", err)
	}
	if stdout, _, code, err := h.Launchctl("print", "system/dev.vzfleet.vz-node"); err != nil || code == 0 {
		t.Errorf("launchctl print after the retire: exit %d, %v\n%s; want the job not loaded", code, err, stdout)
	}
	// Nothing registers the node again.
	time.Sleep(3 * time.Second)
	if _, err := fl.cp.Client.CoreV1().Nodes().Get(ctx, "mini-02", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node mini-02 after the retire: %v, want it deleted", err)
	}
	for _, other := range []string{"mini-01", "mini-03"} {
		if n := fl.assertNodeReady(other, "v0.1.0-e2e"); n.Spec.Unschedulable {
			t.Errorf("%s was cordoned by mini-02's retire", other)
		}
	}

	// A host that elevates with sudo, with --purge: its image cache and
	// vz-node's log go too.
	sudo := fl.lab.Host(sudoHost)
	if _, err := os.Stat(sudo.Path("/Library/Logs/vz-node.log")); err != nil {
		t.Fatalf("vz-node's log on %s before the retire: %v", sudoHost, err)
	}
	out, code = fl.fleetctl("retire", "-f", fl.inventory, "--limit", sudoHost, "--purge")
	if l := summaryLine(t, out, sudoHost); code != 0 || !strings.Contains(l, "retired") {
		t.Fatalf("retire --purge of %s: exit %d, summary %q", sudoHost, code, l)
	}
	for _, p := range []string{binaryPath, configDir + "/kubeconfig", "/var/db/vzfleet", "/Library/Caches/vzfleet", "/Library/Logs/vz-node.log"} {
		if _, err := os.Stat(sudo.Path(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s on %s after retire --purge: %v, want it removed", p, sudoHost, err)
		}
	}

	// apply brings them back, from nothing.
	if out, code := fl.apply("v0.1.0-e2e", "--limit", "mini-02,"+sudoHost); code != 0 {
		t.Fatalf("apply after the retire exited %d:\n%s", code, out)
	}
	for _, name := range []string{"mini-02", sudoHost} {
		if n := fl.assertNodeReady(name, "v0.1.0-e2e"); n.Spec.Unschedulable {
			t.Errorf("%s is still cordoned after apply brought it back", name)
		}
	}

	// A host that dies with a pod on it. While its node's lease is fresh,
	// --unreachable is refused; once dead, a plain retire cannot connect;
	// once the lease has run out, --unreachable force-deletes the pod and
	// deletes the node without contacting the host.
	stranded := strings.NewReplacer("IMAGE", ref).Replace(`apiVersion: v1
kind: Pod
metadata: {name: stranded, namespace: default}
spec:
  nodeName: mini-01
  tolerations:
  - {key: vzfleet.dev/macos, operator: Exists}
  - {key: virtual-kubelet.io/provider, operator: Exists}
  containers:
  - {name: macos, image: IMAGE, resources: {requests: {cpu: "1", memory: 2Gi}}}
`)
	if out, err := fl.cp.Apply(ctx, stranded); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	out, code = fl.fleetctl("retire", "-f", fl.inventory, "--limit", "mini-01", "--unreachable")
	if l := summaryLine(t, out, "mini-01"); code == 0 || !strings.Contains(l, "renewed its lease") || !strings.Contains(l, "its vz-node is alive") {
		t.Fatalf("retire --unreachable of a live host: exit %d, summary %q; want a refusal", code, l)
	}
	dead := fl.lab.Host("mini-01")
	if _, stderr, code, err := dead.Launchctl("bootout", "system/dev.vzfleet.vz-node"); err != nil || code != 0 {
		t.Fatalf("stopping mini-01's vz-node: exit %d, %v: %s", code, err, stderr)
	}
	dead.Stop()
	out, code = fl.fleetctl("retire", "-f", fl.inventory, "--limit", "mini-01")
	if l := summaryLine(t, out, "mini-01"); code == 0 || !strings.Contains(l, "FAILED") || !strings.Contains(l, "connect") {
		t.Fatalf("retire of a dead host: exit %d, summary %q; want it FAILED at connect", code, l)
	}
	eventually(t, 2*time.Minute, "mini-01's lease to run out", func() error {
		l, err := fl.cp.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "mini-01", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if age := time.Since(l.Spec.RenewTime.Time); age < time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second+time.Second {
			return fmt.Errorf("renewed %s ago", age)
		}
		return nil
	})
	// The dead host was taken out of the inventory first: fleetctl status
	// lists its node as a stray, and retire --node takes that.
	inv, err := os.ReadFile(fl.inventory)
	if err != nil {
		t.Fatal(err)
	}
	without := filepath.Join(fl.dir, "without-mini-01.yaml")
	if err := os.WriteFile(without, regexp.MustCompile(`(?m)^  - name: mini-01\n(    .*\n)*`).ReplaceAll(inv, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	strays := func() []status.Stray {
		t.Helper()
		js, errOut := runFleetctl(t, fl.fleetctlBin, "status", without, "-o", "json", "--ssh-config", "none")
		var snap status.Snapshot
		if err := json.Unmarshal(js, &snap); err != nil || len(snap.Rows) != 2 {
			t.Fatalf("fleetctl status -o json without mini-01: %v\n%s\n%s", err, js, errOut)
		}
		return snap.Strays
	}
	if got := strays(); len(got) != 1 || got[0].Node != "mini-01" || got[0].Pods != 1 {
		t.Errorf("strays with mini-01 out of the inventory: %+v, want mini-01 with its pod", got)
	}
	if out, code := fl.fleetctl("retire", without, "--node", "mini-01"); code == 0 || !strings.Contains(out, "it needs --unreachable") {
		t.Fatalf("retire --node without --unreachable: exit %d, want a refusal:\n%s", code, out)
	}
	out, code = fl.fleetctl("retire", without, "--unreachable", "--node", "mini-01")
	if l := summaryLine(t, out, "mini-01"); code != 0 || !strings.Contains(l, "retired") || !strings.Contains(out, "force-deleted pod default/stranded") {
		t.Fatalf("retire --unreachable --node of the dead host: exit %d, summary %q", code, l)
	}
	if strings.Contains(out, "mini-02") || strings.Contains(out, "mini-03") {
		t.Errorf("retire --node touched hosts it was not given:\n%s", out)
	}
	if _, err := pods.Get(ctx, "stranded", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dead host's pod after retire --unreachable: %v, want it gone", err)
	}
	if _, err := fl.cp.Client.CoreV1().Nodes().Get(ctx, "mini-01", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node mini-01 after retire --unreachable: %v, want it deleted", err)
	}
	if got := strays(); len(got) != 0 {
		t.Errorf("strays after retire --node: %+v, want none", got)
	}
}
