package status

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestInformersIndexPodsByNode(t *testing.T) {
	t.Parallel()
	p1 := pod("ci", "build-1", corev1.PodRunning)
	p1.Spec.NodeName = "mini-01"
	p2 := pod("ci", "build-2", corev1.PodPending)
	p2.Spec.NodeName = "mini-02"
	unbound := pod("ci", "waiting", corev1.PodPending)
	client := fake.NewClientset(node("mini-01", "True", "0.4.0", t0), p1, p2, unbound,
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "e1"},
			InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "mini-01"}, Type: "Warning", Reason: "DiskPressure",
			Message: "cache volume 95% full", LastTimestamp: metav1.NewTime(t0)})
	c := &clock{t0}
	k := NewInformers(client, c.Now)
	if !k.Fresh().IsZero() {
		t.Error("fresh before the first list")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait, done := context.WithTimeout(ctx, 10*time.Second)
	defer done()
	if err := k.Start(ctx, wait); err != nil {
		t.Fatal(err)
	}
	if n, ok := k.Node("mini-01"); !ok || n.Name != "mini-01" {
		t.Errorf("Node(mini-01) = %v, %v", n, ok)
	}
	if _, ok := k.Node("mini-09"); ok {
		t.Error("Node(mini-09) found")
	}
	if pods := k.PodsOn("mini-01"); len(pods) != 1 || pods[0].Name != "build-1" {
		t.Errorf("PodsOn(mini-01) = %v", pods)
	}
	if !k.Fresh().Equal(t0) {
		t.Errorf("Fresh = %v while the watches run, want now", k.Fresh())
	}
	// A watch error marks the view stale from then until the next event.
	k.broken(errors.New("watch closed"))
	c.Advance(time.Minute)
	if !k.Fresh().Equal(t0) {
		t.Errorf("Fresh = %v after a watch error, want the error's time %v", k.Fresh(), t0)
	}
	p3 := pod("ci", "build-3", corev1.PodRunning)
	p3.Spec.NodeName = "mini-01"
	if _, err := client.CoreV1().Pods("ci").Create(ctx, p3, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(k.PodsOn("mini-01")) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the new pod never reached the index")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !k.Fresh().Equal(c.Now()) {
		t.Errorf("Fresh = %v after an event, want now", k.Fresh())
	}
	events, err := k.Events(ctx, "mini-01", 10)
	if err != nil || len(events) != 1 || events[0] != "10:00:00 Warning DiskPressure Node/mini-01: cache volume 95% full" {
		t.Errorf("Events = %q, %v", events, err)
	}
}

func TestFormatEventsKeepsNewest(t *testing.T) {
	t.Parallel()
	ev := func(name string, at time.Duration, count int32) corev1.Event {
		return corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "ci", Name: name}, Reason: "Started",
			Message: "line one\nline two", Count: count, LastTimestamp: metav1.NewTime(t0.Add(at))}
	}
	got := FormatEvents([]corev1.Event{ev("c", 3*time.Second, 1), ev("a", time.Second, 4), ev("b", 2*time.Second, 1)}, 2)
	want := []string{
		"10:00:02 Normal  Started Pod/ci/b: line one …",
		"10:00:03 Normal  Started Pod/ci/c: line one …",
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("FormatEvents = %q, want %q", got, want)
	}
}
