package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

// A pod's init containers run in Docker, one after the other, each to
// completion, before its sidecars start and its VM boots. The VM image is
// pulled meanwhile: a macOS image takes minutes, and pulling it only once
// the init containers are done would add their time to every cold start.
// An init container that fails runs again in place after a back-off
// (restartPolicy Always or OnFailure), or fails the pod (Never). Once all
// have completed they do not run again, not even when the VM restarts: the
// kubelet, too, reruns them only for a new pod sandbox.
//
// A native sidecar (an init container with restartPolicy Always) starts in
// that order too, and the next init container waits until it has started
// (its startup probe passed); from then on it is a sidecar like those
// after the VM (sidecars.go), whose status is kept among the init
// containers'.

// reasonPodInitializing is the kubelet's waiting reason of a container
// whose pod's init containers have not completed.
const reasonPodInitializing = "PodInitializing"

// initDone reports whether the pod's init containers have all completed
// (or it has none).
func (w *podWorker) initDone() bool {
	pod, view := w.snapshot()
	return len(pod.Spec.InitContainers) == 0 || view.InitDone
}

// beginInit goes on with the init containers, unless all have completed
// or one is under way. After a vz-node restart, this finds the run it
// left: one that ran on completes, one that was waiting out a back-off
// runs again at once.
func (w *podWorker) beginInit() {
	pod, view := w.snapshot()
	cs := pod.Spec.InitContainers
	if len(cs) == 0 || view.InitDone || w.initRunning || w.initWaiting != "" {
		return
	}
	if len(view.InitContainers) != len(cs) {
		w.setView(func(v *podView) {
			v.InitContainers = make([]corev1.ContainerStatus, len(cs))
			v.NativeSidecars = nil
			for i, c := range cs {
				v.InitContainers[i] = sidecar.Waiting(c, reasonPodInitializing, "")
				if isNativeSidecar(c) {
					v.NativeSidecars = append(v.NativeSidecars, c.Name)
				}
			}
		})
	}
	w.advanceInit(0)
}

// advanceInit starts the first init container from i on that has not
// completed (a native sidecar: not started), and reports whether none is
// left, when it records that the init containers are done.
func (w *podWorker) advanceInit(i int) bool {
	pod, view := w.snapshot()
	cs := pod.Spec.InitContainers
	for ; i < len(cs) && i < len(view.InitContainers); i++ {
		st := view.InitContainers[i]
		switch {
		case isNativeSidecar(cs[i]):
			if st.Started != nil && *st.Started {
				continue
			}
			w.initWaiting = cs[i].Name
			w.ensureSidecar(cs[i])
			return false
		case completed(st):
			continue
		default:
			waiting := st.State.Waiting
			w.runInit(i, waiting != nil && waiting.Reason == ReasonCrashLoopBackOff, 0)
			return false
		}
	}
	w.markInitDone()
	return true
}

// initSidecarStarted lets the init containers go on once the native
// sidecar they wait for has started.
func (w *podWorker) initSidecarStarted(ev event) stage {
	if w.initWaiting == "" || ev.name != w.initWaiting || w.stage != stPulling && w.stage != stInitializing {
		return w.stage
	}
	pod, view := w.snapshot()
	if st, _ := sidecarStatus(view, ev.name); st.Started == nil || !*st.Started {
		return w.stage
	}
	w.initWaiting = ""
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == ev.name })
	if w.advanceInit(i+1) && w.stage == stInitializing {
		return w.requestSlot(ev)
	}
	return w.stage
}

// completed reports whether an init container's status shows it done.
func completed(st corev1.ContainerStatus) bool {
	return st.State.Terminated != nil && st.State.Terminated.ExitCode == 0
}

// runInit runs init container i to its end, after delay, and reports its
// states as evInitStatus and its end as evInitExited. rerun starts a
// container that has exited again (the earlier run failed); otherwise an
// existing container is followed as it is.
func (w *podWorker) runInit(i int, rerun bool, delay time.Duration) {
	pod, _ := w.snapshot()
	c := pod.Spec.InitContainers[i]
	run := w.dockerRun()
	if run.ctx.Err() != nil {
		return
	}
	w.initRunning = true
	d := w.p.cfg.Docker
	run.wg.Add(1)
	go func() {
		defer run.wg.Done()
		if !sleepCtx(run.ctx, delay) {
			return
		}
		var backoff time.Duration
		for {
			err := w.p.restartInit(run.ctx, w, pod, c, rerun)
			var ct sidecar.Container
			if err == nil {
				ct, err = w.p.ensureContainer(run.ctx, w, pod, c, true)
			}
			if run.ctx.Err() != nil {
				return
			}
			if err == nil {
				rerun = false
				w.post(event{kind: evInitStatus, name: c.Name, ct: &ct})
				code, werr := d.Wait(run.ctx, ct.ID)
				var end sidecar.Container
				if werr == nil {
					end, werr = d.Inspect(run.ctx, ct.ID)
				}
				if werr == nil {
					w.post(event{kind: evInitExited, name: c.Name, ct: &end, exit: &code})
					return
				}
				if run.ctx.Err() != nil {
					return
				}
				// The engine went away while the container ran: follow it
				// again once it answers.
				backoff = nextBackoff(backoff, 5*time.Second, 5*time.Minute)
				w.log.Warn("follow init container", "container", c.Name, "err", werr, "retry", backoff)
			} else {
				backoff = nextBackoff(backoff, 5*time.Second, 5*time.Minute)
				st := failedStatus(c, err)
				w.post(event{kind: evInitStatus, name: c.Name, status: &st})
				w.event(corev1.EventTypeWarning, "Failed", "Init container %q: %v (retrying in %s)", c.Name, err, backoff)
			}
			if !sleepCtx(run.ctx, backoff) {
				return
			}
		}
	}()
}

// restartInit starts an init container whose last run failed again, in
// place: its log then spans its runs, as a sidecar's does. One that no
// longer exists is created afresh by ensureContainer.
func (p *PodProvider) restartInit(ctx context.Context, w *podWorker, pod *corev1.Pod, c corev1.Container, rerun bool) error {
	if !rerun {
		return nil
	}
	err := p.cfg.Docker.Start(ctx, sidecar.Name(pod, c.Name))
	switch {
	case err == nil:
		w.event(corev1.EventTypeNormal, "Started", "Started init container %s", c.Name)
	case !sidecar.IsNotFound(err):
		return &sidecarError{reasonRunContainerError, err}
	}
	return nil
}

// initStatus records an init container's new state.
func (w *podWorker) initStatus(ev event) stage {
	pod, _ := w.snapshot()
	w.setView(func(v *podView) {
		v.InitContainers = slices.Clone(v.InitContainers)
		for i, c := range pod.Spec.InitContainers {
			if c.Name != ev.name || i >= len(v.InitContainers) {
				continue
			}
			prev := v.InitContainers[i]
			switch {
			case ev.ct != nil:
				v.DockerRunEnds = withEntry(v.DockerRunEnds, c.Name, v.DockerRunEnds[c.Name].with(*ev.ct))
				v.InitContainers[i] = initContainerStatus(c, *ev.ct, prev)
			case ev.status != nil:
				st := *ev.status
				st.LastTerminationState, st.RestartCount = prev.LastTerminationState, prev.RestartCount
				v.InitContainers[i] = st
			}
		}
	})
	return w.stage
}

// initContainerStatus renders an init container's Docker container: it is
// ready once it has completed, and its restarts are those vz-node made
// (prev's count: Docker counts only its restart policy's).
func initContainerStatus(c corev1.Container, ct sidecar.Container, prev corev1.ContainerStatus) corev1.ContainerStatus {
	st := sidecar.Status(c, ct, prev, nil)
	st.Ready = completed(st)
	st.RestartCount = prev.RestartCount
	return st
}

// initExited goes on after an init container's run ended: with the next
// one, with the sidecars and the VM after the last, or after a failure as
// the pod's restartPolicy says.
func (w *podWorker) initExited(ev event) stage {
	w.initRunning = false
	w.initStatus(ev)
	pod, view := w.snapshot()
	cs := pod.Spec.InitContainers
	i := 0
	for i < len(cs) && cs[i].Name != ev.name {
		i++
	}
	if i == len(cs) || i >= len(view.InitContainers) {
		return w.stage
	}
	if *ev.exit == 0 {
		if w.advanceInit(i+1) && w.stage == stInitializing {
			return w.requestSlot(ev)
		}
		return w.stage
	}
	if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
		msg := fmt.Sprintf("Init container %s exited with code %d and the pod's restartPolicy is Never", cs[i].Name, *ev.exit)
		w.event(corev1.EventTypeWarning, "Failed", "%s", msg)
		w.cancelActivity() // the VM image's pull
		w.stopSidecars(gracePeriod(pod), nil)
		w.setView(func(v *podView) {
			v.Final, v.Message = corev1.PodFailed, msg
			v.Stage, v.WaitingReason, v.WaitingMessage, v.Ready = stageWaiting, reasonPodInitializing, "", false
		})
		return stTerminated
	}
	delay := restartDelay(view.InitContainers[i].RestartCount)
	w.setView(func(v *podView) {
		v.InitContainers = slices.Clone(v.InitContainers)
		st := &v.InitContainers[i]
		st.LastTerminationState = st.State
		st.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: ReasonCrashLoopBackOff,
			Message: fmt.Sprintf("back-off %s restarting failed container=%s", delay, cs[i].Name)}}
		st.RestartCount++
	})
	w.event(corev1.EventTypeWarning, "BackOff", "Back-off %s restarting failed init container %s (exit code %d)", delay, cs[i].Name, *ev.exit)
	w.runInit(i, true, delay)
	return w.stage
}

// markInitDone records that the init containers have completed and starts
// the sidecars.
func (w *podWorker) markInitDone() {
	now := w.now()
	w.setView(func(v *podView) { v.InitDone, v.InitDoneSince = true, now })
	w.startSidecars()
}
