package node

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func podIn(name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Status: corev1.PodStatus{Phase: phase}}
}

// Statuses published before virtual-kubelet subscribes are delivered once it
// does, newest per pod, and a pod's last delivered status is its newest.
func TestNotifierDeliversNewestInOrder(t *testing.T) {
	n := newNotifier()
	n.publish(podIn("a", corev1.PodPending))
	n.publish(podIn("b", corev1.PodPending))
	n.publish(podIn("a", corev1.PodRunning))

	var mu sync.Mutex
	var got []string
	last := map[string]corev1.PodPhase{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.start(ctx, func(p *corev1.Pod) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, p.Name+"="+string(p.Status.Phase))
		last[p.Name] = p.Status.Phase
	})
	n.publish(podIn("b", corev1.PodRunning))

	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := last["a"] == corev1.PodRunning && last["b"] == corev1.PodRunning
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("statuses delivered: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if got[0] != "a=Running" {
		t.Fatalf("pod a's stale Pending status was delivered: %v", got)
	}
}
