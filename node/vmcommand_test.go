package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
)

// shellExec runs r's argv in home, as the sim guest's SSH server does: a
// cancelled command's process group is killed; what it left running in
// the background with nohup lives on.
func shellExec(ctx context.Context, home string, r ExecRequest) (int, error) {
	cmd := exec.Command(r.Argv[0], r.Argv[1:]...)
	cmd.Dir = home
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r.Stdin, r.Stdout, r.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return 127, nil
	}
	stop := context.AfterFunc(ctx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	err := cmd.Wait()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

func withShellGuest(t *testing.T) func(*fixture) {
	home := t.TempDir()
	return func(f *fixture) { f.guest.home = home }
}

func withCommand(script string, env ...corev1.EnvVar) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Command = []string{"sh", "-c"}
		p.Spec.Containers[0].Args = []string{script}
		p.Spec.Containers[0].Env = env
	}
}

func vmTerminated(s corev1.PodStatus) *corev1.ContainerStateTerminated {
	c, _ := containerStatus(s, "macos")
	return c.State.Terminated
}

func (f *fixture) logs(name string, opts api.ContainerLogOpts) string {
	f.t.Helper()
	rc, err := f.p.GetContainerLogs(context.Background(), "default", name, "macos", opts)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// The VM container's command runs in the guest as the container's main
// process: its output is the container's log, its exit ends the VM and is
// the container's exit code, so restartPolicy applies as to any container.
func TestVMCommand(t *testing.T) {
	f := newFixture(t, 2, withShellGuest(t))
	ctx := context.Background()
	failing := testPod("build", withCommand(`echo "building $TARGET in $PWD"; printf 'no newline'; exit 3`,
		corev1.EnvVar{Name: "TARGET", Value: "it's-ios"}, corev1.EnvVar{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}),
		func(p *corev1.Pod) {
			p.Spec.RestartPolicy = corev1.RestartPolicyNever
			p.Spec.Containers[0].WorkingDir = "/"
			p.Spec.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
		})
	again := testPod("again", withCommand(`echo "run at $IP"`,
		corev1.EnvVar{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}))
	for _, p := range []*corev1.Pod{failing, again} {
		if err := f.p.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	st := f.waitFor("build", "failed with the command's exit code", func(s corev1.PodStatus) bool { return s.Phase == corev1.PodFailed })
	if term := vmTerminated(st); term == nil || term.ExitCode != 3 || term.Reason != "Error" || term.Message != "building it's-ios in /\nno newline\n" {
		t.Fatalf("VM container %+v, want terminated with exit code 3, the log's end as its message", term)
	}
	if got := f.logs("build", api.ContainerLogOpts{}); got != "building it's-ios in /\nno newline\n" {
		t.Fatalf("logs %q", got)
	}
	stamped := f.logs("build", api.ContainerLogOpts{Timestamps: true, Tail: 1})
	if ts, line, _ := strings.Cut(stamped, " "); line != "no newline\n" || len(ts) != len(mainStampLayout) {
		t.Fatalf("logs --timestamps --tail 1: %q", stamped)
	}

	// restartPolicy Always: the VM runs again when its command exits 0;
	// --previous reads the run before.
	f.waitFor("again", "running again after its command exited", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "macos")
		return c.RestartCount >= 1 && c.LastTerminationState.Terminated != nil && c.LastTerminationState.Terminated.ExitCode == 0 && c.State.Running != nil
	})
	if got := f.logs("again", api.ContainerLogOpts{Previous: true}); got != "run at 192.168.64.7\n" {
		t.Fatalf("logs --previous %q", got)
	}
	events := strings.Join(drainEvents(f.events), "\n")
	for _, want := range []string{"The VM's command exited with code 3; shutting the VM down", "The VM's command exited with code 0; shutting the VM down"} {
		if !strings.Contains(events, want) {
			t.Fatalf("no event %q among:\n%s", want, events)
		}
	}
	// The runner script, which holds the environment, is gone.
	if left, _ := filepath.Glob(filepath.Join(f.guest.home, ".vzfleet", "uid-build-*", "run.sh")); len(left) > 0 {
		t.Fatalf("runner scripts left in the guest: %v", left)
	}
	for _, p := range []*corev1.Pod{failing, again} {
		f.deletePod(p, 1)
	}
}

// A VM whose guest does not shut down after its command exited is powered
// off once the pod's grace period is over; the container still ends with
// the command's exit code.
func TestVMCommandShutdownGrace(t *testing.T) {
	f := newFixture(t, 2, withShellGuest(t))
	deafToStopRequests.Store("uid-stubborn", true)
	t.Cleanup(func() { deafToStopRequests.Delete("uid-stubborn") })
	grace := int64(1)
	pod := testPod("stubborn", withCommand("exit 0"), func(p *corev1.Pod) {
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.TerminationGracePeriodSeconds = &grace
	})
	if err := f.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("stubborn", "succeeded", func(s corev1.PodStatus) bool { return s.Phase == corev1.PodSucceeded })
	if term := vmTerminated(st); term == nil || term.ExitCode != 0 || term.Reason != "Completed" {
		t.Fatalf("VM container %+v, want completed with the command's exit code", term)
	}
	events := strings.Join(drainEvents(f.events), "\n")
	if !strings.Contains(events, "The VM did not shut down within its grace period after its command exited; powering it off") {
		t.Fatalf("no power-off event among:\n%s", events)
	}
	f.deletePod(pod, 1)
}

// The command outlives a vz-node restart, which follows it on: its log
// holds each line once, and its exit still ends the container.
func TestVMCommandAcrossRestart(t *testing.T) {
	f := newFixture(t, 2, withShellGuest(t))
	ctx := context.Background()
	gate := filepath.Join(f.guest.home, "go")
	pod := testPod("job", withCommand(`echo before; i=0; while [ ! -f "$GATE" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo after; exit 0`,
		corev1.EnvVar{Name: "GATE", Value: gate}), func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever })
	if err := f.p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.waitFor("job", "running", isRunningReady)
	deadline := time.Now().Add(10 * time.Second)
	for f.logs("job", api.ContainerLogOpts{}) != "before\n" {
		if time.Now().After(deadline) {
			t.Fatalf("logs before the restart: %q", f.logs("job", api.ContainerLogOpts{}))
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.p.Close()
	f.p = f.newProvider(2)
	f.waitFor("job", "re-adopted", isRunningReady)
	// kubectl attach shows the command's output from now on, to its end.
	var attached bytes.Buffer
	attachDone := make(chan error, 1)
	go func() {
		attachDone <- f.p.AttachToContainer(ctx, "default", "job", "macos", &testIO{stdout: &attached})
	}()
	// It shows the output from when it begins: give it a moment to.
	time.Sleep(time.Second)
	// A follower reads the log on to the command's end.
	follow, err := f.p.GetContainerLogs(ctx, "default", "job", "macos", api.ContainerLogOpts{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st := f.waitFor("job", "succeeded", func(s corev1.PodStatus) bool { return s.Phase == corev1.PodSucceeded })
	if term := vmTerminated(st); term == nil || term.ExitCode != 0 || term.Reason != "Completed" {
		t.Fatalf("VM container %+v, want completed", term)
	}
	if got := f.logs("job", api.ContainerLogOpts{}); got != "before\nafter\n" {
		t.Fatalf("logs across the restart %q, want each line once", got)
	}
	got, err := io.ReadAll(follow)
	if err != nil || string(got) != "before\nafter\n" {
		t.Fatalf("followed logs %q (%v)", got, err)
	}
	if err := <-attachDone; err != nil || attached.String() != "after\n" {
		t.Fatalf("attach: %q (%v), want the output after it attached", attached.String(), err)
	}
	f.deletePod(pod, 1)
}

// TestLogTailLimits: a termination message from the log is its last 80
// lines, at most 2048 bytes.
func TestLogTailLimits(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "main-1.log")
	l, err := openMainLog(path, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		fmt.Fprintf(l, "line %d\n", i)
	}
	l.Close()
	lines := strings.Split(strings.TrimSuffix(logTail(path), "\n"), "\n")
	if len(lines) != 80 || lines[0] != "line 120" || lines[79] != "line 199" {
		t.Fatalf("logTail: %d lines, %q ... %q", len(lines), lines[0], lines[len(lines)-1])
	}
	l, _ = openMainLog(path, time.Now)
	l.Write([]byte(strings.Repeat("x", 5000) + "\n"))
	l.Close()
	if got := logTail(path); len(got) != 2048 || !strings.HasSuffix(got, "xx\n") {
		t.Fatalf("logTail after a long line: %d bytes", len(got))
	}
	l, _ = openMainLog(path, time.Now)
	l.Write([]byte(strings.Repeat("y", 100<<10) + "\n"))
	l.Close()
	if got := logTail(path); len(got) != 2048 || !strings.HasSuffix(got, "yy\n") {
		t.Fatalf("logTail of a line longer than what it reads: %d bytes", len(got))
	}
}

func TestMainLogResumesAndSelects(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "main-1.log")
	clock := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	l, err := openMainLog(path, now)
	if err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("one\ntw"))
	clock = clock.Add(time.Minute)
	l.Write([]byte("o\nthree"))
	l.Close()
	// A crash mid-line: the cut line is dropped and copied again.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("2026-11-25T08:01:00.000000000Z thr")
	f.Close()
	l, err = openMainLog(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if l.offset != int64(len("one\ntwo\n")) {
		t.Fatalf("offset %d after a restart, want the bytes of the whole lines", l.offset)
	}
	l.Write([]byte("three"))
	if err := l.flush(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b, _ := os.ReadFile(path)
	want := "2026-11-25T08:00:00.000000000Z one\n2026-11-25T08:01:00.000000000Z two\n2026-11-25T08:01:00.000000000Z three\n"
	if string(b) != want {
		t.Fatalf("log file\n%s\nwant\n%s", b, want)
	}
	if got := logTail(path); got != "one\ntwo\nthree\n" {
		t.Fatalf("logTail %q", got)
	}
	for _, tc := range []struct {
		sel  logSelector
		want string
	}{
		{logSelector{}, "one\ntwo\nthree\n"},
		{logSelector{tail: 2}, "two\nthree\n"},
		{logSelector{since: time.Date(2026, 11, 25, 8, 0, 30, 0, time.UTC)}, "two\nthree\n"},
		{logSelector{tail: 1, timestamps: true}, "2026-11-25T08:01:00.000000000Z three\n"},
	} {
		var out bytes.Buffer
		if err := tc.sel.write(&out, tc.sel.tailOf(b)); err != nil || out.String() != tc.want {
			t.Errorf("%+v: %q (%v), want %q", tc.sel, out.String(), err, tc.want)
		}
	}
}
