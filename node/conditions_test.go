package node

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

type fakeImages struct{ list []corev1.ContainerImage }

func (f *fakeImages) Images() ([]corev1.ContainerImage, error) { return f.list, nil }

// The node status lists the cached images and reports a change when an image
// is pulled or pruned, so the new list is pushed to the apiserver.
func TestNodeStatusListsCachedImages(t *testing.T) {
	imgs := &fakeImages{}
	s := newNodeStatus(&corev1.Node{}, time.Second, []conditionCheck{readyCheck}, imgs)
	if s.evaluate(context.Background()) {
		t.Fatal("nothing changed, but evaluate reported a change")
	}
	imgs.list = []corev1.ContainerImage{{Names: []string{"r.example/vm:1", "r.example/vm@sha256:ab"}, SizeBytes: 42}}
	if !s.evaluate(context.Background()) {
		t.Fatal("a pulled image did not count as a change")
	}
	if got := s.node.Status.Images; len(got) != 1 || got[0].Names[0] != "r.example/vm:1" || got[0].SizeBytes != 42 {
		t.Fatalf("node status images = %+v", got)
	}
	if s.evaluate(context.Background()) {
		t.Fatal("the same image list counted as a change")
	}
	imgs.list = nil
	if !s.evaluate(context.Background()) || len(s.node.Status.Images) != 0 {
		t.Fatalf("a pruned image did not count as a change: %+v", s.node.Status.Images)
	}
}
