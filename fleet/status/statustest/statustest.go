// Package statustest makes synthetic fleets for tests and benchmarks of
// the status model and UI: hosts in every shape a real fleet shows, a
// KubeView over fixed objects and a Gatherer that answers after a delay.
package statustest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/fleet/status"
	"github.com/vzfleet/vzfleet/inventory"
)

// Kube is a status.KubeView over fixed objects.
type Kube struct {
	Nodes map[string]*corev1.Node
	Pods  map[string][]*corev1.Pod
	// FreshAt is the view's freshness; nil: always current (Now).
	FreshAt func() time.Time
	Now     func() time.Time
}

// Node implements status.KubeView.
func (k *Kube) Node(name string) (*corev1.Node, bool) { n, ok := k.Nodes[name]; return n, ok }

// PodsOn implements status.KubeView.
func (k *Kube) PodsOn(node string) []*corev1.Pod { return k.Pods[node] }

// ListNodes implements status.KubeView.
func (k *Kube) ListNodes() []*corev1.Node { return slices.Collect(maps.Values(k.Nodes)) }

// Fresh implements status.KubeView.
func (k *Kube) Fresh() time.Time {
	if k.FreshAt != nil {
		return k.FreshAt()
	}
	return k.Now()
}

// Desired is the vz-node version synthetic fleets want.
const Desired = "0.4.0"

// Host is a synthetic inventory host.
func Host(i int) inventory.Host {
	return inventory.Host{
		Name: fmt.Sprintf("mini-%03d", i+1),
		SSH:  inventory.SSH{Address: fmt.Sprintf("10.20.%d.%d", i/200, i%200+10), Port: 22, User: "admin"},
		Node: inventory.Node{MaxVMs: 2, Labels: map[string]string{"vzfleet.dev/pool": []string{"ci", "release"}[i%2]}},
		Paths: inventory.Paths{Binary: "/usr/local/bin/vz-node", LaunchdLabel: "dev.vzfleet.vz-node",
			CacheDir: "/Library/Caches/vzfleet", Log: "/Library/Logs/vz-node.log"},
	}
}

// Shape is what is going on with a synthetic host; host i has shape
// i % NumShapes.
type Shape int

// The shapes, in the order hosts cycle through them.
const (
	Healthy Shape = iota
	Busy          // two VMs running
	Drifted       // runs an older vz-node, pulling an image
	NotReady
	Unregistered // reachable, no node yet
	Unreachable  // SSH fails
	NumShapes
)

// Fleet makes a store of n synthetic hosts as seen at now (now must not
// change between calls for stable output; pass a fixed clock).
func Fleet(n int, now func() time.Time, th status.Thresholds) (*status.Store, *Kube) {
	t := now()
	hosts := make([]inventory.Host, n)
	kube := &Kube{Nodes: map[string]*corev1.Node{}, Pods: map[string][]*corev1.Pod{}, Now: now}
	for i := range hosts {
		h := Host(i)
		hosts[i] = h
		shape := Shape(i % int(NumShapes))
		if shape == Unregistered {
			continue
		}
		version, ready := Desired, corev1.ConditionTrue
		msg := "vz-node is ready"
		switch shape {
		case Drifted:
			version = "0.3.2"
		case NotReady:
			ready, msg = corev1.ConditionFalse, "Docker is unreachable at /var/run/docker.sock"
		case Unreachable:
			ready, msg = corev1.ConditionUnknown, "Kubelet stopped posting node status."
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: h.Name, Labels: map[string]string{
				"kubernetes.io/os": "darwin", "vzfleet.dev/pool": h.Node.Labels["vzfleet.dev/pool"]}},
			Status: corev1.NodeStatus{
				Capacity: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2")},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Message: msg,
					LastHeartbeatTime: metav1.NewTime(t.Add(-time.Duration(i%7+1) * time.Second))}},
				NodeInfo: corev1.NodeSystemInfo{ContainerRuntimeVersion: status.RuntimeVersionPrefix + version},
				Images:   []corev1.ContainerImage{{Names: []string{"ghcr.io/cirruslabs/macos-sequoia-base:latest"}, SizeBytes: 24 << 30}},
			},
		}
		if shape == Drifted {
			node.Annotations = map[string]string{status.AnnotationPullProgress: "macos-sonoma-xcode:16 37%"}
		}
		kube.Nodes[h.Name] = node
		if shape == Busy {
			kube.Pods[h.Name] = []*corev1.Pod{pod(h.Name, 1, corev1.PodRunning), pod(h.Name, 2, corev1.PodRunning)}
		}
		if shape == Healthy && i%2 == 0 {
			kube.Pods[h.Name] = []*corev1.Pod{pod(h.Name, 1, corev1.PodPending)}
		}
	}
	s := status.NewStore(hosts, status.StoreOptions{DesiredVersion: Desired, Kube: kube, Now: now, Thresholds: th})
	for i, h := range hosts {
		RecordShape(s, h, Shape(i%int(NumShapes)), t.Add(-time.Duration(i%3+1)*time.Second))
	}
	return s, kube
}

// RecordShape records an SSH poll outcome fitting the shape.
func RecordShape(s *status.Store, h inventory.Host, shape Shape, at time.Time) {
	switch shape {
	case Unreachable:
		s.Record(h.Name, status.Facts{}, fmt.Errorf("host %s: dial tcp %s: connect: connection refused", h.Name, h.SSH.Addr()), at)
	case Unregistered:
		s.Record(h.Name, status.Facts{MacOS: "15.1", FreeDiskBytes: 900 << 30}, nil, at)
	default:
		version := Desired
		if shape == Drifted {
			version = "0.3.2"
		}
		free := int64(100+37*len(h.Name)+int(h.Name[len(h.Name)-1])) << 30
		s.Record(h.Name, status.Facts{MacOS: "15.1", FreeDiskBytes: free, AgentVersion: version,
			JobLoaded: true, JobState: "running", JobPID: 300 + int(h.Name[len(h.Name)-1])}, nil, at)
	}
}

func pod(node string, n int, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: fmt.Sprintf("%s-job-%d", node, n)},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

// Gatherer answers polls after Delay (returning early when the context
// ends), failing for hosts Fail picks.
type Gatherer struct {
	Delay time.Duration
	Fail  func(host string) bool
}

// ErrUnreachable is what Gatherer returns for failing hosts.
var ErrUnreachable = errors.New("connect: connection refused")

// Gather implements status.Gatherer.
func (g Gatherer) Gather(ctx context.Context, h inventory.Host) (status.Facts, error) {
	select {
	case <-time.After(g.Delay):
	case <-ctx.Done():
		return status.Facts{}, ctx.Err()
	}
	if g.Fail != nil && g.Fail(h.Name) {
		return status.Facts{}, fmt.Errorf("host %s: %w", h.Name, ErrUnreachable)
	}
	return status.Facts{MacOS: "15.1", FreeDiskBytes: 500 << 30, AgentVersion: Desired, JobLoaded: true, JobState: "running", JobPID: 42}, nil
}
