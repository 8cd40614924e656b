package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/test/harness"
)

const testImage = "vzfleet-test/busybox:1"

// engine is a real Docker engine with the busybox test image.
func engine(t *testing.T) (*sidecar.Client, *harness.Docker) {
	t.Helper()
	harness.RequireRoot(t)
	d := harness.DockerWithImageT(t, testImage)
	c, err := sidecar.New(d.Host)
	if err != nil {
		t.Fatal(err)
	}
	return c, d
}

func testPod(name string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ci", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{Containers: append([]corev1.Container{{Name: "macos", Image: "vm"}}, containers...)},
	}
}

// create makes and starts the container of pod's sidecar c and removes it
// when the test ends.
func create(t *testing.T, d *sidecar.Client, pod *corev1.Pod, c corev1.Container) string {
	t.Helper()
	ctx := context.Background()
	id, err := d.Create(ctx, sidecar.Spec(pod, c, "node-a", nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove(context.Background(), id) })
	if err := d.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

func waitState(t *testing.T, d *sidecar.Client, id, what string, ok func(sidecar.Container) bool) sidecar.Container {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ct, err := d.Inspect(context.Background(), id)
		if err == nil && ok(ct) {
			return ct
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: not %s within 30s: %+v (err %v)", id, what, ct.State, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestContainerLifecycle(t *testing.T) {
	d, _ := engine(t)
	ctx := context.Background()
	pod := testPod("life")
	c := corev1.Container{Name: "side", Image: testImage, Command: []string{"sh", "-c", `echo "out $GREETING"; echo err >&2; exec sleep 300`},
		Env: []corev1.EnvVar{{Name: "GREETING", Value: "hello"}}}
	id := create(t, d, pod, c)
	ct := waitState(t, d, id, "running", func(ct sidecar.Container) bool { return ct.State.Running })
	if ct.Name != "/"+sidecar.Name(pod, "side") || ct.Config.Labels[sidecar.LabelPodUID] != "uid-life" || ct.Config.Labels[sidecar.LabelContainer] != "side" {
		t.Fatalf("container %q labels %v", ct.Name, ct.Config.Labels)
	}
	if _, err := d.Create(ctx, sidecar.Spec(pod, c, "node-a", nil)); !sidecar.IsConflict(err) {
		t.Fatalf("second create with the same name: %v, want a conflict", err)
	}

	// Logs: stdout and stderr, demultiplexed into one stream.
	var logs string
	for range 100 {
		rc, err := d.Logs(ctx, id, sidecar.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if logs = string(b); strings.Contains(logs, "err\n") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs, "out hello\n") || !strings.Contains(logs, "err\n") {
		t.Fatalf("logs %q, want both streams", logs)
	}
	rc, err := d.Logs(ctx, id, sidecar.LogOptions{Tail: 1, Timestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], time.Now().UTC().Format("2006-")) {
		t.Fatalf("tail 1 with timestamps: %q", b)
	}

	// Exec: separate streams, exit code, stdin.
	var out, errOut bytes.Buffer
	code, err := d.Exec(ctx, id, []string{"sh", "-c", "echo to-out; echo to-err >&2; exit 3"}, sidecar.IO{Stdout: &out, Stderr: &errOut})
	if err != nil || code != 3 || out.String() != "to-out\n" || errOut.String() != "to-err\n" {
		t.Fatalf("exec: code %d err %v stdout %q stderr %q", code, err, out.String(), errOut.String())
	}
	out.Reset()
	code, err = d.Exec(ctx, id, []string{"wc", "-c"}, sidecar.IO{Stdin: strings.NewReader("12345"), Stdout: &out, Stderr: io.Discard})
	if err != nil || code != 0 || strings.TrimSpace(out.String()) != "5" {
		t.Fatalf("exec with stdin: code %d err %v stdout %q", code, err, out.String())
	}
	out.Reset()
	code, err = d.Exec(ctx, id, []string{"sh", "-c", "test -t 1 && echo tty"}, sidecar.IO{Stdout: &out, TTY: true})
	if err != nil || code != 0 || !strings.Contains(out.String(), "tty") {
		t.Fatalf("exec with a TTY: code %d err %v stdout %q", code, err, out.String())
	}
	if code, err := d.Exec(ctx, id, []string{"/no/such/program"}, sidecar.IO{Stdout: io.Discard, Stderr: io.Discard}); err == nil && code == 0 {
		t.Fatal("exec of a missing program succeeded")
	}

	// Stop: the stop signal, then the kill after the grace period; Wait
	// returns the exit code once the container has ended, and at once
	// after.
	start := time.Now()
	waited := make(chan error, 1)
	go func() {
		code, err := d.Wait(ctx, id)
		if err == nil && code != 137 {
			err = fmt.Errorf("exit code %d, want 137", code)
		}
		waited <- err
	}()
	if err := d.Stop(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("wait for the stopped container: %v", err)
	}
	if code, err := d.Wait(ctx, id); err != nil || code != 137 {
		t.Fatalf("wait for an exited container: code %d, %v", code, err)
	}
	ct = waitState(t, d, id, "exited", func(ct sidecar.Container) bool { return ct.State.Status == "exited" })
	st := sidecar.Status(c, ct, corev1.ContainerStatus{}, nil)
	if st.State.Terminated == nil || st.State.Terminated.ExitCode != 137 || st.Ready {
		t.Fatalf("stopped sidecar status %+v (took %s)", st, time.Since(start))
	}
	if err := d.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Inspect(ctx, id); !sidecar.IsNotFound(err) {
		t.Fatalf("inspect after remove: %v, want not found", err)
	}
	if err := d.Remove(ctx, id); err != nil {
		t.Fatalf("removing a removed container: %v", err)
	}
}

// Docker restarts a failing sidecar under the pod's restart policy; the
// event stream reports each exit with its code, and the status keeps the
// last termination.
func TestEventsFollowRestarts(t *testing.T) {
	d, _ := engine(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pod := testPod("crash")
	pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	var mu sync.Mutex
	var events []sidecar.Event
	connected := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- d.Events(ctx, map[string]string{sidecar.LabelPodUID: "uid-crash"}, func() { close(connected) }, func(ev sidecar.Event) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		})
	}()
	<-connected
	c := corev1.Container{Name: "flaky", Image: testImage, Command: []string{"sh", "-c", "sleep 0.2; exit 2"}}
	id := create(t, d, pod, c)
	ct := waitState(t, d, id, "restarted twice", func(ct sidecar.Container) bool { return ct.RestartCount >= 2 })
	mu.Lock()
	var dies []string
	for _, ev := range events {
		if ev.Action == "die" {
			dies = append(dies, ev.Attributes["exitCode"])
			if ev.Attributes[sidecar.LabelContainer] != "flaky" || ev.ID != id {
				t.Errorf("die event %+v does not carry the container's labels", ev)
			}
		}
	}
	mu.Unlock()
	if len(dies) < 2 || dies[0] != "2" {
		t.Fatalf("die events' exit codes %v, want at least two of 2", dies)
	}
	two := 2
	st := sidecar.Status(c, ct, corev1.ContainerStatus{RestartCount: int32(ct.RestartCount - 1)}, &two)
	last := st.LastTerminationState.Terminated
	if st.RestartCount < 2 || last == nil || last.ExitCode != 2 || last.Reason != "Error" {
		t.Fatalf("status after restarts %+v", st)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("event stream ended with %v, want context.Canceled", err)
	}
}

// A sidecar image comes from a registry, with a clear error when it is not
// there.
func TestPullFromRegistry(t *testing.T) {
	d, h := engine(t)
	reg := harness.RegistryT(t)
	ctx := context.Background()
	ref := reg.Addr + "/tools/busybox:1"
	for _, args := range [][]string{{"tag", testImage, ref}, {"push", ref}, {"rmi", ref}} {
		if out, err := exec.Command("docker", append([]string{"--host", h.Host}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, out)
		}
	}
	if _, err := d.ImageID(ctx, ref); !sidecar.IsNotFound(err) {
		t.Fatalf("image before the pull: %v, want not found", err)
	}
	if err := d.Pull(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	if id, err := d.ImageID(ctx, ref); err != nil || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("image after the pull: %q, %v", id, err)
	}
	missing := reg.Addr + "/tools/nothing:1"
	err := d.Pull(ctx, missing, nil)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("pull of a missing image: %v, want an error naming it", err)
	}
}

// An engine that does not answer gives an error naming it.
func TestUnreachableEngine(t *testing.T) {
	t.Parallel()
	host := fmt.Sprintf("unix://%s/docker.sock", t.TempDir())
	d, err := sidecar.New(host)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), host) {
		t.Fatalf("ping of a missing engine: %v, want an error naming %s", err, host)
	}
	for _, bad := range []string{"ssh://mac-01", "unix://", "::"} {
		if _, err := sidecar.New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

// Following a log streams lines as they come; closing the reader ends it.
// Attach reaches the main process's stdin and stdout.
func TestFollowAndAttach(t *testing.T) {
	d, _ := engine(t)
	ctx := context.Background()
	pod := testPod("follow")
	ticker := create(t, d, pod, corev1.Container{Name: "ticker", Image: testImage, Command: []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"}})
	rc, err := d.Logs(ctx, ticker, sidecar.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		buf := make([]byte, 4096)
		var got string
		for {
			n, err := rc.Read(buf)
			got += string(buf[:n])
			if strings.Count(got, "\n") >= 5 || err != nil {
				lines <- got
				return
			}
		}
	}()
	select {
	case got := <-lines:
		if !strings.HasPrefix(got, "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n") {
			t.Fatalf("followed log %q", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the followed log did not deliver 5 lines within 20s")
	}
	closed := make(chan error, 1)
	go func() { closed <- rc.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("closing a followed log hung")
	}

	echo := create(t, d, pod, corev1.Container{Name: "echo", Image: testImage, Stdin: true, Command: []string{"cat"}})
	waitState(t, d, echo, "running", func(ct sidecar.Container) bool { return ct.State.Running })
	pr, pw := io.Pipe()
	var out harness.LockedBuffer
	attachCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Attach(attachCtx, echo, sidecar.IO{Stdin: pr, Stdout: &out, Stderr: &out}) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "hello from attach") {
		if time.Now().After(deadline) {
			t.Fatalf("attach output %q", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("attach ended early: %v (output %q)", err, out.String())
		default:
		}
		fmt.Fprintln(pw, "hello from attach")
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil && err != context.Canceled {
		t.Fatalf("attach ended with %v", err)
	}
}
