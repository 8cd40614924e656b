package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"

	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/test/harness"
)

const sidecarImage = "vzfleet-test/busybox:1"

// withDocker gives the fixture a real Docker engine with the busybox image.
func withDocker(t *testing.T) func(*fixture) {
	harness.RequireRoot(t)
	d := harness.DockerWithImageT(t, sidecarImage)
	c, err := sidecar.New(d.Host)
	if err != nil {
		t.Fatal(err)
	}
	return func(f *fixture) { f.docker = c }
}

func withSidecars(cs ...corev1.Container) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := range cs {
			if cs[i].Image == "" {
				cs[i].Image = sidecarImage
			}
			if cs[i].ImagePullPolicy == "" {
				cs[i].ImagePullPolicy = corev1.PullIfNotPresent
			}
		}
		p.Spec.Containers = append(p.Spec.Containers, cs...)
	}
}

func containerStatus(s corev1.PodStatus, name string) (corev1.ContainerStatus, bool) {
	for _, c := range s.ContainerStatuses {
		if c.Name == name {
			return c, true
		}
	}
	return corev1.ContainerStatus{}, false
}

func sidecarRunning(name string) func(corev1.PodStatus) bool {
	return func(s corev1.PodStatus) bool {
		c, ok := containerStatus(s, name)
		return ok && c.State.Running != nil && c.Ready
	}
}

func (f *fixture) podContainers(uid string) []sidecar.Summary {
	f.t.Helper()
	cts, err := f.docker.List(context.Background(), map[string]string{sidecar.LabelPodUID: uid})
	if err != nil {
		f.t.Fatal(err)
	}
	return cts
}

// A pod's containers after the VM run in Docker beside it: their status is
// pushed from Docker's events, Docker restarts them under the pod's policy,
// exec and logs reach them, vz-node re-adopts them after a restart and
// recreates one removed behind its back, and deleting the pod removes them.
func TestSidecarsRunBesideTheVM(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	pod := testPod("hybrid", withSidecars(
		corev1.Container{Name: "agent", Command: []string{"sh", "-c", `echo "agent of $POD on $NODE"; trap 'echo bye; exit 0' TERM; while true; do sleep 1; done`},
			Env: []corev1.EnvVar{
				{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			}},
		corev1.Container{Name: "flaky", Command: []string{"sh", "-c", "sleep 0.3; exit 4"}},
	), func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
		p.Spec.Containers[1].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/scratch/ready"}}}}
	})
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// The agent runs, but its readiness probe fails until /scratch/ready
	// exists.
	f.waitFor("hybrid", "the VM ready and the agent running, not ready", func(s corev1.PodStatus) bool {
		vm, _ := containerStatus(s, "macos")
		a, _ := containerStatus(s, "agent")
		return vm.Ready && a.State.Running != nil && !a.Ready
	})
	if err := f.p.RunInContainer(ctx, "default", "hybrid", "agent", []string{"sh", "-c", ": > /scratch/ready"}, &testIO{}); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("hybrid", "the agent ready once its probe passes", sidecarRunning("agent"))
	if len(st.ContainerStatuses) != 3 || st.ContainerStatuses[1].Name != "agent" || st.ContainerStatuses[2].Name != "flaky" {
		t.Fatalf("container statuses %+v, want macos, agent, flaky in order", st.ContainerStatuses)
	}
	agent, _ := containerStatus(st, "agent")
	if !strings.HasPrefix(agent.ContainerID, "docker://") {
		t.Fatalf("agent container ID %q", agent.ContainerID)
	}

	// Docker restarts the failing sidecar; its exits reach the status
	// through the event stream, with the exit code of the last run.
	f.waitFor("hybrid", "flaky restarted with its exit code kept", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "flaky")
		last := c.LastTerminationState.Terminated
		return c.RestartCount >= 2 && last != nil && last.ExitCode == 4
	})
	notReady := f.waitFor("hybrid", "not ready while flaky is down", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "flaky")
		return !c.Ready
	})
	for _, c := range notReady.Conditions {
		if c.Type == corev1.ContainersReady && c.Status != corev1.ConditionFalse {
			t.Fatalf("ContainersReady %s while a sidecar is down", c.Status)
		}
	}

	// Logs and exec go to Docker.
	var logs string
	for range 100 {
		rc, err := f.p.GetContainerLogs(ctx, "default", "hybrid", "agent", api.ContainerLogOpts{})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if logs = string(b); logs != "" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if logs != "agent of hybrid on mac-1\n" {
		t.Fatalf("agent logs %q", logs)
	}
	var out strings.Builder
	err := f.p.RunInContainer(ctx, "default", "hybrid", "agent", []string{"sh", "-c", "echo in-agent; exit 3"}, &testIO{stdout: &out})
	var code interface{ ExitStatus() int }
	if !asExit(err, &code) || code.ExitStatus() != 3 || !strings.Contains(out.String(), "in-agent") {
		t.Fatalf("exec in the sidecar: err %v, output %q", err, out.String())
	}
	// The emptyDir is a directory of the pod's on the host.
	if err := f.p.RunInContainer(ctx, "default", "hybrid", "agent", []string{"sh", "-c", "echo shared > /scratch/f"}, &testIO{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.p.volumeDir(pod.UID), "scratch", "f")); err != nil || string(b) != "shared\n" {
		t.Fatalf("file written in the sidecar's emptyDir, on the host: %q %v", b, err)
	}

	// Stats count the sidecar beside the VM, as Docker measures it.
	sum, err := f.p.GetStatsSummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ps := range sum.Pods {
		for _, c := range ps.Containers {
			names = append(names, c.Name)
			if c.Name == "agent" && (c.Memory == nil || c.Memory.WorkingSetBytes == nil || *c.Memory.WorkingSetBytes == 0 || c.CPU.UsageCoreNanoSeconds == nil || *c.CPU.UsageCoreNanoSeconds == 0) {
				t.Fatalf("agent stats %+v %+v", c.CPU, c.Memory)
			}
		}
	}
	if !slices.Contains(names, "agent") || !slices.Contains(names, "macos") {
		t.Fatalf("stats for containers %v, want macos and agent", names)
	}

	// vz-node restarts: the sidecar keeps running and is followed again.
	f.p.Close()
	f.p = f.newProvider(2)
	after := f.waitFor("hybrid", "re-adopted with the agent running", sidecarRunning("agent"))
	if a, _ := containerStatus(after, "agent"); a.ContainerID != agent.ContainerID || a.RestartCount != 0 {
		t.Fatalf("agent after vz-node's restart %+v, want the same container %s not restarted", a, agent.ContainerID)
	}

	// A sidecar removed behind vz-node's back is created again, and the
	// new container counts as a restart.
	if out, err := exec.Command("docker", "--host", f.docker.Host(), "rm", "-f", sidecar.Name(pod, "agent")).CombinedOutput(); err != nil {
		t.Fatalf("docker rm: %v\n%s", err, out)
	}
	f.waitFor("hybrid", "the agent recreated, its restart counted", func(s corev1.PodStatus) bool {
		a, _ := containerStatus(s, "agent")
		return a.Ready && a.ContainerID != agent.ContainerID && a.RestartCount == 1
	})

	// Delete: every container of the pod goes.
	f.deletePod(pod, 5)
	f.waitNoContainers("uid-hybrid")
}

// runner returns a function that runs a command in container of pod name
// and fails the test unless it exits 0.
func (f *fixture) runner(name, container string) func(argv ...string) {
	return func(argv ...string) {
		f.t.Helper()
		if err := f.p.RunInContainer(context.Background(), "default", name, container, argv, &testIO{}); err != nil {
			f.t.Fatalf("%s in %s/%s: %v", argv, name, container, err)
		}
	}
}

// forward sends request through a port-forward to port of pod name and
// returns all it answers until the forward ends.
func (f *fixture) forward(name string, port int32, request string) (string, error) {
	local, remote := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- f.p.PortForward(context.Background(), "default", name, port, remote) }()
	go func() { _, _ = io.WriteString(local, request) }()
	answer, _ := io.ReadAll(local)
	local.Close()
	return string(answer), <-done
}

// waitNoContainers waits until the pod with uid has no Docker container.
func (f *fixture) waitNoContainers(uid string) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for left := f.podContainers(uid); len(left) != 0; left = f.podContainers(uid) {
		if time.Now().After(deadline) {
			f.t.Fatalf("containers left after the pod was deleted: %+v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A sidecar whose liveness probe fails is killed within the probe's grace
// period and, unless the pod's restartPolicy is Never, started again, as
// the kubelet does; the restart counts in its status, on top of those
// Docker made (which counts from zero again after vz-node's), also after
// vz-node restarts.
func TestSidecarLivenessProbe(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	grace := int64(1)
	svc := func(script string) corev1.Container {
		return corev1.Container{Name: "svc", Command: []string{"sh", "-c", script + "touch /tmp/alive; exec sleep 3600"},
			LivenessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2, TerminationGracePeriodSeconds: &grace,
				ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/alive"}}}}}
	}
	// The first run of live's svc fails, and Docker restarts it.
	always := testPod("live", withSidecars(svc("test -f /tmp/crashed || { touch /tmp/crashed; exit 3; }; ")))
	never := testPod("once", withSidecars(svc("")), func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever })
	for _, p := range []*corev1.Pod{always, never} {
		if err := f.p.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	first := map[string]corev1.ContainerStatus{}
	for _, name := range []string{"live", "once"} {
		st := f.waitFor(name, "svc running", func(s corev1.PodStatus) bool {
			c, _ := containerStatus(s, "svc")
			return sidecarRunning("svc")(s) && c.RestartCount == map[string]int32{"live": 1}[name]
		})
		first[name], _ = containerStatus(st, "svc")
		// sleep, as PID 1, ignores SIGTERM: the kill takes the grace period.
		if err := f.p.RunInContainer(ctx, "default", name, "svc", []string{"rm", "/tmp/alive"}, &testIO{}); err != nil {
			t.Fatal(err)
		}
	}

	st := f.waitFor("live", "svc restarted after its failed liveness probe", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "svc")
		return c.RestartCount == 2 && c.Ready && c.State.Running != nil
	})
	c, _ := containerStatus(st, "svc")
	last := c.LastTerminationState.Terminated
	if last == nil || last.ExitCode != 137 || c.ContainerID != first["live"].ContainerID || !c.State.Running.StartedAt.After(first["live"].State.Running.StartedAt.Time) {
		t.Fatalf("svc after its restart %+v\nwant the same container running anew, its last run killed (137)", c)
	}
	st = f.waitFor("once", "svc killed and not restarted (restartPolicy Never)", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "svc")
		return c.State.Terminated != nil
	})
	if c, _ := containerStatus(st, "svc"); c.State.Terminated.ExitCode != 137 || c.RestartCount != 0 {
		t.Fatalf("svc of the Never pod %+v, want killed (137) and not restarted", c)
	}
	events := strings.Join(drainEvents(f.events), "\n")
	for _, want := range []string{"Liveness probe of sidecar svc failed", "Container svc failed liveness probe, will be restarted", "Container svc failed liveness probe\n"} {
		if !strings.Contains(events+"\n", want) {
			t.Fatalf("no event %q among:\n%s", want, events)
		}
	}

	// After vz-node restarts, the count stands and the probe runs again.
	f.p.Close()
	f.p = f.newProvider(2)
	f.waitFor("live", "re-adopted, svc restarted twice", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "svc")
		return c.RestartCount == 2 && c.Ready
	})
	if err := f.p.RunInContainer(ctx, "default", "live", "svc", []string{"rm", "/tmp/alive"}, &testIO{}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("live", "svc restarted a third time", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "svc")
		return c.RestartCount == 3 && c.Ready
	})

	for _, p := range []*corev1.Pod{always, never} {
		f.deletePod(p, grace)
		f.waitNoContainers(string(p.UID))
	}
}

// A sidecar's httpGet and tcpSocket probes reach it where Docker publishes
// its ports (through the pod's sandbox) on the loopback interface, its
// hostPort is published on the host, its httpGet preStop hook reaches it
// too, and the pod's other containers reach it on localhost.
func TestSidecarNetworkProbes(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	hostPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	grace := int64(1)
	web := testPod("web", withSidecars(corev1.Container{Name: "web",
		// httpd runs in the background, so the liveness probe can find
		// it gone while the container still runs.
		Command: []string{"sh", "-c", "mkdir -p /www && echo ok >/www/index.html && httpd -p 8080 -h /www && exec sleep 3600"},
		Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, HostPort: int32(hostPort)}},
		ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 5,
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromString("http")}}},
		LivenessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2, TimeoutSeconds: 5, TerminationGracePeriodSeconds: &grace,
			ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/gone", Port: intstr.FromInt32(8080)}}},
	}, corev1.Container{Name: "client", Command: []string{"sleep", "3600"}}))
	if err := f.p.CreatePod(ctx, web); err != nil {
		t.Fatal(err)
	}
	f.waitFor("web", "web ready by its HTTP probe", sidecarRunning("web"))
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort))
	if err != nil {
		t.Fatalf("hostPort %d: %v", hostPort, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" {
		t.Fatalf("hostPort %d answered %s %q, want the sidecar's page", hostPort, resp.Status, body)
	}

	// kubectl port-forward to the declared port reaches the sidecar, not
	// the VM.
	if got, err := f.forward("web", 8080, "GET /index.html HTTP/1.0\r\n\r\n"); err != nil || !strings.HasSuffix(got, "\r\n\r\nok\n") {
		t.Fatalf("port-forward to port 8080: %q, %v; want the sidecar's page", got, err)
	}

	// A 404 makes it unready, and the page back makes it ready again.
	run := f.runner("web", "web")
	run("rm", "/www/index.html")
	f.waitFor("web", "web unready", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "web")
		return c.State.Running != nil && !c.Ready
	})
	run("sh", "-c", "echo ok >/www/index.html")
	f.waitFor("web", "web ready again", sidecarRunning("web"))

	// The pod's containers share its sandbox's network: the client
	// reaches the server on localhost.
	var page bytes.Buffer
	if err := f.p.RunInContainer(ctx, "default", "web", "client", []string{"wget", "-qO-", "http://127.0.0.1:8080/index.html"}, &testIO{stdout: &page}); err != nil || page.String() != "ok\n" {
		t.Fatalf("the client fetching the server's page over localhost: %q, %v", page.String(), err)
	}

	// With httpd gone, the TCP liveness probe fails and the container
	// runs anew, httpd with it.
	run("killall", "httpd")
	f.waitFor("web", "web restarted after its failed liveness probe", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "web")
		return c.RestartCount == 1 && c.Ready
	})

	f.deletePod(web, grace)
	f.waitNoContainers(string(web.UID))
	events := strings.Join(drainEvents(f.events), "\n")
	for _, want := range []string{
		"Readiness probe of sidecar web failed: HTTP probe http://127.0.0.1:",
		"Liveness probe of sidecar web failed: dial tcp 127.0.0.1:", "the port proxy hung up",
		"PreStop hook of sidecar web failed: HTTP probe http://127.0.0.1:",
	} {
		if !strings.Contains(events, want) {
			t.Fatalf("no event %q among:\n%s", want, events)
		}
	}
	if !strings.Contains(events, "/gone answered 404") {
		t.Fatalf("the preStop hook did not reach the sidecar's server:\n%s", events)
	}
}

// A sidecar's postStart hook runs once per run of its container (not again
// when vz-node restarts); a failing one kills the run, which starts again
// after a back-off unless restartPolicy is Never; the preStop hook runs
// before the sidecar is stopped.
func TestSidecarLifecycleHooks(t *testing.T) {
	base := hookBackoffBase
	hookBackoffBase = time.Second
	t.Cleanup(func() { hookBackoffBase = base })
	f := newFixture(t, 2, withDocker(t), func(f *fixture) { f.objects = &lateObjects{arrived: true} })
	ctx := context.Background()
	execHook := func(script string) *corev1.LifecycleHandler {
		return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", script}}}
	}
	// The hooks and the TERM handler leave marks in an emptyDir, and copy
	// them to a host directory that outlives the pod: the emptyDir stays
	// while the sidecar stops, though the VM stopped long before.
	host := t.TempDir()
	hooked := testPod("hooked", withSidecars(corev1.Container{Name: "svc",
		Command:      []string{"sh", "-c", "trap 'cp /marks/post /host/post-at-stop; exit 0' TERM; while true; do sleep 0.2; done"},
		VolumeMounts: []corev1.VolumeMount{{Name: "marks", MountPath: "/marks"}, {Name: "host", MountPath: "/host"}},
		Lifecycle: &corev1.Lifecycle{
			PostStart: execHook("echo started >> /marks/post"),
			PreStop:   execHook("sleep 1; echo stopping > /marks/pre && cp /marks/pre /host/pre"),
		}}), func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{
			{Name: "marks", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host}}},
		}
	})
	failing := func(name string, policy corev1.RestartPolicy) *corev1.Pod {
		return testPod(name, withSidecars(corev1.Container{Name: "svc", Command: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"},
			Lifecycle: &corev1.Lifecycle{PostStart: execHook("exit 7")}}), func(p *corev1.Pod) { p.Spec.RestartPolicy = policy })
	}
	retried, never := failing("retried", corev1.RestartPolicyAlways), failing("never", corev1.RestartPolicyNever)
	for _, p := range []*corev1.Pod{hooked, retried, never} {
		if err := f.p.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	marks := filepath.Join(f.p.volumeDir(hooked.UID), "marks")
	waitFile := func(path, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, err := os.ReadFile(path)
			if err == nil && string(b) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %q (%v), want %q", path, b, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	f.waitFor("hooked", "svc running", sidecarRunning("svc"))
	waitFile(filepath.Join(marks, "post"), "started\n")

	f.waitFor("never", "svc killed after its hook failed, not restarted", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "svc")
		return c.State.Terminated != nil && c.RestartCount == 0
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := f.p.GetPodStatus(ctx, "default", "retried")
		c, _ := containerStatus(*st, "svc")
		if err == nil && c.RestartCount >= 2 && c.LastTerminationState.Terminated != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("svc whose postStart hook fails: %+v, want it started again twice after back-off", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	events := strings.Join(drainEvents(f.events), "\n")
	for _, want := range []string{"PostStart hook of sidecar svc failed: command", "exited with 7", "Container svc failed its postStart hook, will be restarted", "Container svc failed its postStart hook\n"} {
		if !strings.Contains(events+"\n", want) {
			t.Fatalf("no event %q among:\n%s", want, events)
		}
	}

	// After vz-node restarts, the hook of the run it already ran is not
	// run again.
	f.p.Close()
	f.p = f.newProvider(2)
	f.waitFor("hooked", "re-adopted", sidecarRunning("svc"))
	time.Sleep(time.Second)
	waitFile(filepath.Join(marks, "post"), "started\n")

	for _, p := range []*corev1.Pod{retried, never} {
		f.deletePod(p, 1)
		f.waitNoContainers(string(p.UID))
	}
	f.deletePod(hooked, 5)
	f.waitNoContainers(string(hooked.UID))
	waitFile(filepath.Join(host, "pre"), "stopping\n")
	waitFile(filepath.Join(host, "post-at-stop"), "started\n")
	if events := strings.Join(drainEvents(f.events), "\n"); strings.Contains(events, "FailedPreStopHook") {
		t.Fatalf("the preStop hook failed:\n%s", events)
	}
	released := filepath.Join(f.p.releasedVolumes(), string(hooked.UID))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := os.Stat(released)
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod's volumes are left after its sidecars were removed: %v", err)
		}
	}
}

// A sidecar mounts one file or directory of a volume vz-node writes with
// subPath or subPathExpr; one naming what the volume lacks waits with
// CreateContainerConfigError, as with the kubelet.
func TestSidecarSubPath(t *testing.T) {
	f := newFixture(t, 2, withDocker(t), func(f *fixture) { f.objects = &lateObjects{arrived: true} })
	ctx := context.Background()
	pod := testPod("sub", withSidecars(
		corev1.Container{Name: "tool", Command: []string{"sleep", "3600"},
			Env: []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "settings", MountPath: "/etc/tool/level.conf", SubPath: "level"},
				{Name: "meta", MountPath: "/meta", SubPathExpr: "by-pod/$(POD)"},
			}},
		corev1.Container{Name: "lacking", Command: []string{"sleep", "3600"},
			VolumeMounts: []corev1.VolumeMount{{Name: "settings", MountPath: "/etc/x", SubPath: "absent"}}},
	), func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{
			{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}},
			{Name: "meta", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "by-pod/sub/name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
		}
	})
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.waitFor("sub", "tool running, lacking waiting for its subPath", func(s corev1.PodStatus) bool {
		tool, _ := containerStatus(s, "tool")
		l, _ := containerStatus(s, "lacking")
		w := l.State.Waiting
		return tool.State.Running != nil && w != nil && w.Reason == ReasonCreateContainerConfigError &&
			strings.Contains(w.Message, `container "lacking", volume mount "settings": subPath "absent" does not exist in the volume`)
	})
	var out strings.Builder
	if err := f.p.RunInContainer(ctx, "default", "sub", "tool", []string{"sh", "-c", "cat /etc/tool/level.conf; echo; cat /meta/name; echo; ls /etc/tool"}, &testIO{stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "debug\nsub\nlevel.conf\n" {
		t.Fatalf("the tool sees %q, want the ConfigMap's key as its file and the pod's own directory of the downward API volume", out.String())
	}
	f.deletePod(pod, 1)
	f.waitNoContainers(string(pod.UID))
}

// Sidecars that cannot start show why in their status while the VM runs;
// containers of pods vz-node does not know are collected at start.
func TestSidecarFailuresAndOrphans(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()

	pod := testPod("noimage", withSidecars(corev1.Container{Name: "tool", Image: "vzfleet-test/absent:1", ImagePullPolicy: corev1.PullNever}))
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("noimage", "the VM ready and the sidecar waiting", func(s corev1.PodStatus) bool {
		vm, _ := containerStatus(s, "macos")
		c, _ := containerStatus(s, "tool")
		return vm.Ready && c.State.Waiting != nil && c.State.Waiting.Reason == reasonErrImageNeverPull
	})
	if c, _ := containerStatus(st, "tool"); !strings.Contains(c.State.Waiting.Message, "vzfleet-test/absent:1") {
		t.Fatalf("waiting message %q does not name the image", c.State.Waiting.Message)
	}
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
			t.Fatalf("pod Ready %s with a sidecar that never started", c.Status)
		}
	}

	// A mandatory Secret that cannot be read keeps the pod Pending, even
	// with restartPolicy Never, and starts none of its containers.
	bad := testPod("badenv", withSidecars(corev1.Container{Name: "tool", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}}}}))
	bad.Spec.RestartPolicy = corev1.RestartPolicyNever
	if err := f.p.CreatePod(ctx, bad); err != nil {
		t.Fatal(err)
	}
	st = f.waitFor("badenv", "Pending on its environment", func(s corev1.PodStatus) bool {
		vm, _ := containerStatus(s, "macos")
		return s.Phase == corev1.PodPending && vm.State.Waiting != nil && vm.State.Waiting.Reason == ReasonCreateContainerConfigError
	})
	if vm, _ := containerStatus(st, "macos"); !strings.Contains(vm.State.Waiting.Message, `env X of container "tool"`) {
		t.Fatalf("waiting message %q does not name the variable and container", vm.State.Waiting.Message)
	}
	if cts := f.podContainers(string(bad.UID)); len(cts) != 0 {
		t.Fatalf("a pod whose env cannot be resolved started %d containers", len(cts))
	}

	invalid := testPod("probe", withSidecars(corev1.Container{Name: "tool", Lifecycle: &corev1.Lifecycle{
		PostStart: &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9000)}}}}))
	if err := f.p.CreatePod(ctx, invalid); err != nil {
		t.Fatal(err)
	}
	st = f.waitFor("probe", "Failed", func(s corev1.PodStatus) bool { return s.Phase == corev1.PodFailed })
	if st.Reason != ReasonInvalidSidecar || !strings.Contains(st.Message, `container "tool": lifecycle.postStart: only exec, httpGet and sleep hooks run in sidecars`) {
		t.Fatalf("invalid sidecar: reason %q message %q", st.Reason, st.Message)
	}

	// An orphan: a container of this node whose pod vz-node does not have.
	orphan := testPod("gone")
	id, err := f.docker.Create(ctx, sidecar.Spec(orphan, corev1.Container{Name: "x", Image: sidecarImage, Command: []string{"sleep", "300"}}, "mac-1", nil))
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.docker.Create(ctx, sidecar.Spec(orphan, corev1.Container{Name: "y", Image: sidecarImage, Command: []string{"sleep", "300"}}, "another-node", nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.docker.Remove(context.Background(), other) })
	f.p.Close()
	f.p = f.newProvider(2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := f.docker.Inspect(ctx, id)
		if sidecar.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan container still there: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := f.docker.Inspect(ctx, other); err != nil {
		t.Fatalf("another node's container was touched: %v", err)
	}
}
