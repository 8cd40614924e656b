package node

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/test/harness"
)

// When a pod's sandbox dies (the engine restarts it with a new network
// namespace) or is removed, the containers that joined it are killed and
// started anew in the sandbox as it runs, each restart counted: they reach
// each other on localhost again, and their probes find the ports the
// sandbox publishes now, also when it died or was removed while vz-node
// was down. The VM keeps running, and a sidecar of a pod that never
// restarts stays terminated.
func TestSandboxChanged(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	web := webPod()
	grace := *web.Spec.TerminationGracePeriodSeconds
	lone := testPod("lone", withSidecars(corev1.Container{Name: "svc", Command: []string{"sleep", "3600"}}), func(p *corev1.Pod) {
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.TerminationGracePeriodSeconds = &grace
	})
	for _, p := range []*corev1.Pod{web, lone} {
		if err := f.p.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	restarted := func(n int32) func(corev1.PodStatus) bool {
		return func(s corev1.PodStatus) bool {
			w, _ := containerStatus(s, "web")
			c, _ := containerStatus(s, "client")
			var p corev1.ContainerStatus
			if len(s.InitContainerStatuses) == 1 {
				p = s.InitContainerStatuses[0]
			}
			return s.Phase == corev1.PodRunning && w.RestartCount == n && w.Ready && c.RestartCount == n && c.State.Running != nil &&
				p.RestartCount == n && p.State.Running != nil
		}
	}
	fetch := f.fetchWebPage
	sandbox := func(pod *corev1.Pod) sidecar.Container {
		t.Helper()
		ct, err := f.docker.Inspect(ctx, sidecar.SandboxName(pod))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	kill := func(pod *corev1.Pod) {
		t.Helper()
		if err := syscall.Kill(sandbox(pod).State.Pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill the sandbox of %s: %v", pod.Name, err)
		}
	}
	f.waitFor("web", "web ready", restarted(0))
	f.waitFor("lone", "svc running", sidecarRunning("svc"))
	fetch("at first")
	first := sandbox(web)

	// Its process dies: the engine starts the same sandbox again, in a
	// new network namespace.
	kill(web)
	f.waitFor("web", "both containers restarted in the sandbox the engine restarted", restarted(1))
	if again := sandbox(web); again.ID != first.ID || !again.State.StartedAt.After(first.State.StartedAt) {
		t.Fatalf("sandbox after its death: %s started %s, want %s started again after %s", again.ID, again.State.StartedAt, first.ID, first.State.StartedAt)
	}
	fetch("after the sandbox died")

	// Removed: vz-node makes a new one.
	if err := f.docker.Remove(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	f.waitFor("web", "both containers restarted in a new sandbox", restarted(2))
	if again := sandbox(web); again.ID == first.ID {
		t.Fatalf("the removed sandbox %s is still there", first.ID)
	}
	fetch("after the sandbox was removed")

	// It dies while vz-node is down: found when vz-node starts again.
	f.p.Close()
	kill(web)
	f.p = f.newProvider(2)
	f.waitFor("web", "both containers restarted after vz-node's restart", restarted(3))
	fetch("after the sandbox died while vz-node was down")

	// While vz-node is down, the client is stopped by hand (the engine
	// leaves it stopped) and the sandbox is removed: at vz-node's start
	// the client is made again too, in a new sandbox.
	f.p.Close()
	if err := f.docker.Stop(ctx, sidecar.Name(web, "client"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := f.docker.Remove(ctx, sandbox(web).ID); err != nil {
		t.Fatal(err)
	}
	f.p = f.newProvider(2)
	f.waitFor("web", "every container made again after vz-node's restart", restarted(4))
	fetch("after the sandbox was removed and the client stopped while vz-node was down")

	// restartPolicy Never: the sidecar is killed, not started again, and
	// the VM runs on.
	kill(lone)
	st := f.waitFor("lone", "svc killed, not restarted", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "svc")
		return c.State.Terminated != nil
	})
	if c, _ := containerStatus(st, "svc"); c.RestartCount != 0 || st.Phase != corev1.PodRunning {
		t.Fatalf("lone after its sandbox died: phase %s, svc %+v; want Running with svc terminated and not restarted", st.Phase, c)
	}
	if vm, _ := containerStatus(st, "macos"); vm.State.Running == nil || vm.RestartCount != 0 {
		t.Fatalf("the VM after its pod's sandbox died: %+v, want it running on", vm)
	}

	events := strings.Join(drainEvents(f.events), "\n")
	if n := strings.Count(events, "Normal SandboxChanged Pod sandbox changed, it will be killed and re-created."); n != 5 {
		t.Fatalf("%d SandboxChanged events, want 5 (four for web, one for lone):\n%s", n, events)
	}
	if !strings.Contains(events, "Normal Killing Container client exited (code 137) in a pod sandbox that is gone, and the engine did not restart it; it will be re-created") {
		t.Fatalf("no Event for the client stopped in a sandbox that is gone among:\n%s", events)
	}
	for _, p := range []*corev1.Pod{web, lone} {
		f.deletePod(p, grace)
		f.waitNoContainers(string(p.UID))
	}
}

// webPod has a server sidecar, which declares its port and is ready when
// it serves its page, a client sidecar and a native sidecar.
func webPod() *corev1.Pod {
	grace := int64(1)
	return testPod("web", withSidecars(corev1.Container{Name: "web",
		Command: []string{"sh", "-c", "mkdir -p /www && echo ok >/www/index.html && httpd -p 8080 -h /www && exec sleep 3600"},
		Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 2,
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromString("http")}}},
	}, corev1.Container{Name: "client", Command: []string{"sleep", "3600"}}), func(p *corev1.Pod) {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = []corev1.Container{{Name: "proxy", Image: sidecarImage, Command: []string{"sleep", "3600"}, RestartPolicy: &always}}
		p.Spec.TerminationGracePeriodSeconds = &grace
	})
}

// fetchWebPage has webPod's client fetch the server's page over
// localhost.
func (f *fixture) fetchWebPage(when string) {
	f.t.Helper()
	var page bytes.Buffer
	err := f.p.RunInContainer(context.Background(), "default", "web", "client", []string{"wget", "-qO-", "http://127.0.0.1:8080/index.html"}, &testIO{stdout: &page})
	if err != nil || page.String() != "ok\n" {
		f.t.Fatalf("%s: the client fetching the server's page over localhost: %q, %v", when, page.String(), err)
	}
}

// When the engine restarts (as Docker Desktop does on an update), the
// pod's containers run again in its sandbox and vz-node follows their new
// runs, each counted as a restart; the VM is untouched. While the engine
// shuts down, vz-node starts nothing: a container started then would
// outlive the engine, and the next one would kill it without restarting
// it.
func TestSidecarsAfterEngineRestart(t *testing.T) {
	harness.RequireRoot(t)
	engine := harness.DockerWithImageT(t, sidecarImage)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dockerd log:\n%s", engine.LogTail(200))
		}
	})
	client, err := sidecar.New(engine.Host)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, 2, func(f *fixture) { f.docker = client })
	ctx := context.Background()
	web := webPod()
	if err := f.p.CreatePod(ctx, web); err != nil {
		t.Fatal(err)
	}
	before := f.waitFor("web", "web ready", sidecarRunning("web"))
	f.fetchWebPage("before the engine restarted")

	restarted := time.Now().Truncate(time.Second)
	if err := engine.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	after := f.waitFor("web", "every container running again after the engine restarted", func(s corev1.PodStatus) bool {
		for _, c := range append(s.ContainerStatuses[1:], s.InitContainerStatuses...) {
			if c.State.Running == nil || c.State.Running.StartedAt.Time.Before(restarted) || c.Name == "web" && !c.Ready {
				return false
			}
		}
		return len(s.ContainerStatuses) == 3 && len(s.InitContainerStatuses) == 1
	})
	f.fetchWebPage("after the engine restarted")
	for _, c := range append(after.ContainerStatuses[1:], after.InitContainerStatuses...) {
		// Docker counts from zero after a start of its own; the count
		// goes on.
		if c.RestartCount < 1 {
			t.Errorf("%s after the engine restarted: restartCount %d, want at least 1", c.Name, c.RestartCount)
		}
	}
	vmBefore, _ := containerStatus(before, "macos")
	if vm, _ := containerStatus(after, "macos"); vm.State.Running == nil || !vm.State.Running.StartedAt.Equal(&vmBefore.State.Running.StartedAt) || vm.RestartCount != 0 {
		t.Fatalf("the VM after the engine restarted: %+v, want it running on since %s", vm, vmBefore.State.Running.StartedAt)
	}
	// Nothing was started on the engine while it shut down, where the
	// starts would have failed or been killed.
	if events := strings.Join(drainEvents(f.events), "\n"); strings.Contains(events, "Warning Failed") {
		t.Errorf("failures around the engine restart:\n%s", events)
	}
	f.deletePod(web, *web.Spec.TerminationGracePeriodSeconds)
	f.waitNoContainers(string(web.UID))
}

// A sidecar stopped by hand (docker stop), which Docker's restart policy
// leaves stopped, is started again as the kubelet would, its restart
// counted; the sandbox, still running, tells this from an engine shutting
// down.
func TestSidecarStoppedByHand(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	grace := int64(1)
	pod := testPod("stopped", withSidecars(corev1.Container{Name: "svc", Command: []string{"sleep", "3600"}}), func(p *corev1.Pod) {
		p.Spec.TerminationGracePeriodSeconds = &grace
	})
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.waitFor("stopped", "svc running", sidecarRunning("svc"))
	stopped := time.Now().Truncate(time.Second)
	if err := f.docker.Stop(ctx, sidecar.Name(pod, "svc"), time.Second); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("stopped", "svc started again", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "svc")
		return c.State.Running != nil && !c.State.Running.StartedAt.Time.Before(stopped) && c.RestartCount == 1
	})
	if c, _ := containerStatus(st, "svc"); c.LastTerminationState.Terminated == nil || c.LastTerminationState.Terminated.ExitCode != 137 {
		t.Errorf("svc after its restart: last state %+v, want the run stopped by hand (137)", c.LastTerminationState)
	}
	if events := strings.Join(drainEvents(f.events), "\n"); !strings.Contains(events, "Started container svc again: it exited (code 137) and the engine did not restart it") {
		t.Fatalf("no Event for vz-node's start of svc among:\n%s", events)
	}
	f.deletePod(pod, grace)
	f.waitNoContainers(string(pod.UID))
}

// A sidecar's gRPC probe reaches its health service where the sandbox
// publishes the probe's port: ready while it answers SERVING, unready on
// NOT_SERVING, with the kubelet's reason in the Event.
func TestSidecarGRPCProbe(t *testing.T) {
	harness.RequireRoot(t)
	engine := harness.DockerWithImageT(t, sidecarImage)
	ctx := context.Background()
	const image = "vzfleet-test/grpchealth:1"
	if err := engine.GRPCHealthImage(ctx, image); err != nil {
		t.Fatal(err)
	}
	client, err := sidecar.New(engine.Host)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, 2, func(f *fixture) { f.docker = client })
	pod := testPod("grpc", withSidecars(corev1.Container{Name: "api", Image: image,
		Command: []string{"grpchealthd", "-port", "9000", "-down", "/tmp/down"},
		ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 2,
			ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}},
	}))
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.waitFor("grpc", "api ready by its gRPC probe", sidecarRunning("api"))
	run := f.runner("grpc", "api")
	run("touch", "/tmp/down")
	f.waitFor("grpc", "api unready on NOT_SERVING", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "api")
		return c.State.Running != nil && !c.Ready
	})
	run("rm", "/tmp/down")
	f.waitFor("grpc", "api ready again", sidecarRunning("api"))
	f.deletePod(pod, 1)
	f.waitNoContainers(string(pod.UID))
	if events := strings.Join(drainEvents(f.events), "\n"); !strings.Contains(events, `Readiness probe of sidecar api failed: gRPC probe of 127.0.0.1:`) ||
		!strings.Contains(events, `service "" is unhealthy (responded with NOT_SERVING)`) {
		t.Fatalf("no Event for the failed gRPC probe among:\n%s", events)
	}
}

func TestInSandbox(t *testing.T) {
	t.Parallel()
	at := func(id, mode string, started time.Time) sidecar.Container {
		var ct sidecar.Container
		ct.ID, ct.HostConfig.NetworkMode, ct.State.StartedAt = id, mode, started
		return ct
	}
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	sb := at("sb1", "default", t0)
	for _, tc := range []struct {
		name string
		ct   sidecar.Container
		in   bool
		id   string
	}{
		{"joined after the sandbox started", at("c", "container:sb1", t0.Add(time.Second)), true, "sb1"},
		{"joined before the sandbox started again", at("c", "container:sb1", t0.Add(-time.Second)), false, "sb1"},
		{"joined a sandbox that is gone", at("c", "container:sb0", t0.Add(time.Second)), false, "sb0"},
		{"a network of its own", at("c", "default", t0.Add(time.Second)), false, ""},
		{"a bridge network", at("c", "bridge", t0.Add(time.Second)), false, ""},
	} {
		if got := inSandbox(tc.ct, sb); got != tc.in {
			t.Errorf("%s: inSandbox %v, want %v", tc.name, got, tc.in)
		}
		if got := sandboxID(tc.ct); got != tc.id {
			t.Errorf("%s: sandboxID %q, want %q", tc.name, got, tc.id)
		}
	}
}

func TestRestartDeclined(t *testing.T) {
	t.Parallel()
	always := corev1.ContainerRestartPolicyAlways
	pod := func(policy corev1.RestartPolicy) *corev1.Pod {
		return testPod("p", withSidecars(corev1.Container{Name: "svc"}), func(p *corev1.Pod) {
			p.Spec.RestartPolicy = policy
			p.Spec.InitContainers = []corev1.Container{{Name: "native", RestartPolicy: &always}, {Name: "setup"}}
		})
	}
	exited := func(code int) sidecar.Container {
		var ct sidecar.Container
		ct.State.Status, ct.State.ExitCode = "exited", code
		return ct
	}
	restarting := exited(1)
	restarting.State.Restarting = true
	running := exited(0)
	running.State.Status, running.State.Running = "running", true
	for _, tc := range []struct {
		name   string
		policy corev1.RestartPolicy
		c      string
		ct     sidecar.Container
		want   bool
	}{
		{"Always, completed", corev1.RestartPolicyAlways, "svc", exited(0), true},
		{"default policy, failed", "", "svc", exited(137), true},
		{"OnFailure, failed", corev1.RestartPolicyOnFailure, "svc", exited(2), true},
		{"OnFailure, completed", corev1.RestartPolicyOnFailure, "svc", exited(0), false},
		{"Never, failed", corev1.RestartPolicyNever, "svc", exited(1), false},
		{"Never, a native sidecar", corev1.RestartPolicyNever, "native", exited(0), true},
		{"an init container, which vz-node runs", corev1.RestartPolicyAlways, "setup", exited(1), false},
		{"the engine is restarting it", corev1.RestartPolicyAlways, "svc", restarting, false},
		{"running", corev1.RestartPolicyAlways, "svc", running, false},
	} {
		p := pod(tc.policy)
		var c corev1.Container
		for _, cc := range dockerContainers(p) {
			if cc.Name == tc.c {
				c = cc
			}
		}
		if got := restartDeclined(p, c, tc.ct); got != tc.want {
			t.Errorf("%s: restartDeclined %v, want %v", tc.name, got, tc.want)
		}
	}
}
