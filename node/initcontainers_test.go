package node

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

func initStatus(s corev1.PodStatus, name string) (corev1.ContainerStatus, bool) {
	for _, c := range s.InitContainerStatuses {
		if c.Name == name {
			return c, true
		}
	}
	return corev1.ContainerStatus{}, false
}

func podCondition(s corev1.PodStatus, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// withInit gives the pod init containers (busybox) and an emptyDir
// "work" that they, its sidecars and its VM mount.
func withInit(cs ...corev1.Container) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := range cs {
			cs[i].Image, cs[i].ImagePullPolicy = sidecarImage, corev1.PullIfNotPresent
			cs[i].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
		}
		p.Spec.InitContainers = cs
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	}
}

func sh(name, script string) corev1.Container {
	return corev1.Container{Name: name, Command: []string{"sh", "-c", script}}
}

// Init containers run in Docker one after the other, to completion, before
// the sidecars start and the VM boots; their output stays readable; a
// failed one runs again after a back-off, or fails the pod under
// restartPolicy Never.
func TestInitContainers(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	pod := testPod("ci", withInit(
		sh("fetch", `echo fetched; echo source > /work/a`),
		sh("build", `test -f /work/a && cat /work/a > /work/b && echo built`),
	), withSidecars(corev1.Container{Name: "agent", Command: []string{"sh", "-c", "cat /work/b; exec sleep 3600"},
		VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}}))
	flaky := testPod("flaky", withInit(sh("once", `test -f /work/failed && exit 0; : > /work/failed; echo failing; exit 3`)),
		func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure })
	broken := testPod("broken", withInit(sh("setup", "exit 5")), withSidecars(corev1.Container{Name: "agent", Command: []string{"sleep", "3600"}}),
		func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever })
	for _, p := range []*corev1.Pod{pod, flaky, broken} {
		if err := f.p.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	st := f.waitFor("ci", "running after both init containers", isRunningReadyWith(1))
	for _, name := range []string{"fetch", "build"} {
		c, _ := initStatus(st, name)
		if term := c.State.Terminated; term == nil || term.ExitCode != 0 || term.Reason != "Completed" || !c.Ready || !strings.HasPrefix(c.ContainerID, "docker://") {
			t.Fatalf("init container %s: %+v, want completed and ready", name, c)
		}
	}
	build, _ := initStatus(st, "build")
	if vm, _ := containerStatus(st, "macos"); vm.State.Running.StartedAt.Before(&build.State.Terminated.FinishedAt) {
		t.Fatalf("the VM started at %s, before the last init container ended at %s", vm.State.Running.StartedAt, build.State.Terminated.FinishedAt)
	}
	if podCondition(st, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Fatalf("conditions %+v, want Initialized", st.Conditions)
	}
	// The sidecar started after them: it read what they wrote.
	var out bytes.Buffer
	if err := f.p.RunInContainer(ctx, "default", "ci", "agent", []string{"cat", "/work/b"}, &testIO{stdout: &out}); err != nil || out.String() != "source\n" {
		t.Fatalf("the sidecar reads %q (%v), want the init containers' file", out.String(), err)
	}
	rc, err := f.p.GetContainerLogs(ctx, "default", "ci", "fetch", api.ContainerLogOpts{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "fetched\n" {
		t.Fatalf("logs of init container fetch: %q", b)
	}

	st = f.waitFor("flaky", "running after its init container's second run", isRunningReadyWith(0))
	once, _ := initStatus(st, "once")
	if last := once.LastTerminationState.Terminated; once.RestartCount != 1 || last == nil || last.ExitCode != 3 || !completed(once) {
		t.Fatalf("init container once: %+v, want completed after one restart, its failed run (3) as the last state", once)
	}

	st = f.waitFor("broken", "failed by its init container", func(s corev1.PodStatus) bool { return s.Phase == corev1.PodFailed })
	setup, _ := initStatus(st, "setup")
	vm, _ := containerStatus(st, "macos")
	if term := setup.State.Terminated; term == nil || term.ExitCode != 5 || setup.RestartCount != 0 || vm.State.Waiting == nil || vm.State.Waiting.Reason != reasonPodInitializing {
		t.Fatalf("broken pod: init %+v, VM %+v; want the init container failed (5) once and the VM never started", setup, vm)
	}
	var names []string
	for _, ct := range f.podContainers("uid-broken") {
		names = append(names, ct.Labels[sidecar.LabelContainer]+ct.Labels[sidecar.LabelSandbox])
	}
	if slices.Sort(names); !slices.Equal(names, []string{"setup", "true"}) {
		t.Fatalf("containers of the broken pod %q, want only its init container (no sidecar) and the sandbox", names)
	}
	events := strings.Join(drainEvents(f.events), "\n")
	for _, want := range []string{"Started init container fetch", "Back-off 1s restarting failed init container once (exit code 3)", "Init container setup exited with code 5 and the pod's restartPolicy is Never"} {
		if !strings.Contains(events, want) {
			t.Fatalf("no event %q among:\n%s", want, events)
		}
	}
	for _, p := range []*corev1.Pod{pod, flaky, broken} {
		f.deletePod(p, 1)
		f.waitNoContainers(string(p.UID))
	}
}

// An init container that runs when vz-node restarts is followed on to its
// end; one that runs when its pod is deleted is stopped and removed.
func TestInitContainerAcrossRestartAndDelete(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	wait := sh("wait", `echo waiting; while [ ! -f /tmp/go ]; do sleep 0.1; done`)
	pod := testPod("slow", withInit(wait))
	gone := testPod("gone", withInit(wait))
	for _, p := range []*corev1.Pod{pod, gone} {
		if err := f.p.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	initializing := func(s corev1.PodStatus) bool {
		c, _ := initStatus(s, "wait")
		vm, _ := containerStatus(s, "macos")
		return c.State.Running != nil && s.Phase == corev1.PodPending && podCondition(s, corev1.PodInitialized) == corev1.ConditionFalse &&
			vm.State.Waiting != nil && vm.State.Waiting.Reason == reasonPodInitializing
	}
	before := f.waitFor("slow", "its init container running, the VM waiting for it", initializing)
	f.waitFor("gone", "its init container running", initializing)

	f.p.Close()
	f.p = f.newProvider(2)
	f.waitFor("slow", "its init container followed again", initializing)
	if err := f.p.RunInContainer(ctx, "default", "slow", "wait", []string{"touch", "/tmp/go"}, &testIO{}); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("slow", "running once its init container completed", isRunningReadyWith(0))
	c, _ := initStatus(st, "wait")
	b, _ := initStatus(before, "wait")
	if c.ContainerID != b.ContainerID || c.RestartCount != 0 || !completed(c) {
		t.Fatalf("init container after the restart %+v, want the same container completed, not run again (was %s)", c, b.ContainerID)
	}

	f.deletePod(gone, 1)
	f.waitNoContainers("uid-gone")
	f.deletePod(pod, 1)
	f.waitNoContainers("uid-slow")
}

// isRunningReadyWith: the VM runs and is ready, with n sidecars ready.
func isRunningReadyWith(n int) func(corev1.PodStatus) bool {
	return func(s corev1.PodStatus) bool {
		if s.Phase != corev1.PodRunning || len(s.ContainerStatuses) != n+1 {
			return false
		}
		for _, c := range s.ContainerStatuses {
			if !c.Ready {
				return false
			}
		}
		return true
	}
}

// A native sidecar (an init container with restartPolicy Always) starts in
// the init containers' order, and the next one waits until its startup
// probe passes; it then runs beside the VM, restarts whatever the pod's
// restartPolicy, and its readiness is the pod's.
func TestNativeSidecar(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	always := corev1.ContainerRestartPolicyAlways
	proxy := sh("proxy", `sleep 1; touch /work/proxy-up; echo proxy up; while [ ! -f /work/crash ]; do sleep 0.1; done; rm /work/crash; exit 7`)
	proxy.RestartPolicy = &always
	proxy.StartupProbe = &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/work/proxy-up"}}}}
	proxy.ReadinessProbe = &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "!", "-f", "/work/unready"}}}}
	pod := testPod("native", withInit(proxy, sh("fetch", `test -f /work/proxy-up && echo fetched`)),
		withSidecars(corev1.Container{Name: "agent", Command: []string{"sleep", "3600"}}),
		func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever })
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	ready := func(s corev1.PodStatus) bool {
		p, _ := initStatus(s, "proxy")
		return isRunningReadyWith(1)(s) && p.Ready && podCondition(s, corev1.ContainersReady) == corev1.ConditionTrue
	}
	st := f.waitFor("native", "running with the proxy ready", ready)
	fetch, _ := initStatus(st, "fetch")
	p, _ := initStatus(st, "proxy")
	if !completed(fetch) || p.State.Running == nil || p.Started == nil || !*p.Started {
		t.Fatalf("init statuses: fetch %+v, proxy %+v; want fetch completed after the proxy started", fetch, p)
	}

	// Its readiness is the pod's.
	if err := f.p.RunInContainer(ctx, "default", "native", "proxy", []string{"touch", "/work/unready"}, &testIO{}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("native", "not ready while the proxy is not", func(s corev1.PodStatus) bool {
		return podCondition(s, corev1.ContainersReady) == corev1.ConditionFalse && podCondition(s, corev1.PodReady) == corev1.ConditionFalse
	})
	if err := f.p.RunInContainer(ctx, "default", "native", "proxy", []string{"rm", "/work/unready"}, &testIO{}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("native", "ready again", ready)

	// It restarts though the pod's restartPolicy is Never.
	if err := f.p.RunInContainer(ctx, "default", "native", "proxy", []string{"touch", "/work/crash"}, &testIO{}); err != nil {
		t.Fatal(err)
	}
	st = f.waitFor("native", "the proxy restarted after it exited", func(s corev1.PodStatus) bool {
		p, _ := initStatus(s, "proxy")
		last := p.LastTerminationState.Terminated
		return p.RestartCount == 1 && last != nil && last.ExitCode == 7 && p.State.Running != nil
	})
	if st.Phase != corev1.PodRunning {
		t.Fatalf("phase %s after the proxy restarted", st.Phase)
	}
	// Its log is cut into its runs: --previous shows the first.
	rc, err := f.p.GetContainerLogs(ctx, "default", "native", "proxy", api.ContainerLogOpts{Previous: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "proxy up\n" {
		t.Fatalf("logs --previous of the proxy: %q", b)
	}
	f.deletePod(pod, 1)
	f.waitNoContainers("uid-native")
}

// When the pod is deleted, its native sidecars stop last: after the other
// containers, and in reverse order.
func TestNativeSidecarsStopLast(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	out := t.TempDir()
	always := corev1.ContainerRestartPolicyAlways
	// Each records on SIGTERM which of the others had stopped before it.
	stopper := func(name string) corev1.Container {
		c := sh(name, `trap 'ls /out > /out/`+name+`; exit 0' TERM; touch /out/.`+name+`-up; while :; do sleep 0.1; done`)
		c.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
		return c
	}
	first, second := stopper("first"), stopper("second")
	first.RestartPolicy, second.RestartPolicy = &always, &always
	agent := stopper("agent")
	agent.Image, agent.ImagePullPolicy = sidecarImage, corev1.PullIfNotPresent
	pod := testPod("ordered", withInit(first, second), withOutDir(out, agent))
	if err := f.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	f.waitFor("ordered", "running", isRunningReadyWith(1))
	f.deletePod(pod, 10)
	f.waitNoContainers("uid-ordered")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("%s recorded nothing when it stopped: %v", name, err)
		}
		return strings.Join(strings.Fields(string(b)), " ")
	}
	// ls lists what was there when each got SIGTERM (the files of those
	// stopped before it), besides its own file's name.
	if got := read("agent"); got != "agent" {
		t.Errorf("the agent stopped after %q, want first", got)
	}
	if got := read("second"); got != "agent second" {
		t.Errorf("the second native sidecar stopped after %q, want after the agent only", got)
	}
	if got := read("first"); got != "agent first second" {
		t.Errorf("the first native sidecar stopped after %q, want last", got)
	}
}

// withOutDir gives the pod a hostPath volume "out" of dir, mounted at /out
// in its init containers, and appends sidecars (which mount it
// themselves).
func withOutDir(dir string, sidecars ...corev1.Container) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := range p.Spec.InitContainers {
			p.Spec.InitContainers[i].VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
		}
		p.Spec.Containers = append(p.Spec.Containers, sidecars...)
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}}})
	}
}

// However little of the grace period is left, every Docker container gets
// minStopGrace between SIGTERM and SIGKILL, as with the kubelet: here a
// pod deleted with no grace at all, whose sidecars each take a second to
// shut down cleanly, the native one after the other.
func TestSidecarStopMinimumGrace(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	out := t.TempDir()
	always := corev1.ContainerRestartPolicyAlways
	slow := func(name string) corev1.Container {
		c := sh(name, `trap 'sleep 1; touch /out/`+name+`; exit 0' TERM; while :; do sleep 0.1; done`)
		c.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
		return c
	}
	native := slow("native")
	native.RestartPolicy = &always
	agent := slow("agent")
	agent.Image, agent.ImagePullPolicy = sidecarImage, corev1.PullIfNotPresent
	pod := testPod("hasty", withInit(native), withOutDir(out, agent))
	if err := f.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	f.waitFor("hasty", "running", isRunningReadyWith(1))
	f.deletePod(pod, 0)
	f.waitNoContainers("uid-hasty")
	for _, name := range []string{"agent", "native"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("%s was killed before it finished its clean shutdown: %v", name, err)
		}
	}
}
