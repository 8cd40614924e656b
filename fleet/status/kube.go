package status

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const podNodeIndex = "spec.nodeName"

// Informers is a KubeView fed by watches on nodes and on pods bound to a
// node: one list, then only changes, so reading it costs nothing.
type Informers struct {
	client kubernetes.Interface
	nodes  cache.SharedIndexInformer
	pods   cache.SharedIndexInformer
	now    func() time.Time

	mu      sync.Mutex
	eventAt time.Time
	errAt   time.Time
	err     error
}

func podNode(obj any) ([]string, error) {
	if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
		return []string{p.Spec.NodeName}, nil
	}
	return nil, nil
}

// NewInformers prepares the watches; Start runs them.
func NewInformers(client kubernetes.Interface, now func() time.Time) *Informers {
	if now == nil {
		now = time.Now
	}
	k := &Informers{client: client, now: now}
	k.nodes = coreinformers.NewNodeInformer(client, 0, cache.Indexers{})
	k.pods = coreinformers.NewFilteredPodInformer(client, metav1.NamespaceAll, 0, cache.Indexers{podNodeIndex: podNode},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		})
	for _, inf := range []cache.SharedIndexInformer{k.nodes, k.pods} {
		_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) { k.broken(err) })
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { k.event() },
			UpdateFunc: func(any, any) { k.event() },
			DeleteFunc: func(any) { k.event() },
		})
	}
	return k
}

// Start runs the watches until ctx ends and waits, until wait ends, for
// their first list. The watches keep running (and retrying) when the wait
// gives up.
func (k *Informers) Start(ctx, wait context.Context) error {
	go k.nodes.RunWithContext(ctx)
	go k.pods.RunWithContext(ctx)
	if !cache.WaitForCacheSync(wait.Done(), k.nodes.HasSynced, k.pods.HasSynced) {
		if err := k.Err(); err != nil {
			return fmt.Errorf("watching nodes and pods: %w", err)
		}
		return fmt.Errorf("watching nodes and pods: no first list yet: %w", wait.Err())
	}
	k.event()
	return nil
}

func (k *Informers) event() {
	k.mu.Lock()
	k.eventAt = k.now()
	k.mu.Unlock()
}

func (k *Informers) broken(err error) {
	k.mu.Lock()
	if !k.isBroken() {
		k.errAt = k.now()
	}
	k.err = err
	k.mu.Unlock()
}

// isBroken: a watch failed and no event arrived since. k.mu is held.
func (k *Informers) isBroken() bool {
	return !k.errAt.IsZero() && !k.errAt.Before(k.eventAt)
}

// Err is the last watch error (nil when none happened).
func (k *Informers) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Fresh implements KubeView: now while the watches run, the moment they
// broke while they do not.
func (k *Informers) Fresh() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case !k.nodes.HasSynced() || !k.pods.HasSynced():
		return time.Time{}
	case k.isBroken():
		return k.errAt
	default:
		return k.now()
	}
}

// Node implements KubeView.
func (k *Informers) Node(name string) (*corev1.Node, bool) {
	obj, ok, err := k.nodes.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil, false
	}
	n, ok := obj.(*corev1.Node)
	return n, ok
}

// ListNodes implements KubeView.
func (k *Informers) ListNodes() []*corev1.Node {
	var out []*corev1.Node
	for _, o := range k.nodes.GetStore().List() {
		if n, ok := o.(*corev1.Node); ok {
			out = append(out, n)
		}
	}
	return out
}

// PodsOn implements KubeView.
func (k *Informers) PodsOn(node string) []*corev1.Pod {
	objs, err := k.pods.GetIndexer().ByIndex(podNodeIndex, node)
	if err != nil {
		return nil
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

// Events returns the newest events about a node and the pods on it,
// oldest first, at most limit.
func (k *Informers) Events(ctx context.Context, node string, limit int) ([]string, error) {
	var all []corev1.Event
	sel := fields.OneTermEqualSelector("involvedObject.name", node).String()
	list, err := k.client.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("events of node %s: %w", node, err)
	}
	all = append(all, list.Items...)
	for _, p := range k.PodsOn(node) {
		sel := fields.Set{"involvedObject.name": p.Name, "involvedObject.namespace": p.Namespace}.AsSelector().String()
		list, err := k.client.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return nil, fmt.Errorf("events of pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		all = append(all, list.Items...)
	}
	return FormatEvents(all, limit), nil
}
