package supervisor

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/node/vm"
)

type testDriver struct{ limit bool }

func init() {
	vm.Register("sup-test", func(vm.Options) (vm.Driver, error) { return testDriver{}, nil })
	vm.Register("sup-test-full", func(vm.Options) (vm.Driver, error) { return testDriver{limit: true}, nil })
}

func (d testDriver) Name() string { return "sup-test" }
func (d testDriver) Host() vm.HostInfo {
	return vm.HostInfo{CPUs: 4, MemoryBytes: 8 << 30, MaxRunning: 2}
}
func (d testDriver) Validate(vm.Spec) error { return nil }
func (d testDriver) Create(context.Context, vm.Spec) (vm.Machine, error) {
	return &testMachine{limit: d.limit, ch: make(chan vm.State, 8)}, nil
}

type testMachine struct {
	limit bool
	mu    sync.Mutex
	st    vm.State
	ch    chan vm.State
}

func (m *testMachine) ID() string { return "m" }
func (m *testMachine) set(s vm.State) {
	m.mu.Lock()
	m.st = s
	m.mu.Unlock()
	m.ch <- s
}
func (m *testMachine) Start(context.Context) error {
	if m.limit {
		return vm.ErrLimitExceeded
	}
	m.set(vm.StateRunning)
	return nil
}
func (m *testMachine) RequestStop(context.Context) error {
	go func() { time.Sleep(20 * time.Millisecond); m.set(vm.StateStopped) }()
	return nil
}
func (m *testMachine) Stop(context.Context) error { m.set(vm.StateStopped); return nil }
func (m *testMachine) State() vm.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}
func (m *testMachine) Changes() <-chan vm.State { return m.ch }
func (m *testMachine) Release() error           { return nil }

func start(t *testing.T, driver string) (string, chan error) {
	t.Helper()
	stateDir := t.TempDir()
	dir := Dir(stateDir, "pod-1")
	spec := Spec{Driver: driver, Machine: vm.Spec{ID: "pod-1", CPUs: 1, MemoryBytes: 1 << 30, Network: vm.Network{Mode: vm.NAT, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}}}
	if err := WriteSpec(dir, spec); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), dir, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	return dir, done
}

func TestWatchAndRequestStop(t *testing.T) {
	dir, done := start(t, "sup-test")
	st, err := WaitSocket(context.Background(), dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := Client{Socket: SocketPath(dir)}
	var mu sync.Mutex
	var seen []Phase
	watched := make(chan error, 1)
	go func() {
		watched <- c.Watch(context.Background(), func(s State) { mu.Lock(); seen = append(seen, s.Phase); mu.Unlock() })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for st.Phase != PhaseRunning && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		st, _ = c.Status(context.Background())
	}
	if st.Phase != PhaseRunning || st.MAC != "02:00:00:00:00:09" || st.StartedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if err := c.RequestStop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("supervisor: %v", err)
	}
	if err := <-watched; err != nil {
		t.Fatalf("watch: %v", err)
	}
	final, err := ReadState(dir)
	if err != nil || final.Phase != PhaseStopped || final.ExitReason != ReasonStopRequested || final.FinishedAt.IsZero() {
		t.Fatalf("final state %+v (%v)", final, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[len(seen)-1] != PhaseStopped {
		t.Fatalf("watch saw %v, want it to end with Stopped", seen)
	}
}

func TestLimitExceededIsRecorded(t *testing.T) {
	dir, done := start(t, "sup-test-full")
	if err := <-done; err == nil {
		t.Fatal("supervisor of a VM over the limit succeeded")
	}
	st, err := ReadState(dir)
	if err != nil || st.Phase != PhaseFailed || st.ExitReason != ReasonLimitExceeded {
		t.Fatalf("state %+v (%v)", st, err)
	}
}

func TestSocketPathStaysShort(t *testing.T) {
	long := "/Users/someone/Library/Application Support/dev.vzfleet.vz-node/vms/0f8fad5b-d9cb-469f-a165-70867728950e"
	if p := SocketPath(long); len(p) >= 100 {
		t.Fatalf("socket path %q is %d bytes", p, len(p))
	}
	if p := SocketPath("/var/lib/vz-node/vms/x"); p != "/var/lib/vz-node/vms/x/control.sock" {
		t.Fatalf("short dir: %q", p)
	}
}
