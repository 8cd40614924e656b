package node

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func (g *fakeGuest) setExit(code int) {
	g.mu.Lock()
	g.exitCode = code
	g.mu.Unlock()
}

func execProbe(failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}},
		PeriodSeconds:    1,
		FailureThreshold: failures,
	}
}

// The readiness probe gates Ready; a failing liveness probe restarts the VM.
func TestProbes(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	f.guest.setExit(1)
	pod := testPod("probed", func(p *corev1.Pod) { p.Spec.Containers[0].ReadinessProbe = execProbe(1) })
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.waitFor("probed", "Running but not Ready", func(s corev1.PodStatus) bool {
		return s.Phase == corev1.PodRunning && s.PodIP != "" && !s.ContainerStatuses[0].Ready
	})
	f.guest.setExit(0)
	f.waitFor("probed", "Ready once the probe passes", isRunningReady)

	f.guest.setExit(1)
	live := testPod("live", func(p *corev1.Pod) { p.Spec.Containers[0].LivenessProbe = execProbe(1) })
	if err := f.p.CreatePod(ctx, live); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("live", "restarted after failing its liveness probe", func(s corev1.PodStatus) bool {
		return len(s.ContainerStatuses) == 1 && s.ContainerStatuses[0].RestartCount >= 1
	})
	if term := st.ContainerStatuses[0].LastTerminationState.Terminated; term == nil || term.ExitCode != 137 {
		t.Fatalf("last termination %+v, want exit code 137 (killed)", term)
	}
}
