package node

import (
	"context"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

func TestLogWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	end := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	ct := func(state string, finished int) sidecar.Container {
		var c sidecar.Container
		c.ID, c.State.StartedAt = "c1", t0.Add(-time.Hour)
		switch state {
		case "running":
			c.State.Running = true
		case "restarting":
			c.State.Running, c.State.Restarting = true, true
		case "created":
			c.State.StartedAt = time.Time{}
		}
		if finished > 0 {
			c.State.FinishedAt = end(finished)
		}
		return c
	}
	recorded := runEnds{ID: "c1", Ends: []time.Time{end(1), end(2)}}
	after := func(i int) time.Time { return end(i).Add(time.Nanosecond) }
	for _, tc := range []struct {
		name         string
		ct           sidecar.Container
		r            runEnds
		previous     bool
		since, until time.Time
		ok           bool
	}{
		{"first run, running", ct("running", 0), runEnds{}, false, time.Time{}, time.Time{}, true},
		{"first run, running: no previous", ct("running", 0), runEnds{}, true, time.Time{}, time.Time{}, false},
		{"never started", ct("created", 0), runEnds{}, false, time.Time{}, time.Time{}, false},
		{"first run, ended", ct("exited", 1), runEnds{}, false, time.Time{}, time.Time{}, true},
		{"first run, ended: no previous", ct("exited", 1), runEnds{}, true, time.Time{}, time.Time{}, false},
		{"third run, running", ct("running", 3), recorded, false, after(3), time.Time{}, true},
		{"third run, running: the second", ct("running", 3), recorded, true, after(2), end(3), true},
		{"running, an end not recorded yet", ct("running", 2), runEnds{ID: "c1", Ends: []time.Time{end(1)}}, true, after(1), end(2), true},
		{"waiting to restart: the run that ended", ct("restarting", 3), recorded, false, after(2), time.Time{}, true},
		{"waiting to restart: previous is that run too", ct("restarting", 3), recorded, true, after(2), time.Time{}, true},
		{"ended for good: the run before", ct("exited", 3), recorded, true, after(1), end(2), true},
		{"a replaced container's ends do not count", ct("running", 0), runEnds{ID: "c0", Ends: []time.Time{end(1)}}, true, time.Time{}, time.Time{}, false},
	} {
		since, until, ok := logWindow(tc.ct, tc.r, tc.previous)
		if ok != tc.ok || ok && (!since.Equal(tc.since) || !until.Equal(tc.until)) {
			t.Errorf("%s: window (%s, %s) %v, want (%s, %s) %v", tc.name, since, until, ok, tc.since, tc.until, tc.ok)
		}
	}
}

func TestRunEndsKeepsTheLatest(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var r runEnds
	var c sidecar.Container
	c.ID = "c1"
	for i := range 5 {
		c.State.FinishedAt = t0.Add(time.Duration(i) * time.Second)
		r = r.with(c)
		r = r.with(c) // seen twice
	}
	c.State.FinishedAt = t0 // a stale look
	r = r.with(c)
	if len(r.Ends) != keptRunEnds || !r.Ends[0].Equal(t0.Add(2*time.Second)) || !r.Ends[2].Equal(t0.Add(4*time.Second)) {
		t.Fatalf("ends %v, want the last %d of five", r.Ends, keptRunEnds)
	}
	c.ID = "c2"
	c.State.FinishedAt = time.Time{}
	if r = r.with(c); r.ID != "c2" || len(r.Ends) != 0 {
		t.Fatalf("a new container: %+v", r)
	}
}

func TestLastLines(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\n", 5, "a\n"},
		{"", 3, ""},
		{strings.Repeat("x", 100000) + "\nlast\n", 1, "last\n"},
	} {
		got, err := lastLines(iotest.OneByteReader(strings.NewReader(tc.in)), tc.n)
		if err != nil || string(got) != tc.want {
			t.Errorf("lastLines(%.20q, %d) = %q, %v; want %q", tc.in, tc.n, got, err, tc.want)
		}
		if got, _ := lastLines(strings.NewReader(tc.in), tc.n); string(got) != tc.want {
			t.Errorf("lastLines(%.20q, %d) in one read = %q; want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// kubectl logs shows a sidecar's current run, and --previous the one
// before, although Docker restarts it in place with one log, as the
// kubelet shows its container instances; also after vz-node restarts.
func TestSidecarLogsByRun(t *testing.T) {
	f := newFixture(t, 2, withDocker(t))
	ctx := context.Background()
	grace := int64(1)
	// Runs 1 and 2 fail after a second; run 3 stays.
	script := `n=$(($(cat /tmp/n 2>/dev/null || echo 0)+1)); echo $n >/tmp/n; echo "run $n"; sleep 0.2; echo "more $n" >&2
[ $n -ge 3 ] && exec sleep 3600; sleep 1; exit 1`
	pod := testPod("runs", withSidecars(corev1.Container{Name: "svc", Command: []string{"sh", "-c", script}}), func(p *corev1.Pod) {
		p.Spec.TerminationGracePeriodSeconds = &grace
	})
	once := testPod("once", withSidecars(corev1.Container{Name: "job", Command: []string{"echo", "done"}}), func(p *corev1.Pod) {
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.TerminationGracePeriodSeconds = &grace
	})
	for _, p := range []*corev1.Pod{pod, once} {
		if err := f.p.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	f.waitFor("runs", "svc running its third run", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "svc")
		return c.RestartCount == 2 && c.State.Running != nil
	})
	logs := func(pod, container string, opts api.ContainerLogOpts) (string, error) {
		t.Helper()
		rc, err := f.p.GetContainerLogs(ctx, "default", pod, container, opts)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	check := func(when string) {
		t.Helper()
		for _, tc := range []struct {
			opts api.ContainerLogOpts
			want string
		}{
			{api.ContainerLogOpts{}, "run 3\nmore 3\n"},
			{api.ContainerLogOpts{Tail: 1}, "more 3\n"},
			{api.ContainerLogOpts{Previous: true}, "run 2\nmore 2\n"},
			{api.ContainerLogOpts{Previous: true, Tail: 1}, "more 2\n"},
			{api.ContainerLogOpts{Previous: true, LimitBytes: 3}, "run"},
		} {
			// Docker writes the log as it reads the output: wait for it.
			var got string
			var err error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if got, err = logs("runs", "svc", tc.opts); err == nil && got == tc.want {
					break
				}
			}
			if err != nil || got != tc.want {
				t.Fatalf("%s: logs %+v = %q, %v; want %q", when, tc.opts, got, err, tc.want)
			}
		}
	}
	check("running")
	f.p.Close()
	f.p = f.newProvider(2)
	f.waitFor("runs", "re-adopted", sidecarRunning("svc"))
	check("after vz-node restarted")

	f.waitFor("once", "job done", func(s corev1.PodStatus) bool {
		c, _ := containerStatus(s, "job")
		return c.State.Terminated != nil
	})
	if got, err := logs("once", "job", api.ContainerLogOpts{}); err != nil || got != "done\n" {
		t.Fatalf("logs of a sidecar that ended: %q, %v", got, err)
	}
	if _, err := logs("once", "job", api.ContainerLogOpts{Previous: true}); err == nil || !strings.Contains(err.Error(), `previous terminated container "job" in pod "once" not found`) {
		t.Fatalf("logs --previous of a sidecar that ran once: %v", err)
	}
	for _, p := range []*corev1.Pod{pod, once} {
		f.deletePod(p, grace)
		f.waitNoContainers(string(p.UID))
	}
}
