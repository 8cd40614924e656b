package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/record"

	"github.com/vzfleet/vzfleet/node/podenv"
	"github.com/vzfleet/vzfleet/node/supervisor"
)

func TestPodRunsAndIsDeleted(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	pod := testPod("vm1")
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("vm1", "Running and Ready", isRunningReady)
	cs := st.ContainerStatuses[0]
	if cs.ContainerID != "vz://uid-vm1" || st.PodIP != "192.168.64.7" || st.HostIP != "10.0.0.2" || cs.RestartCount != 0 {
		t.Fatalf("unexpected running status: %+v", st)
	}
	spec, err := supervisor.ReadSpec(supervisor.Dir(f.stateDir, "uid-vm1"))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Machine.CPUs != 2 || spec.Machine.MemoryBytes != 4<<30 {
		t.Fatalf("VM spec: %d CPUs %d bytes, want 2 CPUs (1500m rounded up) and 4Gi", spec.Machine.CPUs, spec.Machine.MemoryBytes)
	}

	f.deletePod(pod, 5)
	if _, err := os.Stat(supervisor.Dir(f.stateDir, "uid-vm1")); !os.IsNotExist(err) {
		t.Fatalf("VM state dir left behind: %v", err)
	}
	f.mu.Lock()
	last := f.statuses["vm1"][len(f.statuses["vm1"])-1]
	deleted := f.deleted["vm1"]
	f.mu.Unlock()
	if last.Phase != corev1.PodSucceeded && last.Phase != corev1.PodFailed || last.ContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("final status is not terminal: %+v", last)
	}
	if !deleted {
		t.Fatal("the pod was not removed from the API after its VM stopped")
	}
}

// A force delete (grace period 0) powers the VM off at once: no guest
// shutdown is attempted.
func TestForceDeleteSkipsGuestShutdown(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	pod := testPod("vm0")
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.waitFor("vm0", "Running and Ready", isRunningReady)
	now := metav1.Now()
	zero := int64(0)
	pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds = &now, &zero
	if err := f.p.DeletePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitGone(t, f, "vm0")
	f.guest.mu.Lock()
	defer f.guest.mu.Unlock()
	if f.guest.shutdown != 0 {
		t.Fatalf("%d guest shutdowns attempted for a force delete", f.guest.shutdown)
	}
}

func waitGone(t *testing.T, f *fixture, name string) {
	t.Helper()
	f.waitForErr(name)
}

func (f *fixture) waitForErr(name string) {
	f.t.Helper()
	for range 1000 {
		if _, err := f.p.GetPod(context.Background(), "default", name); err != nil {
			return
		}
		sleepMS(10)
	}
	f.t.Fatalf("pod %s still known to the provider", name)
}

func TestInvalidPodsFail(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		reason string
	}{
		{"no-image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }, ReasonNoVMImage},
		{"sidecar-without-docker", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "busybox"})
		}, ReasonDockerUnavailable},
		{"nfs-volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "filer", Path: "/x"}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		}, ReasonUnsupportedVolume},
		{"sub-path", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/s", SubPath: "x"}}
		}, ReasonUnsupportedVolume},
		{"undefined-volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "nope", MountPath: "/n"}}
		}, ReasonUnsupportedVolume},
		{"vm-command-resource-env", func(p *corev1.Pod) {
			p.Spec.Containers[0].Command = []string{"xcodebuild"}
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "CPUS", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}}}
		}, ReasonInvalidVMCommand},
		{"init-container-without-docker", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox"}}
		}, ReasonDockerUnavailable},
		{"too-many-cpus", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = mustQ("7100m")
		}, ReasonRequestsExceedHost},
		{"too-much-memory", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = mustQ("15Gi")
		}, ReasonRequestsExceedHost},
	}
	f := newFixture(t, 2)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := f.p.CreatePod(context.Background(), testPod(c.name, c.mutate)); err != nil {
				t.Fatal(err)
			}
			st := f.waitFor(c.name, "Failed", func(s corev1.PodStatus) bool { return s.Phase == corev1.PodFailed })
			if st.Reason != c.reason {
				t.Fatalf("reason %q, want %q (message %q)", st.Reason, c.reason, st.Message)
			}
		})
	}
}

func TestThirdPodWaitsForSlot(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if err := f.p.CreatePod(ctx, testPod(n)); err != nil {
			t.Fatal(err)
		}
		f.waitFor(n, "Running", isRunningReady)
	}
	third := testPod("c")
	if err := f.p.CreatePod(ctx, third); err != nil {
		t.Fatal(err)
	}
	f.waitFor("c", "WaitingForVMSlot", func(s corev1.PodStatus) bool {
		return s.Phase == corev1.PodPending && len(s.ContainerStatuses) == 1 &&
			s.ContainerStatuses[0].State.Waiting != nil && s.ContainerStatuses[0].State.Waiting.Reason == ReasonWaitingForVMSlot
	})
	a := testPod("a")
	now := metav1.Now()
	a.DeletionTimestamp = &now
	if err := f.p.DeletePod(ctx, a); err != nil {
		t.Fatal(err)
	}
	f.waitFor("c", "Running after a slot freed", isRunningReady)
}

func TestRestartReadoptsRunningVMs(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	if err := f.p.CreatePod(ctx, testPod("keep")); err != nil {
		t.Fatal(err)
	}
	before := f.waitFor("keep", "Running", isRunningReady)
	// The agent goes away; the supervisor (and VM) stay.
	f.p.Close()
	f.p = f.newProvider(2)
	after := f.waitFor("keep", "re-adopted and Ready", isRunningReady)
	b, a := before.ContainerStatuses[0], after.ContainerStatuses[0]
	if a.RestartCount != b.RestartCount || !a.State.Running.StartedAt.Equal(&b.State.Running.StartedAt) || after.PodIP != before.PodIP {
		t.Fatalf("re-adopted status differs:\nbefore %+v\nafter  %+v", before, after)
	}
	pods, _ := f.p.GetPods(ctx)
	if len(pods) != 1 {
		t.Fatalf("GetPods after restart: %d pods, want 1", len(pods))
	}
	// An orphan: the pod is gone from the API while vz-node was down.
	f.p.CollectOrphans(ctx, nil)
	waitGone(t, f, "keep")
	if _, err := os.Stat(supervisor.Dir(f.stateDir, "uid-keep")); !os.IsNotExist(err) {
		t.Fatalf("orphan VM state left behind: %v", err)
	}
}

func TestExecPassesExitCode(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	if err := f.p.CreatePod(ctx, testPod("ex")); err != nil {
		t.Fatal(err)
	}
	f.waitFor("ex", "Running", isRunningReady)
	f.guest.mu.Lock()
	f.guest.exitCode = 3
	f.guest.mu.Unlock()
	err := f.p.RunInContainer(ctx, "default", "ex", "macos", []string{"ls", "-la", "/tmp dir"}, &testIO{})
	var code interface{ ExitStatus() int }
	if err == nil || !asExit(err, &code) || code.ExitStatus() != 3 {
		t.Fatalf("exec error %v, want exit status 3", err)
	}
	f.guest.mu.Lock()
	last := f.guest.execs[len(f.guest.execs)-1]
	f.guest.mu.Unlock()
	if len(last) != 3 || last[2] != "/tmp dir" {
		t.Fatalf("argv reached the guest as %q", last)
	}
	if err := f.p.RunInContainer(ctx, "default", "ex", "sidecar", []string{"true"}, &testIO{}); err == nil {
		t.Fatal("exec into an unknown container succeeded")
	}
}

// lateObjects is an Objects whose Secret, ConfigMap and claim (bound to a
// hostPath PersistentVolume at claimDir) exist once arrived is set; the API
// server's Service is always there.
type lateObjects struct {
	mu       sync.Mutex
	arrived  bool
	claimDir string
}

func (o *lateObjects) there() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.arrived
}

func (o *lateObjects) Secret(_ context.Context, _, name string) (*corev1.Secret, error) {
	if !o.there() {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
	}
	return &corev1.Secret{Data: map[string][]byte{"token": []byte("t0ken")}}, nil
}

func (o *lateObjects) ConfigMap(_ context.Context, _, name string) (*corev1.ConfigMap, error) {
	if !o.there() {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
	}
	return &corev1.ConfigMap{Data: map[string]string{"level": "debug"}}, nil
}

func (o *lateObjects) PersistentVolumeClaim(_ context.Context, _, name string) (*corev1.PersistentVolumeClaim, error) {
	if !o.there() {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumeclaims"}, name)
	}
	return &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-" + name}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}, nil
}

func (o *lateObjects) PersistentVolume(_ context.Context, name string) (*corev1.PersistentVolume, error) {
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: o.claimDir}}}}, nil
}

func (o *lateObjects) Services(_ context.Context, ns string) ([]corev1.Service, error) {
	if ns != metav1.NamespaceDefault {
		return nil, nil
	}
	return []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Port: 443}}}}}, nil
}

func (o *lateObjects) Token(context.Context, *corev1.Pod, string, string, int64) (string, time.Time, error) {
	return "tok", time.Now().Add(time.Hour), nil
}

// As the kubelet does, a pod whose Secret, ConfigMap or
// PersistentVolumeClaim does not exist yet waits Pending (restartPolicy
// Never too), says why, and starts once it exists.
func TestPodWaitsForItsSecretAndConfigMap(t *testing.T) {
	objects := &lateObjects{claimDir: t.TempDir()}
	f := newFixture(t, 3, func(f *fixture) { f.objects = objects })
	ctx := context.Background()
	never := func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever }
	env := testPod("env", never, func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "late"}, Key: "token"}}}}
	})
	vol := testPod("vol", never, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "settings", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "late-settings"}}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "settings", MountPath: "/Volumes/settings"}}
	})
	claim := testPod("claim", never, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "late-claim", ReadOnly: true}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/Volumes/cache"}}
	})
	for _, p := range []*corev1.Pod{env, vol, claim} {
		if err := f.p.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	waiting := func(reason, msg string) func(corev1.PodStatus) bool {
		return func(s corev1.PodStatus) bool {
			w := s.ContainerStatuses[0].State.Waiting
			return s.Phase == corev1.PodPending && w != nil && w.Reason == reason && strings.Contains(w.Message, msg)
		}
	}
	f.waitFor("env", "waiting for its Secret", waiting(ReasonCreateContainerConfigError, `env TOKEN of container "macos": Secret "late" not found`))
	f.waitFor("vol", "waiting for its ConfigMap", waiting(ReasonContainerCreating, `late-settings`))
	f.waitFor("claim", "waiting for its claim", waiting(ReasonContainerCreating, `volume "cache": persistentVolumeClaim "late-claim": persistentvolumeclaims "late-claim" not found`))
	if pods, err := f.p.GetPods(ctx); err != nil || len(pods) != 0 {
		t.Fatalf("GetPods lists %d pods waiting for their configuration (%v), want none", len(pods), err)
	}
	events := strings.Join(drainEvents(f.events), "\n")
	if !strings.Contains(events, podenv.ReasonMandatorySecretNotFound) || !strings.Contains(events, "FailedMount") {
		t.Fatalf("events lack MandatorySecretNotFound and FailedMount:\n%s", events)
	}

	objects.mu.Lock()
	objects.arrived = true
	objects.mu.Unlock()
	f.waitFor("env", "Running", isRunningReady)
	f.waitFor("vol", "Running", isRunningReady)
	f.waitFor("claim", "Running", isRunningReady)
	// The claim is its PersistentVolume's directory, shared read-only.
	resolved, err := f.p.GetPod(ctx, "default", "claim")
	if err != nil {
		t.Fatal(err)
	}
	if sh := f.p.vmShares(resolved); len(sh) != 1 || sh[0].HostPath != objects.claimDir || !sh[0].ReadOnly {
		t.Fatalf("the VM's shares %+v, want the PersistentVolume's directory %s, read-only", sh, objects.claimDir)
	}
	got, err := f.p.GetPod(ctx, "default", "env")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, e := range got.Spec.Containers[0].Env {
		vars[e.Name] = e.Value
	}
	if vars["TOKEN"] != "t0ken" || vars["KUBERNETES_SERVICE_HOST"] != "10.96.0.1" {
		t.Fatalf("the running pod's environment: %v", vars)
	}
	level, err := os.ReadFile(filepath.Join(f.p.volumeDir(vol.UID), "settings", "level"))
	if err != nil || string(level) != "debug" {
		t.Fatalf("the ConfigMap volume: %q, %v", level, err)
	}
}

func drainEvents(r *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}
