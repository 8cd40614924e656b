package node

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

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

// Through a port proxy, a TCP probe fails when the proxy accepts the
// connection and hangs up (nothing listens behind it), and passes when the
// connection stays open or brings data; without a proxy, opening it is
// enough.
func TestTCPConnectThroughProxy(t *testing.T) {
	t.Parallel()
	serve := func(handle func(net.Conn)) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go handle(c)
			}
		}()
		return l.Addr().String()
	}
	hangUp := serve(func(c net.Conn) { c.Close() })
	silent := serve(func(c net.Conn) { time.Sleep(time.Second); c.Close() })
	banner := serve(func(c net.Conn) { c.Write([]byte("SSH-2.0\r\n")); c.Close() })
	ctx := context.Background()
	if err := tcpConnect(ctx, hangUp, true); err == nil || !strings.Contains(err.Error(), "port proxy hung up") {
		t.Errorf("proxy hanging up: %v, want a failure saying so", err)
	}
	for name, addr := range map[string]string{"silent server": silent, "banner": banner} {
		if err := tcpConnect(ctx, addr, true); err != nil {
			t.Errorf("%s through a proxy: %v", name, err)
		}
	}
	if err := tcpConnect(ctx, hangUp, false); err != nil {
		t.Errorf("no proxy, connection opened: %v", err)
	}
}
