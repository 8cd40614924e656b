package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

// A Docker container that restarts in place keeps one log across its runs,
// where each of the kubelet's containers is one run: kubectl logs shows
// the current run, and --previous the one before. vz-node cuts the log
// where runs ended, at Docker's FinishedAt (to the nanosecond), which it
// records as each run ends: Docker keeps only the last.

// runEnds are the ends of a Docker container's latest runs.
type runEnds struct {
	ID   string      // the container
	Ends []time.Time // ascending
}

// keptRunEnds is enough ends to cut out the run before the last one.
const keptRunEnds = 3

// with adds the end of ct's last run, if it is new.
func (r runEnds) with(ct sidecar.Container) runEnds {
	if ct.ID != r.ID {
		r = runEnds{ID: ct.ID}
	}
	end := ct.State.FinishedAt
	if end.IsZero() || len(r.Ends) > 0 && !end.After(r.Ends[len(r.Ends)-1]) {
		return r
	}
	r.Ends = append(slices.Clone(r.Ends), end)
	r.Ends = r.Ends[max(0, len(r.Ends)-keptRunEnds):]
	return r
}

// logWindow is the part of container ct's log that holds the run kubectl
// logs asks for, as the kubelet picks the container: the running one, else
// the last that ended; with previous, the one before it (the last that
// ended, while the engine waits to restart it). A zero bound is open.
// ok is false when there is no such run.
func logWindow(ct sidecar.Container, r runEnds, previous bool) (since, until time.Time, ok bool) {
	ends := r.with(ct).Ends
	running := ct.State.Running && !ct.State.Restarting
	var run int // runs count from 0; run i ended at ends[i]
	switch {
	case running && previous:
		run = len(ends) - 1
	case running:
		run = len(ends)
	case ct.State.Restarting || !previous:
		run = len(ends) - 1
	default:
		run = len(ends) - 2
	}
	if run < 0 || !running && !ct.State.Restarting && ct.State.StartedAt.IsZero() {
		return since, until, false
	}
	if run > 0 {
		since = ends[run-1].Add(time.Nanosecond)
	}
	if run < len(ends)-1 || running && run == len(ends)-1 {
		until = ends[run]
	}
	return since, until, true
}

// sidecarLogs returns the output of the run of a pod's Docker container
// (name) that kubectl asks for.
func (p *PodProvider) sidecarLogs(ctx context.Context, w *podWorker, name string, c corev1.Container, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	if w == nil {
		return nil, errdefs.NotFoundf("pod of container %s is not on this node", c.Name)
	}
	d := p.cfg.Docker
	ct, err := d.Inspect(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", c.Name, err)
	}
	pod, view := w.snapshot()
	since, until, ok := logWindow(ct, view.DockerRunEnds[c.Name], opts.Previous)
	if !ok {
		if opts.Previous {
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", c.Name, pod.Name)
		}
		return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start", c.Name, pod.Name)
	}
	o := sidecar.LogOptions{Follow: opts.Follow && until.IsZero(), Timestamps: opts.Timestamps, Since: since, Until: until, TTY: c.TTY}
	switch {
	case opts.SinceSeconds > 0:
		o.Since = laterOf(o.Since, p.cfg.Now().Add(-time.Duration(opts.SinceSeconds)*time.Second))
	case !opts.SinceTime.IsZero():
		o.Since = laterOf(o.Since, opts.SinceTime)
	}
	// The engine takes the tail before it cuts the window: right for the
	// open end of the log, not for a run that another followed.
	if until.IsZero() {
		o.Tail = opts.Tail
	}
	rc, err := d.Logs(context.WithoutCancel(ctx), ct.ID, o)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", c.Name, err)
	}
	if !until.IsZero() && opts.Tail > 0 {
		defer rc.Close()
		b, err := lastLines(rc, opts.Tail)
		if err != nil {
			return nil, fmt.Errorf("logs of %s: %w", c.Name, err)
		}
		rc = io.NopCloser(bytes.NewReader(b))
	}
	return limited(rc, opts.LimitBytes), nil
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// lastLines reads r to its end and returns its last n lines.
func lastLines(r io.Reader, n int) ([]byte, error) {
	br := bufio.NewReader(r)
	ring := make([][]byte, n) // line i at i%n
	count := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			ring[count%n] = line
			count++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	var out []byte
	for i := max(0, count-n); i < count; i++ {
		out = append(out, ring[i%n]...)
	}
	return out, nil
}
