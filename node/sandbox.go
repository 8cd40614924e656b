package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

// A pod's Docker containers share the network namespace of its sandbox
// (see sidecar.Sandbox). A container keeps the namespace it joined when it
// started, so when the sandbox dies or is removed behind vz-node's back (a
// user's docker rm, an engine that restarts it), the containers still
// running are cut off from each other and from their published ports. As
// the kubelet does on SandboxChanged, vz-node then kills them and starts
// them anew in the sandbox as it runs now. Unlike the kubelet's, the pod's
// VM, which has a network of its own, is left running.

// reasonSandboxChanged is the kubelet's Event reason for this.
const reasonSandboxChanged = "SandboxChanged"

// sandboxStartWait is how often a sandbox the engine is restarting is
// looked at again.
const sandboxStartWait = 200 * time.Millisecond

// declinedCheckDelay is how long after a sidecar exits, and the engine
// declines to restart it, its pod is checked (see renewSandbox): long
// enough for an engine that is shutting down to have stopped the pod's
// sandbox too, whose pause process ends at the first SIGTERM.
const declinedCheckDelay = 2 * time.Second

// ensureSandbox returns the ID of the pod's sandbox (see sidecar.Sandbox),
// creating it first from the sandbox image (pulled if the engine lacks
// it), and starting it if it does not run.
func (p *PodProvider) ensureSandbox(ctx context.Context, w *podWorker, pod *corev1.Pod) (string, error) {
	w.sandboxMu.Lock()
	defer w.sandboxMu.Unlock()
	d := p.cfg.Docker
	name := sidecar.SandboxName(pod)
	ct, err := d.Inspect(ctx, name)
	if sidecar.IsNotFound(err) {
		pause := corev1.Container{Name: "POD", Image: p.cfg.SandboxImage, ImagePullPolicy: corev1.PullIfNotPresent}
		if err := p.sidecarImage(ctx, w, pod, pause); err != nil {
			return "", fmt.Errorf("pod sandbox: %w (set vz-node's sandboxImage to a pause image the engine can get)", err)
		}
		if _, err := d.Create(ctx, sidecar.Sandbox(pod, p.cfg.NodeName, p.cfg.SandboxImage, dockerContainers(pod))); err != nil && !sidecar.IsConflict(err) {
			return "", &sidecarError{reasonCreateContainerError, fmt.Errorf("pod sandbox: %w", err)}
		}
		ct, err = d.Inspect(ctx, name)
	}
	if err != nil {
		return "", &sidecarError{reasonCreateContainerError, fmt.Errorf("pod sandbox: %w", err)}
	}
	if !ct.State.Running {
		if err := d.Start(ctx, ct.ID); err != nil {
			return "", &sidecarError{reasonRunContainerError, fmt.Errorf("pod sandbox: %w", err)}
		}
	}
	return ct.ID, nil
}

// sandboxChanged checks, off the loop, that the pod's running Docker
// containers are in its sandbox's network namespace. It follows every
// start, death and removal of the sandbox, and each (re)connection to the
// engine, which may have missed some.
func (w *podWorker) sandboxChanged(ev event) stage {
	run := w.sidecars
	if run == nil || run.ctx.Err() != nil {
		return w.stage
	}
	pod, _ := w.snapshot()
	run.wg.Go(func() { w.p.renewSandbox(run.ctx, w, pod, ev.resync) })
	return w.stage
}

// renewSandbox makes sure the pod's sandbox runs when any of its Docker
// containers does, and moves those that are not in its network namespace
// into it (see leaveSandbox). Checks run one at a time, and one finding
// nothing to do does nothing.
//
// It also starts the sidecars that have exited and that the engine will
// not restart although their restart policy says they run (see
// restartDeclined), but for those vz-node holds stopped. Between resyncs,
// it does so only while the sandbox runs, and never starts a sandbox that
// exited: that is an engine shutting down, which stops every container
// and whose API still answers meanwhile. A container started then
// outlives it, and the engine kills it when it starts again, without
// restarting it. A user's docker stop of a sidecar leaves the sandbox
// running.
func (p *PodProvider) renewSandbox(ctx context.Context, w *podWorker, pod *corev1.Pod, resync bool) {
	w.renewMu.Lock()
	defer w.renewMu.Unlock()
	d := p.cfg.Docker
	type joined struct {
		c  corev1.Container
		ct sidecar.Container
	}
	var running, declined []joined
	for _, c := range dockerContainers(pod) {
		ct, err := d.Inspect(ctx, sidecar.Name(pod, c.Name))
		switch {
		case err != nil || sandboxID(ct) == "":
			// A container with a network of its own, made by a vz-node
			// from before sandboxes, is left as it is: moving it would
			// restart it under a running build.
		case ct.State.Running:
			running = append(running, joined{c, ct})
		case restartDeclined(pod, c, ct) && !w.isHeld(c.Name):
			declined = append(declined, joined{c, ct})
		}
	}
	if len(running) == 0 && len(declined) == 0 {
		return // the next container to start makes sure of the sandbox
	}
	sb, ok := p.runningSandbox(ctx, w, pod, resync)
	if !ok {
		return
	}
	var stale []joined
	for _, j := range running {
		if !inSandbox(j.ct, sb) {
			stale = append(stale, j)
		}
	}
	if len(stale) > 0 {
		w.event(corev1.EventTypeNormal, reasonSandboxChanged, "Pod sandbox changed, it will be killed and re-created.")
	}
	var wg sync.WaitGroup
	for _, j := range stale {
		wg.Go(func() { p.leaveSandbox(ctx, w, pod, j.c, j.ct) })
	}
	for _, j := range declined {
		wg.Go(func() { p.restartSidecar(ctx, w, j.c, j.ct, sb) })
	}
	wg.Wait()
}

// hold marks sidecar name as kept stopped by vz-node, or no longer.
func (w *podWorker) hold(name string, held bool) {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	if w.held == nil {
		w.held = map[string]bool{}
	}
	w.held[name] = held
}

func (w *podWorker) isHeld(name string) bool {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	return w.held[name]
}

// restartDeclined reports whether sidecar c, whose container ct has
// exited, should run again by its restart policy although the engine will
// not restart it: a user stopped it with docker stop, or the engine,
// restarting, did not bring it back (as Docker's restart policy may not
// for a container it killed while shutting down). The kubelet restarts
// its containers itself; vz-node leaves it to Docker's restart policy and
// steps in only then.
func restartDeclined(pod *corev1.Pod, c corev1.Container, ct sidecar.Container) bool {
	if ct.State.Status != "exited" || ct.State.Restarting || !slices.ContainsFunc(sidecarsOf(pod), func(s corev1.Container) bool { return s.Name == c.Name }) {
		return false
	}
	switch {
	case isNativeSidecar(c):
		return true
	case pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure:
		return ct.State.ExitCode != 0
	}
	return pod.Spec.RestartPolicy != corev1.RestartPolicyNever
}

// restartSidecar starts sidecar c's exited container ct again, in sandbox
// sb; one that joined a sandbox that is gone is removed instead, and made
// again in sb (sidecarGone). Its new run counts as a restart.
func (p *PodProvider) restartSidecar(ctx context.Context, w *podWorker, c corev1.Container, ct sidecar.Container, sb sidecar.Container) {
	d := p.cfg.Docker
	inSB := sandboxID(ct) == sb.ID
	var err error
	if inSB {
		err = d.Start(ctx, ct.ID)
	} else {
		err = d.Remove(ctx, ct.ID)
	}
	switch {
	case err != nil && ctx.Err() == nil && !sidecar.IsNotFound(err):
		w.event(corev1.EventTypeWarning, "Failed", "Starting sidecar %s, which exited and which the engine did not restart: %v", c.Name, err)
	case err != nil:
	case inSB:
		w.event(corev1.EventTypeNormal, "Started", "Started container %s again: it exited (code %d) and the engine did not restart it", c.Name, ct.State.ExitCode)
	default:
		w.event(corev1.EventTypeNormal, "Killing", "Container %s exited (code %d) in a pod sandbox that is gone, and the engine did not restart it; it will be re-created", c.Name, ct.State.ExitCode)
	}
}

// runningSandbox returns the pod's sandbox once it runs, creating or
// starting it as needed and retrying with back-off; false when ctx ends
// first, or (unless start is set) when it exited and the engine will not
// restart it.
func (p *PodProvider) runningSandbox(ctx context.Context, w *podWorker, pod *corev1.Pod, start bool) (sidecar.Container, bool) {
	var backoff time.Duration
	for {
		if !start {
			sb, err := p.cfg.Docker.Inspect(ctx, sidecar.SandboxName(pod))
			if err == nil && !sb.State.Running && !sb.State.Restarting {
				return sb, false
			}
		}
		id, err := p.ensureSandbox(ctx, w, pod)
		var sb sidecar.Container
		if err == nil {
			sb, err = p.cfg.Docker.Inspect(ctx, id)
		}
		switch {
		case err == nil && sb.State.Running && !sb.State.Restarting:
			return sb, true
		case err == nil:
			// The engine is restarting it (its restart policy).
			if !sleepCtx(ctx, sandboxStartWait) {
				return sb, false
			}
			continue
		case ctx.Err() != nil:
			return sb, false
		}
		backoff = nextBackoff(backoff, time.Second, time.Minute)
		w.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", "%v (retrying in %s)", err, backoff)
		if !sleepCtx(ctx, backoff) {
			return sb, false
		}
	}
}

// sandboxID is the container whose network namespace ct joined, or ""
// when it has a network of its own.
func sandboxID(ct sidecar.Container) string {
	id, _ := strings.CutPrefix(ct.HostConfig.NetworkMode, "container:")
	if id == ct.HostConfig.NetworkMode {
		return ""
	}
	return id
}

// inSandbox reports whether container ct runs in the network namespace
// sandbox sb has now: it joined sb, and started after sb last did.
func inSandbox(ct, sb sidecar.Container) bool {
	return sandboxID(ct) == sb.ID && !ct.State.StartedAt.Before(sb.State.StartedAt)
}

// leaveSandbox kills container c (running as ct) out of a sandbox that is
// gone, within the pod's grace period. A sidecar that restarts is then
// removed, and is created again in the running sandbox as one removed
// behind vz-node's back is (sidecarGone), its restart counted; so is an
// init container, whose run starts over (runInit). A sidecar of a pod
// whose restartPolicy is Never stays terminated.
func (p *PodProvider) leaveSandbox(ctx context.Context, w *podWorker, pod *corev1.Pod, c corev1.Container, ct sidecar.Container) {
	d := p.cfg.Docker
	restart := !slices.ContainsFunc(afterVM(pod), func(s corev1.Container) bool { return s.Name == c.Name }) ||
		pod.Spec.RestartPolicy != corev1.RestartPolicyNever
	err := d.Stop(ctx, ct.ID, max(minStopGrace, killGrace(pod, nil)))
	if err == nil && restart {
		err = d.Remove(ctx, ct.ID)
	}
	if err != nil && ctx.Err() == nil && !sidecar.IsNotFound(err) {
		w.event(corev1.EventTypeWarning, "Failed", "Killing container %s out of the old pod sandbox: %v", c.Name, err)
	}
}

// sandboxesLast orders containers to be removed: pods' sandboxes after
// the containers that use their network.
func sandboxesLast(cts []sidecar.Summary) []sidecar.Summary {
	slices.SortStableFunc(cts, func(a, b sidecar.Summary) int {
		return strings.Compare(a.Labels[sidecar.LabelSandbox], b.Labels[sidecar.LabelSandbox])
	})
	return cts
}
