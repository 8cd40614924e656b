package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/vzfleet/vzfleet/inventory"
)

// Annotations on the Node that remember which labels and taints fleetctl
// set, so removing one from the inventory removes it from the node.
const (
	AnnotationManagedLabels = "vzfleet.dev/managed-labels"
	AnnotationManagedTaints = "vzfleet.dev/managed-taints"
)

// RuntimeVersionPrefix: vz-node reports "vz://<version>" as the node's
// container runtime version.
const RuntimeVersionPrefix = "vz://"

// nodeReady reports whether the node is Ready, runs wantVersion (when set)
// and has posted status after since (when set), and if not, why.
func nodeReady(n *corev1.Node, wantVersion string, since time.Time) (bool, string) {
	if wantVersion != "" {
		if got := n.Status.NodeInfo.ContainerRuntimeVersion; got != RuntimeVersionPrefix+wantVersion {
			return false, fmt.Sprintf("runs %s, want %s%s", orUnknown(got), RuntimeVersionPrefix, wantVersion)
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status != corev1.ConditionTrue {
			return false, fmt.Sprintf("Ready=%s %s", c.Status, c.Message)
		}
		if !since.IsZero() && !c.LastHeartbeatTime.After(since) {
			return false, "no status from the restarted vz-node yet"
		}
		return true, ""
	}
	return false, "no Ready condition yet"
}

// readyHeartbeat is the node's last Ready heartbeat (zero when none).
func readyHeartbeat(ctx context.Context, client kubernetes.Interface, node string) time.Time {
	n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return time.Time{}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.LastHeartbeatTime.Time
		}
	}
	return time.Time{}
}

// waitReady watches the node until nodeReady holds or the timeout passes.
func waitReady(ctx context.Context, client kubernetes.Interface, node, wantVersion string, since time.Time, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sel := fields.OneTermEqualSelector("metadata.name", node).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return client.CoreV1().Nodes().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return client.CoreV1().Nodes().Watch(ctx, o)
		},
	}
	last := "the node is not registered"
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Node{}, nil, func(ev watch.Event) (bool, error) {
		n, ok := ev.Object.(*corev1.Node)
		if !ok || ev.Type == watch.Deleted {
			last = "the node was deleted"
			return false, nil
		}
		ready, why := nodeReady(n, wantVersion, since)
		last = why
		return ready, nil
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, watchtools.ErrWatchClosed) || ctx.Err() != nil {
			return fmt.Errorf("node %s not Ready within %s: %s", node, timeout, last)
		}
		return fmt.Errorf("watching node %s: %w", node, err)
	}
	return nil
}

// nodeMeta computes the merge patch that gives the node the inventory's
// labels and taints (removing those fleetctl set before and the inventory
// no longer has), and a description of each change. A nil patch means the
// node already matches; a missing node yields the changes with no patch.
func nodeMeta(n *corev1.Node, labels map[string]string, taints []inventory.Taint) (patch []byte, changes []string) {
	var cur map[string]string
	var curTaints []corev1.Taint
	var ann map[string]string
	if n != nil {
		cur, curTaints, ann = n.Labels, n.Spec.Taints, n.Annotations
	}
	prevLabels := splitList(ann[AnnotationManagedLabels])
	prevTaints := splitList(ann[AnnotationManagedTaints])

	labelPatch := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if v, ok := cur[k]; !ok || v != labels[k] {
			labelPatch[k] = labels[k]
			changes = append(changes, fmt.Sprintf("label %s=%s", k, labels[k]))
		}
	}
	for _, k := range prevLabels {
		if _, keep := labels[k]; !keep {
			if _, ok := cur[k]; ok {
				labelPatch[k] = nil
				changes = append(changes, "label -"+k)
			}
		}
	}

	want := make([]corev1.Taint, 0, len(taints))
	wantIDs := make([]string, 0, len(taints))
	for _, t := range taints {
		want = append(want, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
		wantIDs = append(wantIDs, t.Key+":"+string(t.Effect))
	}
	var newTaints []corev1.Taint
	for _, t := range curTaints {
		id := t.Key + ":" + string(t.Effect)
		if slices.Contains(wantIDs, id) {
			continue
		}
		if slices.Contains(prevTaints, id) {
			changes = append(changes, "taint -"+id)
			continue
		}
		newTaints = append(newTaints, t)
	}
	for _, t := range want {
		found := slices.ContainsFunc(curTaints, func(c corev1.Taint) bool {
			return c.Key == t.Key && c.Effect == t.Effect && c.Value == t.Value
		})
		if !found {
			changes = append(changes, "taint "+inventory.Taint{Key: t.Key, Value: t.Value, Effect: inventory.TaintEffect(t.Effect)}.String())
		}
		newTaints = append(newTaints, t)
	}

	wantLabelsAnn := strings.Join(slices.Sorted(maps.Keys(labels)), ",")
	wantTaintsAnn := strings.Join(slices.Sorted(slices.Values(wantIDs)), ",")
	annPatch := map[string]any{}
	if ann[AnnotationManagedLabels] != wantLabelsAnn {
		annPatch[AnnotationManagedLabels] = wantLabelsAnn
	}
	if ann[AnnotationManagedTaints] != wantTaintsAnn {
		annPatch[AnnotationManagedTaints] = wantTaintsAnn
	}
	if n == nil || len(labelPatch)+len(annPatch) == 0 && len(changes) == 0 {
		return nil, changes
	}
	meta := map[string]any{}
	if len(labelPatch) > 0 {
		meta["labels"] = labelPatch
	}
	if len(annPatch) > 0 {
		meta["annotations"] = annPatch
	}
	body := map[string]any{"metadata": meta}
	if slices.ContainsFunc(changes, func(c string) bool { return strings.HasPrefix(c, "taint ") }) {
		if newTaints == nil {
			newTaints = []corev1.Taint{}
		}
		body["spec"] = map[string]any{"taints": newTaints}
	}
	patch, _ = json.Marshal(body)
	return patch, changes
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// getNode returns the node, or nil when it does not exist.
func getNode(ctx context.Context, client kubernetes.Interface, name string) (*corev1.Node, error) {
	n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading node %s: %w", name, err)
	}
	return n, nil
}

// applyNodeMeta patches the node's labels and taints to the inventory's.
func applyNodeMeta(ctx context.Context, client kubernetes.Interface, name string, labels map[string]string, taints []inventory.Taint) ([]string, error) {
	n, err := getNode(ctx, client, name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, fmt.Errorf("node %s is not registered", name)
	}
	patch, changes := nodeMeta(n, labels, taints)
	if patch == nil {
		return changes, nil
	}
	if _, err := client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return nil, fmt.Errorf("setting labels and taints on node %s: %w", name, err)
	}
	return changes, nil
}
