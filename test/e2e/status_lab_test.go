package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vzfleet/vzfleet/fleet/status"
	"github.com/vzfleet/vzfleet/inventory"
	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/machost"
)

// statusLab is a control plane whose nodes stand for three simulated Macs,
// the Macs themselves (real sshd each) and an inventory naming them.
type statusLab struct {
	cp        *harness.ControlPlane
	lab       *machost.Lab
	dir       string
	inventory string
}

var statusHosts = []string{"mini-01", "mini-02", "mini-03"}

const statusWantVersion = "v0.4.0-e2e"

func startStatusLab(t *testing.T) *statusLab {
	t.Helper()
	harness.RequireRoot(t)
	sl := &statusLab{dir: t.TempDir()}
	sl.cp = harness.ControlPlaneT(t, harness.ControlPlaneOptions{})
	var hosts []machost.HostOptions
	for _, n := range statusHosts {
		hosts = append(hosts, machost.HostOptions{Name: n})
	}
	sl.lab = machost.LabT(t, machost.LabOptions{Hosts: hosts})
	knownHosts := filepath.Join(sl.dir, "known_hosts")
	if err := sl.lab.WriteKnownHosts(knownHosts); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: vzfleet.dev/v1alpha1
kind: Inventory
defaults:
  ssh:
    user: %s
    identityFile: %s
    knownHostsFile: %s
    sudo: false
    connectTimeout: 2s
  node:
    driver: sim
  cluster:
    operatorKubeconfig: %s
  guestSSH:
    password: {env: STATUS_E2E_GUEST_PASSWORD}
  images:
    - ghcr.io/cirruslabs/macos-sequoia-base:latest
hosts:
`, sl.lab.User, sl.lab.ClientKeyFile, knownHosts, sl.cp.AdminKubeconfig)
	for _, h := range sl.lab.Hosts {
		fmt.Fprintf(&b, "  - name: %s\n    ssh:\n      address: %s\n    node:\n      labels:\n        vzfleet.dev/rack: %s\n", h.Name, h.IP, statusRack(h.Name))
	}
	sl.inventory = filepath.Join(sl.dir, "inventory.yaml")
	if err := os.WriteFile(sl.inventory, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range statusHosts {
		registerNode(ctx, t, sl.cp.Client, n, n == "mini-02")
	}
	runPodOn(ctx, t, sl.cp.Client, "mini-01", "ci-build-1")
	return sl
}

// statusRack is the rack label of a lab host: b for mini-03, a for the rest.
func statusRack(host string) string {
	if host == "mini-03" {
		return "b"
	}
	return "a"
}

// registerNode creates a Ready node as vz-node would; old makes it report
// a vz-node version other than the wanted one.
func registerNode(ctx context.Context, t *testing.T, c kubernetes.Interface, name string, old bool) {
	t.Helper()
	n, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"kubernetes.io/os": "darwin", "vzfleet.dev/rack": statusRack(name)}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	v := statusWantVersion
	if old {
		v = "v0.3.0-e2e"
	}
	n.Status = corev1.NodeStatus{
		Capacity:    corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2")},
		Allocatable: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2")},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "VZNodeReady",
			Message: "vz-node is ready", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		NodeInfo: corev1.NodeSystemInfo{ContainerRuntimeVersion: status.RuntimeVersionPrefix + v, KubeletVersion: "v1.35.4-vz-" + v},
		Images:   []corev1.ContainerImage{{Names: []string{"ghcr.io/cirruslabs/macos-sequoia-base:latest"}, SizeBytes: 24 << 30}},
	}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
}

func runPodOn(ctx context.Context, t *testing.T, c kubernetes.Interface, node, name string) {
	t.Helper()
	p, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "vm", Image: "ghcr.io/cirruslabs/macos-sequoia-base:latest"}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	p.Status.Phase = corev1.PodRunning
	if _, err := c.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("pod %s status: %v", name, err)
	}
}

// TestStatusHostGoesOffline: with the status model polling three real
// sshds every second, stopping one host's sshd turns its row OFFLINE
// within one interval (plus the time one poll takes) while the other two
// stay LIVE the whole time; starting it again brings it back. Then the
// built fleetctl prints the same picture as JSON.
func TestStatusHostGoesOffline(t *testing.T) {
	sl := startStatusLab(t)
	inv, err := inventory.Load(sl.inventory)
	if err != nil {
		t.Fatal(err)
	}
	const interval = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := status.NewInformers(sl.cp.Client, nil)
	syncCtx, done := context.WithTimeout(ctx, 30*time.Second)
	err = kube.Start(ctx, syncCtx)
	done()
	if err != nil {
		t.Fatal(err)
	}
	store := status.NewStore(inv.Hosts, status.StoreOptions{DesiredVersion: statusWantVersion, Kube: kube,
		Thresholds: status.DefaultThresholds.ForInterval(interval)})
	g := &status.SSHGatherer{Dial: status.DialInventoryHost(status.DialOptions{SSHConfigFile: "none", ConnectTimeout: interval})}
	defer g.Close()
	poller := &status.Poller{Store: store, Gatherer: g, Interval: interval, Timeout: interval, Concurrency: 2}
	go poller.Run(ctx)

	rows := func() map[string]status.Row {
		m := map[string]status.Row{}
		for _, r := range store.Snapshot().Rows {
			m[r.Host] = r
		}
		return m
	}
	eventually(t, 30*time.Second, "every host LIVE with SSH facts", func() error {
		for _, r := range rows() {
			if r.Freshness != status.Live || r.MacOS == "" || r.FreeDiskBytes <= 0 {
				return fmt.Errorf("%s: %s macOS %q free %d err %q", r.Host, r.Freshness, r.MacOS, r.FreeDiskBytes, r.LastError)
			}
		}
		return nil
	})
	got := rows()
	if r := got["mini-01"]; r.Ready != status.ReadyTrue || r.VMsUsed != 1 || r.VMsMax != 2 || len(r.Pods) != 1 || r.Pods[0].Phase != "Running" || r.Drift {
		t.Errorf("mini-01 from Kubernetes: %+v", r)
	}
	if r := got["mini-02"]; !r.Drift || r.AgentVersion != "v0.3.0-e2e" {
		t.Errorf("mini-02 should show drift: agent %q drift %v", r.AgentVersion, r.Drift)
	}
	if r := got["mini-03"]; r.Launchd != "not loaded" || len(r.Images) != 1 {
		t.Errorf("mini-03: launchd %q images %v", r.Launchd, r.Images)
	}

	victim := sl.lab.Host("mini-02")
	victim.Stop()
	stopped := time.Now()
	var offlineAfter time.Duration
	for offlineAfter == 0 {
		now := rows()
		for _, n := range []string{"mini-01", "mini-03"} {
			if now[n].Freshness != status.Live {
				t.Fatalf("%s turned %s while mini-02 was down: %q", n, now[n].Freshness, now[n].LastError)
			}
		}
		if now["mini-02"].Freshness == status.Offline {
			offlineAfter = time.Since(stopped)
			t.Logf("mini-02 OFFLINE %s after its sshd stopped: %s", offlineAfter.Round(time.Millisecond), now["mini-02"].LastError)
		}
		if time.Since(stopped) > 10*interval {
			t.Fatalf("mini-02 still %s %s after its sshd stopped", now["mini-02"].Freshness, time.Since(stopped))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// One interval until the next poll, plus that poll's own time.
	if limit := interval + poller.Timeout + 250*time.Millisecond; offlineAfter > limit {
		t.Errorf("mini-02 took %s to turn OFFLINE, more than one interval plus one poll (%s)", offlineAfter, limit)
	}
	// The others stay LIVE over further rounds.
	for end := time.Now().Add(3 * interval); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		now := rows()
		if now["mini-01"].Freshness != status.Live || now["mini-03"].Freshness != status.Live || now["mini-02"].Freshness != status.Offline {
			t.Fatalf("with mini-02 down: 01 %s, 02 %s, 03 %s", now["mini-01"].Freshness, now["mini-02"].Freshness, now["mini-03"].Freshness)
		}
	}
	if st := poller.Stats(); st.MaxInFlight > 2 {
		t.Errorf("poller ran %d polls at once, cap 2", st.MaxInFlight)
	}

	// A node of vz-node's that no host in the inventory names (a host
	// taken out of the inventory without fleetctl retire), with a pod.
	registerNode(ctx, t, sl.cp.Client, "mini-09", false)
	runPodOn(ctx, t, sl.cp.Client, "mini-09", "stray-1")

	// The program: one JSON snapshot, the stopped host OFFLINE.
	bin := buildFleetctlForStatus(t, sl.dir)
	out, errOut := runFleetctl(t, bin, "status", sl.inventory, "-o", "json", "--ssh-config", "none", "--interval", "2s", "--want-version", statusWantVersion)
	var snap status.Snapshot
	if err := json.Unmarshal(out, &snap); err != nil {
		t.Fatalf("fleetctl status -o json: %v\n%s\n%s", err, out, errOut)
	}
	states := map[string]status.Freshness{}
	for _, r := range snap.Rows {
		states[r.Host] = r.Freshness
	}
	if states["mini-01"] != status.Live || states["mini-02"] != status.Offline || states["mini-03"] != status.Live ||
		snap.Totals.Hosts != 3 || snap.Totals.Ready != 3 || snap.Totals.VMsRunning != 1 || snap.Totals.Drifted != 1 {
		t.Errorf("fleetctl status -o json: states %v totals %+v\nstderr: %s", states, snap.Totals, errOut)
	}
	if snap.Rows[0].Host != "mini-02" {
		t.Errorf("the problem host should sort first, got %s", snap.Rows[0].Host)
	}
	if want := []status.Stray{{Node: "mini-09", Ready: status.ReadyTrue, Pods: 1}}; !slices.Equal(snap.Strays, want) {
		t.Errorf("fleetctl status -o json: strays %+v, want %+v", snap.Strays, want)
	}
	// The hosts --limit leaves out are not strays; the table names the
	// stray and says what to do.
	out, errOut = runFleetctl(t, bin, "status", sl.inventory, "-o", "table", "--limit", "mini-01", "--ssh-config", "none", "--interval", "2s")
	if table := string(out); !strings.Contains(table, "\nnot in the inventory: mini-09 (True, 1 pod)\n") || !strings.Contains(table, "run fleetctl retire on it") ||
		strings.Contains(table, "mini-02 (") || !strings.Contains(table, "mini-01") {
		t.Errorf("fleetctl status --limit mini-01: the table should list mini-01 and only mini-09 as a stray:\n%s\nstderr: %s", table, errOut)
	}

	// --watch streams a line per change: mini-02 OFFLINE first, LIVE once
	// its sshd is back.
	watch := startWatch(t, bin, "status", sl.inventory, "--watch", "--ssh-config", "none", "--interval", "1s", "--want-version", statusWantVersion)
	watch.waitLine(t, "mini-02 OFFLINE", "state=OFFLINE host=mini-02 ")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	watch.waitLine(t, "mini-02 LIVE", "state=LIVE host=mini-02 ")
	eventually(t, 5*interval, "mini-02 LIVE again", func() error {
		if r := rows()["mini-02"]; r.Freshness != status.Live {
			return fmt.Errorf("%s: %q", r.Freshness, r.LastError)
		}
		return nil
	})
}

// watchProc is a running `fleetctl status --watch` whose lines arrive on
// a channel.
type watchProc struct {
	lines chan string
	seen  []string
}

func startWatch(t *testing.T, bin string, args ...string) *watchProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &watchProc{lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	return w
}

func (w *watchProc) waitLine(t *testing.T, what, sub string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("fleetctl status --watch ended before %s; it printed:\n%s", what, strings.Join(w.seen, "\n"))
			}
			w.seen = append(w.seen, l)
			if strings.Contains(l, sub) {
				return
			}
		case <-timeout:
			t.Fatalf("no line with %s from fleetctl status --watch; it printed:\n%s", what, strings.Join(w.seen, "\n"))
		}
	}
}

func buildFleetctlForStatus(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "fleetctl")
	if err := harness.GoBuild(t.Context(), out, "./cmd/fleetctl"); err != nil {
		t.Fatal(err)
	}
	return out
}

func runFleetctl(t *testing.T, bin string, args ...string) (stdout, stderr []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("fleetctl %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.Bytes(), e.Bytes()
}
