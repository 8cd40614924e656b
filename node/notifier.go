package node

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// notifier delivers pod statuses to virtual-kubelet's callback in the order
// they were published, keeping only the newest status of each pod that is
// still waiting. Workers never block on the callback (which can wait for
// the pod informer), and an older status can never overtake a newer one —
// which would leave the pod showing a stage it has already left.
type notifier struct {
	mu     sync.Mutex
	f      func(*corev1.Pod)
	latest map[string]*corev1.Pod // by namespace/name
	order  []string
	wake   chan struct{}
	once   sync.Once
}

func newNotifier() *notifier {
	return &notifier{latest: map[string]*corev1.Pod{}, wake: make(chan struct{}, 1)}
}

// publish queues pod's status, replacing any not yet delivered.
func (n *notifier) publish(pod *corev1.Pod) {
	key := pod.Namespace + "/" + pod.Name
	n.mu.Lock()
	if _, queued := n.latest[key]; !queued {
		n.order = append(n.order, key)
	}
	n.latest[key] = pod
	n.mu.Unlock()
	n.signal()
}

// start sets the callback and delivers queued and future statuses until ctx
// ends.
func (n *notifier) start(ctx context.Context, f func(*corev1.Pod)) {
	n.mu.Lock()
	n.f = f
	n.mu.Unlock()
	n.once.Do(func() { go n.run(ctx) })
	n.signal()
}

func (n *notifier) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		for {
			n.mu.Lock()
			if n.f == nil || len(n.order) == 0 {
				n.mu.Unlock()
				break
			}
			key := n.order[0]
			n.order = n.order[1:]
			pod, f := n.latest[key], n.f
			delete(n.latest, key)
			n.mu.Unlock()
			f(pod)
		}
	}
}
