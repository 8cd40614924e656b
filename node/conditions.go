package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

// Node condition types vz-node adds to the kubelet's.
const (
	ConditionVMSlotLeak      corev1.NodeConditionType = "VMSlotLeak"
	ConditionDockerReachable corev1.NodeConditionType = "DockerReachable"
)

// conditionCheck evaluates one node condition.
type conditionCheck func(ctx context.Context) corev1.NodeCondition

// nodeStatus is the NodeProvider: it re-evaluates the condition checks
// periodically and pushes the node status when a condition changes.
type nodeStatus struct {
	interval time.Duration
	checks   []conditionCheck
	// images lists the cached VM images for the node status; nil lists none.
	images ImageLister
	now    func() time.Time

	mu   sync.Mutex
	node *corev1.Node
}

func newNodeStatus(n *corev1.Node, interval time.Duration, checks []conditionCheck, images ImageLister) *nodeStatus {
	s := &nodeStatus{interval: interval, checks: checks, images: images, now: time.Now, node: n}
	s.evaluate(context.Background())
	return s
}

// Ping implements node.NodeProvider.
func (s *nodeStatus) Ping(ctx context.Context) error { return ctx.Err() }

// NotifyNodeStatus implements node.NodeProvider.
func (s *nodeStatus) NotifyNodeStatus(ctx context.Context, cb func(*corev1.Node)) {
	go func() {
		t := time.NewTicker(s.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if s.evaluate(ctx) {
					s.mu.Lock()
					n := s.node.DeepCopy()
					s.mu.Unlock()
					cb(n)
				}
			}
		}
	}()
}

// evaluate runs the checks into the node and reports whether any
// condition's status, reason or message, or the cached image list, changed.
func (s *nodeStatus) evaluate(ctx context.Context) bool {
	now := metav1.NewTime(s.now())
	fresh := make([]corev1.NodeCondition, 0, len(s.checks))
	for _, c := range s.checks {
		fresh = append(fresh, c(ctx))
	}
	var images []corev1.ContainerImage
	imagesOK := false
	if s.images != nil {
		var err error
		images, err = s.images.Images()
		imagesOK = err == nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	imagesChanged := imagesOK && !equality.Semantic.DeepEqual(images, s.node.Status.Images)
	if imagesChanged {
		s.node.Status.Images = images
	}
	old := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range s.node.Status.Conditions {
		old[c.Type] = c
	}
	changed := imagesChanged || len(old) != len(fresh)
	for i := range fresh {
		c := &fresh[i]
		c.LastHeartbeatTime = now
		prev, ok := old[c.Type]
		switch {
		case !ok || prev.Status != c.Status:
			c.LastTransitionTime = now
			changed = true
		default:
			c.LastTransitionTime = prev.LastTransitionTime
			if prev.Reason != c.Reason || prev.Message != c.Message {
				changed = true
			}
		}
	}
	s.node.Status.Conditions = fresh
	if ready := fresh[0]; ready.Type == corev1.NodeReady && ready.Status == corev1.ConditionTrue {
		s.node.Status.Phase = corev1.NodeRunning
	}
	return changed
}

func condition(t corev1.NodeConditionType, on bool, reason, msg string) corev1.NodeCondition {
	st := corev1.ConditionFalse
	if on {
		st = corev1.ConditionTrue
	}
	return corev1.NodeCondition{Type: t, Status: st, Reason: reason, Message: msg}
}

func readyCheck(context.Context) corev1.NodeCondition {
	return condition(corev1.NodeReady, true, "KubeletReady", "vz-node is posting ready status")
}

// diskCheck reports pressure when the cache volume's free space is below
// minFree (images and overlays live there).
func diskCheck(dir string, minFree uint64) conditionCheck {
	return func(context.Context) corev1.NodeCondition {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return condition(corev1.NodeDiskPressure, true, "CacheVolumeUnreadable", fmt.Sprintf("statfs %s: %v", dir, err))
		}
		free := uint64(st.Bavail) * uint64(st.Bsize)
		if free < minFree {
			return condition(corev1.NodeDiskPressure, true, "KubeletHasDiskPressure",
				fmt.Sprintf("%s free on the cache volume (%s), below %s", bytesQ(free), dir, bytesQ(minFree)))
		}
		return condition(corev1.NodeDiskPressure, false, "KubeletHasNoDiskPressure", "the cache volume has at least "+bytesQ(minFree)+" free")
	}
}

// memoryCheck reports pressure when the host's available memory is below
// minAvail.
func memoryCheck(minAvail uint64, read func() hostUsage) conditionCheck {
	return func(context.Context) corev1.NodeCondition {
		u := read()
		if u.MemoryTotalBytes > 0 && u.MemoryAvailableBytes < minAvail {
			return condition(corev1.NodeMemoryPressure, true, "KubeletHasInsufficientMemory",
				fmt.Sprintf("%s memory available, below %s", bytesQ(u.MemoryAvailableBytes), bytesQ(minAvail)))
		}
		return condition(corev1.NodeMemoryPressure, false, "KubeletHasSufficientMemory", "vz-node has sufficient memory available")
	}
}

func pidCheck(context.Context) corev1.NodeCondition {
	return condition(corev1.NodePIDPressure, false, "KubeletHasSufficientPID", "vz-node has sufficient PID available")
}

func networkCheck(context.Context) corev1.NodeCondition {
	return condition(corev1.NodeNetworkUnavailable, false, "RouteCreated", "VM networking is provided by the host")
}

// slotLeakCheck reports VM slots held by nothing vz-node tracks.
func slotLeakCheck(state func() (int, int, []string)) conditionCheck {
	return func(context.Context) corev1.NodeCondition {
		_, _, leaked := state()
		if len(leaked) > 0 {
			return condition(ConditionVMSlotLeak, true, "VMSlotsLeaked", fmt.Sprintf("VM slots held by no pod: %v", leaked))
		}
		return condition(ConditionVMSlotLeak, false, "NoLeak", "every VM slot in use belongs to a pod")
	}
}

// dockerCheck pings the Docker engine sidecars use.
func dockerCheck(d *sidecar.Client) conditionCheck {
	return func(ctx context.Context) corev1.NodeCondition {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := d.Ping(ctx); err != nil {
			return condition(ConditionDockerReachable, false, "DockerUnreachable", err.Error())
		}
		return condition(ConditionDockerReachable, true, "DockerReachable", "the Docker daemon at "+d.Host()+" answers")
	}
}
