package node

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"

	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/node/supervisor"
	"github.com/vzfleet/vzfleet/node/vm"
	"github.com/vzfleet/vzfleet/test/harness"
)

// fakeDriver boots instantly; its machines stop when asked.
type fakeDriver struct{}

func init() { vm.Register("fake", func(vm.Options) (vm.Driver, error) { return fakeDriver{}, nil }) }

func (fakeDriver) Name() string { return "fake" }
func (fakeDriver) Host() vm.HostInfo {
	return vm.HostInfo{CPUs: 8, MemoryBytes: 16 << 30, MinCPUs: 1, MaxCPUs: 8, MinMemoryBytes: 1 << 30, MaxMemoryBytes: 16 << 30, MaxRunning: 2}
}
func (fakeDriver) Validate(vm.Spec) error { return nil }
func (fakeDriver) Create(_ context.Context, s vm.Spec) (vm.Machine, error) {
	return &fakeMachine{id: s.ID, ch: make(chan vm.State, 16)}, nil
}

type fakeMachine struct {
	id string
	mu sync.Mutex
	st vm.State
	ch chan vm.State
}

func (m *fakeMachine) ID() string { return m.id }
func (m *fakeMachine) set(s vm.State) {
	m.mu.Lock()
	m.st = s
	m.mu.Unlock()
	m.ch <- s
}
func (m *fakeMachine) Start(context.Context) error { m.set(vm.StateRunning); return nil }
func (m *fakeMachine) RequestStop(context.Context) error {
	if _, deaf := deafToStopRequests.Load(m.id); !deaf {
		m.set(vm.StateStopped)
	}
	return nil
}

// deafToStopRequests holds the IDs of machines whose guest ignores a stop
// request (the power button), as a hung guest OS does.
var deafToStopRequests sync.Map

func (m *fakeMachine) Stop(context.Context) error { m.set(vm.StateStopped); return nil }
func (m *fakeMachine) State() vm.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}
func (m *fakeMachine) Changes() <-chan vm.State { return m.ch }
func (m *fakeMachine) Release() error           { return nil }

// inProcessLaunch runs supervisors as goroutines of the test; cancel ends
// them as a SIGTERM would.
type inProcessLaunch struct {
	ctx context.Context
	wg  sync.WaitGroup
}

func (l *inProcessLaunch) launch(stateDir, id string) (int, error) {
	// As the real launchers do: a state file of a previous run would be
	// mistaken for this one's.
	if err := os.Remove(filepath.Join(supervisor.Dir(stateDir, id), supervisor.StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		_ = supervisor.Run(l.ctx, supervisor.Dir(stateDir, id), discardLog())
	}()
	return os.Getpid(), nil
}

type fakeGuest struct {
	mu       sync.Mutex
	execs    [][]string
	shutdown int
	exitCode int
	// home, when set, makes Exec run commands with /bin/sh there, as the
	// sim guest does, without SSH.
	home string
}

func (g *fakeGuest) WaitSSH(context.Context, GuestTarget) error { return nil }
func (g *fakeGuest) Exec(ctx context.Context, _ GuestTarget, r ExecRequest) (int, error) {
	if g.home != "" {
		return shellExec(ctx, g.home, r)
	}
	g.mu.Lock()
	g.execs = append(g.execs, r.Argv)
	code := g.exitCode
	g.mu.Unlock()
	if r.Stdin != nil && r.Stdout != nil {
		_, _ = io.Copy(r.Stdout, r.Stdin)
	}
	return code, nil
}
func (g *fakeGuest) Shutdown(_ context.Context, t GuestTarget) error {
	g.mu.Lock()
	g.shutdown++
	g.mu.Unlock()
	return errors.New("fake guest has no OS to shut down")
}

type fakeOverlays struct{}

func (fakeOverlays) Create(_ context.Context, img LocalImage, dir string) (Overlay, error) {
	d := filepath.Join(dir, "overlay")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return Overlay{}, err
	}
	disk := filepath.Join(d, "disk.img")
	if err := os.WriteFile(disk, []byte("disk"), 0o600); err != nil {
		return Overlay{}, err
	}
	return Overlay{DiskPath: disk, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, MachineID: []byte("id")}, nil
}

type fakeAddresses struct{}

func (fakeAddresses) Lookup(context.Context, net.HardwareAddr) (net.IP, error) {
	return net.ParseIP("192.168.64.7"), nil
}

// fixture is a provider over fakes plus what it reported.
type fixture struct {
	t        *testing.T
	p        *PodProvider
	guest    *fakeGuest
	launcher *inProcessLaunch
	stateDir string
	cacheDir string
	mu       sync.Mutex
	statuses map[string][]corev1.PodStatus
	deleted  map[string]bool
	events   *record.FakeRecorder
	docker   *sidecar.Client
	objects  Objects
}

// newFixture builds a provider over fakes; opts adjust the fixture before
// the provider starts.
func newFixture(t *testing.T, maxVMs int, opts ...func(*fixture)) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{
		t: t, guest: &fakeGuest{}, launcher: &inProcessLaunch{ctx: ctx},
		stateDir: t.TempDir(), cacheDir: t.TempDir(),
		statuses: map[string][]corev1.PodStatus{}, deleted: map[string]bool{},
		events: record.NewFakeRecorder(1000),
	}
	t.Cleanup(func() { cancel(); f.launcher.wg.Wait() })
	img := LocalImageDir(f.cacheDir, "registry.local/macos:15")
	if err := os.MkdirAll(img, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img, ImageDiskFile), []byte("base"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(f)
	}
	f.p = f.newProvider(maxVMs)
	return f
}

func (f *fixture) newProvider(maxVMs int) *PodProvider {
	f.t.Helper()
	p, err := NewPodProvider(PodProviderConfig{
		NodeName: "mac-1", HostIP: "10.0.0.2", StateDir: f.stateDir, DriverName: "fake",
		Host: fakeDriver{}.Host(), Allocatable: allocatable{CPUs: 7, MemoryBytes: 14 << 30}, MaxVMs: maxVMs,
		NetworkMode: vm.NAT, Images: LocalDirSource{Root: f.cacheDir}, Overlays: fakeOverlays{},
		Addresses: fakeAddresses{}, Guest: f.guest, Recorder: f.events, Launch: f.launcher.launch,
		DeletePod: func(_ context.Context, pod *corev1.Pod) error {
			f.mu.Lock()
			f.deleted[pod.Name] = true
			f.mu.Unlock()
			return nil
		},
		Docker: f.docker, SandboxImage: harness.PauseImage,
		Objects: f.objects,
		Log:     discardLog(),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	p.NotifyPods(context.Background(), func(pod *corev1.Pod) {
		f.mu.Lock()
		f.statuses[pod.Name] = append(f.statuses[pod.Name], pod.Status)
		f.mu.Unlock()
	})
	f.t.Cleanup(p.Close)
	return p
}

// waitFor polls the provider's status of pod until ok or the deadline.
func (f *fixture) waitFor(name string, what string, ok func(corev1.PodStatus) bool) corev1.PodStatus {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := f.p.GetPodStatus(context.Background(), "default", name)
		if err == nil && ok(*st) {
			return *st
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("pod %s: timed out waiting for %s; last status %+v (err %v)", name, what, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deletePod deletes pod gracefully, as the API server's deletion does,
// and waits until it is gone.
func (f *fixture) deletePod(pod *corev1.Pod, grace int64) {
	f.t.Helper()
	now := metav1.Now()
	pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds = &now, &grace
	if err := f.p.DeletePod(context.Background(), pod); err != nil {
		f.t.Fatal(err)
	}
	waitGone(f.t, f, pod.Name)
}

func testPod(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{
			NodeName: "mac-1",
			Containers: []corev1.Container{{
				Name: "macos", Image: "registry.local/macos:15",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("1500m"),
					corev1.ResourceMemory: resource.MustParse("4Gi"),
				}},
			}},
			RestartPolicy: corev1.RestartPolicyAlways,
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func isRunningReady(s corev1.PodStatus) bool {
	return s.Phase == corev1.PodRunning && len(s.ContainerStatuses) == 1 && s.ContainerStatuses[0].Ready && s.PodIP != ""
}

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }

func sleepMS(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }

// testIO is kubectl's side of an exec; stdout, when set, collects output.
type testIO struct{ stdout io.Writer }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (testIO) Stdin() io.Reader { return nil }
func (t testIO) Stdout() io.WriteCloser {
	if t.stdout == nil {
		return nil
	}
	return nopCloser{t.stdout}
}
func (testIO) Stderr() io.WriteCloser      { return nil }
func (testIO) TTY() bool                   { return false }
func (testIO) Resize() <-chan api.TermSize { return nil }

func asExit(err error, target *interface{ ExitStatus() int }) bool { return errors.As(err, target) }
