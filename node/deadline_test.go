package node

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A pod that outlives its activeDeadlineSeconds fails with reason
// DeadlineExceeded whatever its restartPolicy: a running VM is shut down;
// a pod whose VM waits for a slot never starts it. A shortened
// deadline (a pod update) takes effect.
func TestActiveDeadline(t *testing.T) {
	f := newFixture(t, 1, withShellGuest(t))
	ctx := context.Background()
	deadline := func(s int64) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = &s }
	}
	running := testPod("long", withCommand("sleep 10"), deadline(3))
	waiting := testPod("queued", deadline(3600))
	if err := f.p.CreatePod(ctx, running); err != nil {
		t.Fatal(err)
	}
	f.waitFor("long", "running", isRunningReady)
	if err := f.p.CreatePod(ctx, waiting); err != nil {
		t.Fatal(err)
	}
	f.waitFor("queued", "waiting for the only VM slot", func(s corev1.PodStatus) bool {
		vm, _ := containerStatus(s, "macos")
		return vm.State.Waiting != nil && vm.State.Waiting.Reason == ReasonWaitingForVMSlot
	})
	exceeded := func(s corev1.PodStatus) bool {
		return s.Phase == corev1.PodFailed && s.Reason == ReasonDeadlineExceeded && s.Message == deadlineMessage
	}
	st := f.waitFor("long", "failed past its deadline", exceeded)
	if term := vmTerminated(st); term == nil || term.ExitCode != 137 || term.Reason != ReasonDeadlineExceeded {
		t.Fatalf("VM container %+v, want stopped (137) for its deadline", term)
	}
	// Its slot went to the queued pod, whose deadline is then shortened.
	f.waitFor("queued", "running in the freed slot", isRunningReady)
	shorter := waiting.DeepCopy()
	one := int64(1)
	shorter.Spec.ActiveDeadlineSeconds = &one
	if err := f.p.UpdatePod(ctx, shorter); err != nil {
		t.Fatal(err)
	}
	f.waitFor("queued", "failed past its shortened deadline", exceeded)
	events := strings.Join(drainEvents(f.events), "\n")
	if !strings.Contains(events, deadlineMessage+"; stopping the VM") {
		t.Fatalf("no DeadlineExceeded event among:\n%s", events)
	}
	for _, p := range []*corev1.Pod{running, waiting} {
		f.deletePod(p, 1)
	}
}
