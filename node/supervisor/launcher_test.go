//go:build linux || darwin

package supervisor

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/node/vm"
)

// TestMain lets the test binary stand in for vz-node's `vm run`, the
// command a Launcher starts, with the sup-test driver.
func TestMain(m *testing.M) {
	if len(os.Args) > 3 && os.Args[1] == "vm" && os.Args[2] == "run" {
		os.Exit(childMain(os.Args[3:]))
	}
	os.Exit(m.Run())
}

func childMain(args []string) int {
	flags := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		flags[args[i]] = args[i+1]
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var err error
	if flags["--spare-log"] != "" {
		err = RunSpare(context.Background(), flags["--state-dir"], flags["--spare-log"], os.Stdin, log)
	} else {
		err = Run(context.Background(), Dir(flags["--state-dir"], flags["--id"]), log)
	}
	if err != nil {
		log.Error("supervisor", "err", err)
		return 1
	}
	return 0
}

func testBinary(t *testing.T) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func writeTestSpec(t *testing.T, stateDir, id string) string {
	t.Helper()
	dir := Dir(stateDir, id)
	spec := Spec{Driver: "sup-test", Machine: vm.Spec{ID: id, CPUs: 1, MemoryBytes: 1 << 30, Network: vm.Network{Mode: vm.NAT, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 7}}}}
	if err := WriteSpec(dir, spec); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitSpare waits until the launcher holds a spare and returns it.
func waitSpare(t *testing.T, l *Launcher, not *spare) *spare {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		sp := l.spare
		l.mu.Unlock()
		if sp != nil && sp != not {
			return sp
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no spare supervisor started")
	return nil
}

func TestLauncherHandsTheVMToTheSpare(t *testing.T) {
	stateDir := t.TempDir()
	l := NewLauncher(testBinary(t), stateDir)
	first := waitSpare(t, l, nil)
	dir := writeTestSpec(t, stateDir, "pod-a")

	pid, err := l.Launch("pod-a")
	if err != nil {
		t.Fatal(err)
	}
	if pid != first.pid {
		t.Fatalf("Launch started pid %d, want the spare %d", pid, first.pid)
	}
	st, err := WaitSocket(context.Background(), dir, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != first.pid {
		t.Fatalf("the VM's supervisor is pid %d, want the spare %d", st.PID, first.pid)
	}
	c := Client{Socket: SocketPath(dir)}
	deadline := time.Now().Add(5 * time.Second)
	for st.Phase != PhaseRunning && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		st, _ = c.Status(context.Background())
	}
	if st.Phase != PhaseRunning {
		t.Fatalf("VM state %+v, want Running", st)
	}

	second := waitSpare(t, l, first)
	if second.pid == first.pid {
		t.Fatal("no new spare after the first was used")
	}
	if err := c.RequestStop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the VM's supervisor did not exit after the stop")
	}
	if final, err := ReadState(dir); err != nil || final.Phase != PhaseStopped {
		t.Fatalf("final state %+v (%v)", final, err)
	}
	if log, err := os.ReadFile(filepath.Join(dir, LogFile)); err != nil || len(log) == 0 {
		t.Fatalf("the VM's supervisor.log is empty (%v): the spare's output was not moved there", err)
	}

	l.Close()
	select {
	case <-second.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the unused spare did not exit when the launcher closed")
	}
	if left, _ := filepath.Glob(filepath.Join(stateDir, spareLogPattern)); len(left) != 0 {
		t.Fatalf("spare logs left behind: %v", left)
	}
}

func TestLauncherFallsBackWhenTheSpareIsGone(t *testing.T) {
	stateDir := t.TempDir()
	l := NewLauncher(testBinary(t), stateDir)
	defer l.Close()
	sp := waitSpare(t, l, nil)
	sp.ids.Close() // as if the spare died: it reads end-of-file and exits
	<-sp.exited
	dir := writeTestSpec(t, stateDir, "pod-b")
	pid, err := l.Launch("pod-b")
	if err != nil {
		t.Fatal(err)
	}
	if pid == sp.pid {
		t.Fatal("Launch handed the VM to a spare that had exited")
	}
	st, err := WaitSocket(context.Background(), dir, 10*time.Second)
	if err != nil || st.PID != pid {
		t.Fatalf("state %+v (%v), want a supervisor with pid %d", st, err, pid)
	}
	if err := (Client{Socket: SocketPath(dir)}).Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRunSpareRejectsBadIDs(t *testing.T) {
	stateDir := t.TempDir()
	spareLog := filepath.Join(stateDir, "spare.log")
	if err := os.WriteFile(spareLog, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../escape", "", "a/b"} {
		r, w := io.Pipe()
		go func() { _, _ = io.WriteString(w, id+"\n"); w.Close() }()
		if err := RunSpare(context.Background(), stateDir, spareLog, r, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
	if _, err := os.Stat(spareLog); !os.IsNotExist(err) {
		t.Fatalf("spare log not removed: %v", err)
	}
}
