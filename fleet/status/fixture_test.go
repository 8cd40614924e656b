package status

import (
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// fakeKube is a KubeView over fixed objects.
type fakeKube struct {
	nodes map[string]*corev1.Node
	pods  map[string][]*corev1.Pod
	fresh func() time.Time
}

func (k *fakeKube) Node(name string) (*corev1.Node, bool) { n, ok := k.nodes[name]; return n, ok }
func (k *fakeKube) PodsOn(node string) []*corev1.Pod      { return k.pods[node] }
func (k *fakeKube) ListNodes() []*corev1.Node             { return slices.Collect(maps.Values(k.nodes)) }
func (k *fakeKube) Fresh() time.Time                      { return k.fresh() }

func host(name, addr string, labels map[string]string) inventory.Host {
	return inventory.Host{
		Name: name,
		SSH:  inventory.SSH{Address: addr, Port: 22, User: "admin"},
		Node: inventory.Node{MaxVMs: 2, Labels: labels},
		Paths: inventory.Paths{Binary: "/usr/local/bin/vz-node", LaunchdLabel: "dev.vzfleet.vz-node",
			CacheDir: "/Library/Caches/vzfleet", Log: "/Library/Logs/vz-node.log"},
	}
}

func node(name, ready, version string, heartbeat time.Time) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": "darwin", "vzfleet.dev/pool": "ci"}},
		Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionStatus(ready), LastHeartbeatTime: metav1.NewTime(heartbeat), Message: "vz-node is " + map[string]string{"True": "ready", "False": "not ready: Docker unreachable"}[ready]}},
			NodeInfo:   corev1.NodeSystemInfo{ContainerRuntimeVersion: RuntimeVersionPrefix + version},
			Images: []corev1.ContainerImage{
				{Names: []string{"ghcr.io/cirruslabs/macos-sequoia-base@sha256:abc", "ghcr.io/cirruslabs/macos-sequoia-base:latest"}, SizeBytes: 25 << 30},
			},
		},
	}
}

func pod(ns, name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Status: corev1.PodStatus{Phase: phase}}
}

// facts is a healthy host's SSH facts.
func facts(version string, freeGiB int64) Facts {
	return Facts{MacOS: "15.1", FreeDiskBytes: freeGiB << 30, AgentVersion: version, JobLoaded: true, JobState: "running", JobPID: 412}
}

// fleetFixture is four hosts in different shapes at t0:
//   - mini-01: healthy, one VM running, one pending;
//   - mini-02: Ready but cordoned, runs an old vz-node (drift), low on
//     disk;
//   - mini-03: SSH fails (OFFLINE), its node NotReady;
//   - mini-04: reachable, vz-node not installed, no node.
//
// Beside them, mini-05 is in the inventory but not shown (--limit),
// mini-09 a stray (a node of vz-node's the inventory does not name),
// cordoned, with a pod, and control-1 a node of another kind.
func fleetFixture(c *clock) *Store {
	hosts := []inventory.Host{
		host("mini-01", "10.20.0.11", map[string]string{"vzfleet.dev/pool": "ci"}),
		host("mini-02", "10.20.0.12", map[string]string{"vzfleet.dev/pool": "release"}),
		host("mini-03", "10.20.0.13", map[string]string{"vzfleet.dev/pool": "ci"}),
		host("mini-04", "10.20.0.14", map[string]string{"vzfleet.dev/pool": "ci"}),
	}
	n2 := node("mini-02", "True", "0.3.0", t0.Add(-5*time.Second))
	n2.Labels["vzfleet.dev/pool"] = "release"
	n2.Annotations = map[string]string{AnnotationPullProgress: "macos-sonoma:latest 42%"}
	n2.Spec.Unschedulable = true
	stray := node("mini-09", "True", "0.4.0", t0.Add(-4*time.Second))
	stray.Spec.Unschedulable = true
	kube := &fakeKube{
		nodes: map[string]*corev1.Node{
			"mini-01": node("mini-01", "True", "0.4.0", t0.Add(-3*time.Second)),
			"mini-02": n2,
			"mini-03": node("mini-03", "False", "0.4.0", t0.Add(-2*time.Minute)),
			"mini-05": node("mini-05", "True", "0.4.0", t0.Add(-3*time.Second)),
			"mini-09": stray,
			"control-1": {ObjectMeta: metav1.ObjectMeta{Name: "control-1"},
				Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{ContainerRuntimeVersion: "containerd://2.1.0"}}},
		},
		pods: map[string][]*corev1.Pod{
			"mini-01": {pod("ci", "build-7", corev1.PodRunning), pod("ci", "build-8", corev1.PodPending), pod("ci", "build-1", corev1.PodSucceeded)},
			"mini-09": {pod("ci", "build-3", corev1.PodRunning)},
		},
		fresh: c.Now,
	}
	s := NewStore(hosts, StoreOptions{DesiredVersion: "0.4.0", Kube: kube, Now: c.Now,
		InventoryNodes: []string{"mini-01", "mini-02", "mini-03", "mini-04", "mini-05"},
		Thresholds:     Thresholds{StaleAfter: 15 * time.Second, OfflineAfter: 2}})
	s.Record("mini-01", facts("0.4.0", 412), nil, t0.Add(-1*time.Second))
	s.Record("mini-02", facts("0.3.0", 31), nil, t0.Add(-2*time.Second))
	s.Record("mini-03", facts("0.4.0", 200), nil, t0.Add(-3*time.Minute))
	for range 2 {
		s.Record("mini-03", Facts{}, errors.New("host mini-03: dial tcp 10.20.0.13:22: connect: no route to host"), t0.Add(-time.Second))
	}
	s.Record("mini-04", Facts{MacOS: "14.6", FreeDiskBytes: 800 << 30}, nil, t0.Add(-1*time.Second))
	return s
}
