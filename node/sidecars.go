package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

// A pod's containers after the first run as Docker sidecars beside its VM.
// Docker owns their lifecycle once they are created: its restart policy
// follows the pod's, and vz-node follows Docker's event stream to push
// their status. They start as soon as the pod is accepted and its init
// containers have completed (they need not wait for the VM image), keep
// running while the VM restarts, are stopped when the VM ends for good, and
// are removed with the pod.

// Waiting reasons of a sidecar, as the kubelet names them.
const (
	reasonContainerCreating    = "ContainerCreating"
	reasonErrImageNeverPull    = "ErrImageNeverPull"
	reasonCreateContainerError = "CreateContainerError"
	reasonRunContainerError    = "RunContainerError"
)

// sidecarError is a failure to bring a sidecar up, with the waiting reason
// it shows as.
type sidecarError struct {
	reason string
	err    error
}

func (e *sidecarError) Error() string { return e.err.Error() }

// sidecarRun is a worker's Docker work: its init containers' runs, the
// loops that create its sidecars, and once asked, their graceful stop.
type sidecarRun struct {
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped chan struct{} // closed when a stop has ended; nil before one
}

// sidecarsOf returns a pod's sidecars: its native sidecars (init
// containers with restartPolicy Always), then its containers after the VM.
func sidecarsOf(pod *corev1.Pod) []corev1.Container {
	var cs []corev1.Container
	for _, c := range pod.Spec.InitContainers {
		if isNativeSidecar(c) {
			cs = append(cs, c)
		}
	}
	return append(cs, afterVM(pod)...)
}

// afterVM returns the pod's containers after the VM.
func afterVM(pod *corev1.Pod) []corev1.Container {
	if len(pod.Spec.Containers) < 2 {
		return nil
	}
	return pod.Spec.Containers[1:]
}

// isNativeSidecar reports whether init container c is a sidecar: it starts
// in the init containers' order and then runs beside the VM.
func isNativeSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// dockerContainers returns all of the pod's containers that run in Docker.
func dockerContainers(pod *corev1.Pod) []corev1.Container {
	return append(slices.Clone(pod.Spec.InitContainers), afterVM(pod)...)
}

// sidecarSlot returns where sidecar name's status is kept in v (among the
// init containers' for a native sidecar), or nil before it has one. The
// list it is in is replaced by a copy first: readers hold copies of the
// view that share it.
func sidecarSlot(v *podView, name string) *corev1.ContainerStatus {
	for _, list := range []*[]corev1.ContainerStatus{&v.Sidecars, &v.InitContainers} {
		if i := statusIndex(*list, name); i >= 0 {
			*list = slices.Clone(*list)
			return &(*list)[i]
		}
	}
	return nil
}

// sidecarStatus returns sidecar name's status in v.
func sidecarStatus(v podView, name string) (corev1.ContainerStatus, bool) {
	for _, list := range [][]corev1.ContainerStatus{v.Sidecars, v.InitContainers} {
		if i := statusIndex(list, name); i >= 0 {
			return list[i], true
		}
	}
	return corev1.ContainerStatus{}, false
}

func statusIndex(list []corev1.ContainerStatus, name string) int {
	return slices.IndexFunc(list, func(st corev1.ContainerStatus) bool { return st.Name == name })
}

// hasDockerContainers reports whether any of the pod's containers run in
// Docker.
func hasDockerContainers(pod *corev1.Pod) bool {
	return len(pod.Spec.InitContainers) > 0 || len(pod.Spec.Containers) > 1
}

// dockerRun returns the worker's Docker work, begun on first use.
func (w *podWorker) dockerRun() *sidecarRun {
	if w.sidecars == nil {
		ctx, cancel := context.WithCancel(w.ctx)
		w.sidecars = &sidecarRun{ctx: ctx, cancel: cancel}
	}
	return w.sidecars
}

// startSidecars brings up the pod's sidecars, once per worker, once its
// init containers have completed (native sidecars, which started among
// them, are made sure of again).
func (w *podWorker) startSidecars() {
	pod, _ := w.snapshot()
	cs := sidecarsOf(pod)
	if len(cs) == 0 || w.sidecarsUp || !w.initDone() {
		return
	}
	if w.dockerRun().ctx.Err() != nil {
		return
	}
	w.sidecarsUp = true
	w.setView(func(v *podView) {
		if after := afterVM(pod); len(v.Sidecars) != len(after) {
			v.Sidecars = make([]corev1.ContainerStatus, len(after))
			for i, c := range after {
				v.Sidecars[i] = sidecar.Waiting(c, reasonContainerCreating, "")
			}
		}
	})
	for _, c := range cs {
		w.ensureSidecar(c)
	}
	// Sidecars that outlived a vz-node restart may be in a sandbox that
	// died meanwhile, or have exited for good.
	w.sandboxChanged(event{resync: true})
}

// ensureSidecar creates and starts sidecar c unless its container exists,
// retrying with back-off; its status follows as events.
func (w *podWorker) ensureSidecar(c corev1.Container) {
	run := w.dockerRun()
	if run.ctx.Err() != nil {
		return
	}
	pod, _ := w.snapshot()
	run.wg.Add(1)
	go func() {
		defer run.wg.Done()
		var backoff time.Duration
		for {
			ct, err := w.p.ensureContainer(run.ctx, w, pod, c, false)
			if run.ctx.Err() != nil {
				return
			}
			if err == nil {
				w.post(event{kind: evSidecar, name: c.Name, ct: &ct})
				return
			}
			backoff = nextBackoff(backoff, 5*time.Second, 5*time.Minute)
			st := failedStatus(c, err)
			w.post(event{kind: evSidecar, name: c.Name, status: &st})
			w.event(corev1.EventTypeWarning, "Failed", "Sidecar %q: %v (retrying in %s)", c.Name, err, backoff)
			select {
			case <-run.ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}()
}

// failedStatus is the waiting status of container c, which could not be
// brought up for err.
func failedStatus(c corev1.Container, err error) corev1.ContainerStatus {
	reason := reasonCreateContainerError
	var se *sidecarError
	if errors.As(err, &se) {
		reason = se.reason
	}
	return sidecar.Waiting(c, reason, err.Error())
}

// ensureContainer returns the container of sidecar or init container c,
// creating and starting it when it does not exist. An existing container is
// left as Docker keeps it: one that exited stays exited (its restart policy,
// or for an init container vz-node, decides whether it runs again).
func (p *PodProvider) ensureContainer(ctx context.Context, w *podWorker, pod *corev1.Pod, c corev1.Container, init bool) (sidecar.Container, error) {
	d := p.cfg.Docker
	kind := "sidecar"
	if init {
		kind = "init"
	}
	name := sidecar.Name(pod, c.Name)
	ct, err := d.Inspect(ctx, name)
	missing := sidecar.IsNotFound(err)
	switch {
	case err == nil && ct.State.Status != "created":
		return ct, nil
	case err != nil && !missing:
		return ct, &sidecarError{reasonCreateContainerError, err}
	}
	// One created but never started (vz-node stopped in between) is
	// started now. The container joins the sandbox's network, which must
	// run before it starts.
	sandbox, err := p.ensureSandbox(ctx, w, pod)
	if err != nil {
		return ct, err
	}
	if missing {
		if err := p.sidecarImage(ctx, w, pod, c); err != nil {
			return ct, err
		}
		binds, err := p.sidecarBinds(pod, c)
		if err != nil {
			return ct, &sidecarError{ReasonCreateContainerConfigError, err}
		}
		spec := sidecar.Spec(pod, c, p.cfg.NodeName, binds)
		spec.NetworkMode = "container:" + sandbox
		if init {
			// vz-node runs a failed init container again itself.
			spec.RestartPolicy = "no"
		}
		id, err := d.Create(ctx, spec)
		if err != nil && !sidecar.IsConflict(err) {
			return ct, &sidecarError{reasonCreateContainerError, err}
		}
		if err == nil {
			w.event(corev1.EventTypeNormal, "Created", "Created %s container %s", kind, c.Name)
			name = id
		}
	}
	if err := d.Start(ctx, name); err != nil {
		return ct, &sidecarError{reasonRunContainerError, err}
	}
	w.event(corev1.EventTypeNormal, "Started", "Started %s container %s", kind, c.Name)
	ct, err = d.Inspect(ctx, name)
	if err != nil {
		return ct, &sidecarError{reasonCreateContainerError, err}
	}
	return ct, nil
}

// sidecarImage makes sure the engine has c's image, as its pull policy
// says, with the pod's pull secrets.
func (p *PodProvider) sidecarImage(ctx context.Context, w *podWorker, pod *corev1.Pod, c corev1.Container) error {
	d := p.cfg.Docker
	if c.ImagePullPolicy != corev1.PullAlways {
		_, err := d.ImageID(ctx, c.Image)
		if err == nil {
			return nil
		}
		if !sidecar.IsNotFound(err) {
			return &sidecarError{ReasonErrImagePull, err}
		}
		if c.ImagePullPolicy == corev1.PullNever {
			return &sidecarError{reasonErrImageNeverPull, fmt.Errorf("image %q is not present on the node and the pull policy is Never", c.Image)}
		}
	}
	w.event(corev1.EventTypeNormal, "Pulling", "Pulling image %q for container %s", c.Image, c.Name)
	start := time.Now()
	if err := d.Pull(ctx, c.Image, dockerAuth(c.Image, p.pullAuth(ctx, pod))); err != nil {
		return &sidecarError{ReasonErrImagePull, err}
	}
	w.event(corev1.EventTypeNormal, "Pulled", "Pulled image %q for container %s in %s", c.Image, c.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// dockerAuth picks the pull secret for ref's registry.
func dockerAuth(ref string, auths []RegistryAuth) *sidecar.Auth {
	host := dockerRegistry(ref)
	for _, a := range auths {
		h := registryHost(a.Registry)
		if h == host || host == "docker.io" && (h == "https://index.docker.io/v1/" || h == "index.docker.io") {
			return &sidecar.Auth{Username: a.Username, Password: a.Password, IdentityToken: a.Token, ServerAddress: a.Registry}
		}
	}
	return nil
}

// dockerRegistry is the registry host of a Docker image reference, as
// Docker reads it: the first path element when it looks like a host.
func dockerRegistry(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "docker.io"
}

// sidecarChanged records a sidecar's new status; a native sidecar that
// has started lets the init containers go on.
func (w *podWorker) sidecarChanged(ev event) stage {
	pod, _ := w.snapshot()
	cs := sidecarsOf(pod)
	w.setView(func(v *podView) {
		for _, c := range cs {
			if c.Name != ev.name {
				continue
			}
			slot := sidecarSlot(v, c.Name)
			if slot == nil {
				continue
			}
			switch {
			case ev.ct != nil:
				v.DockerRunEnds = withEntry(v.DockerRunEnds, c.Name, v.DockerRunEnds[c.Name].with(*ev.ct))
				prev := *slot
				render := func() corev1.ContainerStatus {
					ct := *ev.ct
					ct.RestartCount += int(v.SidecarKills[c.Name])
					return sidecar.Status(c, ct, prev, ev.exit)
				}
				st := render()
				if before := runStart(prev); !before.IsZero() && runStart(st).After(before.Time) && st.RestartCount <= prev.RestartCount {
					// A run Docker's count does not show: a start that is
					// not its restart policy's (vz-node's, or the engine's
					// as it starts) sets that count back to zero.
					v.SidecarKills = withEntry(v.SidecarKills, c.Name, v.SidecarKills[c.Name]+prev.RestartCount+1-st.RestartCount)
					st = render()
				}
				*slot = st
			case ev.status != nil:
				st := *ev.status
				st.RestartCount = slot.RestartCount
				*slot = st
			}
			w.followProbes(v, c, slot)
		}
	})
	return w.initSidecarStarted(ev)
}

// withEntry returns a copy of m with k set to v: maps in a view are shared
// with the copies readers hold, so they are replaced, never written.
func withEntry[V any](m map[string]V, k string, v V) map[string]V {
	m = maps.Clone(m)
	if m == nil {
		m = map[string]V{}
	}
	m[k] = v
	return m
}

// sidecarProbe is the probing of one run of a sidecar. Loop-owned.
type sidecarProbe struct {
	run            string // container ID and start time; empty while not running
	cancel         context.CancelFunc
	started, ready bool
}

// followProbes starts a sidecar's postStart hook and probes afresh for
// each run of its container, and makes st, in v, say what they found. The
// hook runs once per run, also across vz-node restarts (v records it).
func (w *podWorker) followProbes(v *podView, c corev1.Container, st *corev1.ContainerStatus) {
	postStart := c.Lifecycle != nil && c.Lifecycle.PostStart != nil
	if c.ReadinessProbe == nil && c.StartupProbe == nil && c.LivenessProbe == nil && !postStart || w.sidecars == nil {
		return
	}
	if w.probes == nil {
		w.probes = map[string]*sidecarProbe{}
	}
	run := runID(st)
	pr := w.probes[c.Name]
	if pr == nil || pr.run != run {
		if pr != nil {
			pr.cancel()
		}
		pr = &sidecarProbe{run: run, started: c.StartupProbe == nil, cancel: func() {}}
		w.probes[c.Name] = pr
		if run != "" {
			hook := postStart && v.SidecarHooked[c.Name] != run
			if hook {
				v.SidecarHooked = withEntry(v.SidecarHooked, c.Name, run)
			}
			pr.cancel = w.probeSidecar(c, strings.TrimPrefix(st.ContainerID, "docker://"), run, hook)
		}
	}
	started := run != "" && pr.started
	st.Started = &started
	st.Ready = started && (c.ReadinessProbe == nil || pr.ready)
}

// runStart is when the run st shows started; zero when it shows none.
func runStart(st corev1.ContainerStatus) metav1.Time {
	switch {
	case st.State.Running != nil:
		return st.State.Running.StartedAt
	case st.State.Terminated != nil:
		return st.State.Terminated.StartedAt
	}
	return metav1.Time{}
}

// runID names the run of a sidecar's container that st shows running, or
// is empty.
func runID(st *corev1.ContainerStatus) string {
	if st.State.Running == nil {
		return ""
	}
	return st.ContainerID + "@" + st.State.Running.StartedAt.UTC().String()
}

// probeSidecar runs a sidecar's postStart hook (when hook is set), then its
// exec probes, in its container through Docker and reports their results
// for run. A failed hook kills the run, as a failed liveness probe does.
func (w *podWorker) probeSidecar(c corev1.Container, id, run string, hook bool) context.CancelFunc {
	ctx, cancel := context.WithCancel(w.sidecars.ctx)
	addr := w.sidecarAddr()
	env := probeEnv{c: c, addr: addr, proxied: true, exec: func(ctx context.Context, argv []string) error { return w.p.sidecarExec(ctx, id, argv) }}
	go func() {
		if hook {
			if err := w.p.sidecarHook(ctx, c, id, addr, c.Lifecycle.PostStart); err != nil {
				if ctx.Err() == nil {
					w.event(corev1.EventTypeWarning, "FailedPostStartHook", "PostStart hook of sidecar %s failed: %v", c.Name, err)
					w.post(event{kind: evSidecarUnhealthy, name: c.Name, probeRun: run, reason: "FailedPostStartHook"})
				}
				return
			}
		}
		if c.StartupProbe != nil {
			if err := probeUntil(ctx, env, c.StartupProbe, true); err != nil {
				if ctx.Err() == nil {
					w.event(corev1.EventTypeWarning, "Unhealthy", "Startup probe of sidecar %s failed: %v", c.Name, err)
				}
				return
			}
			w.post(event{kind: evSidecarProbe, name: c.Name, probeRun: run, started: true})
		}
		if c.LivenessProbe != nil {
			go func() {
				if err := probeUntil(ctx, env, c.LivenessProbe, false); err != nil && ctx.Err() == nil {
					w.event(corev1.EventTypeWarning, "Unhealthy", "Liveness probe of sidecar %s failed: %v", c.Name, err)
					w.post(event{kind: evSidecarUnhealthy, name: c.Name, probeRun: run, reason: "Unhealthy"})
				}
			}()
		}
		if c.ReadinessProbe != nil {
			readinessLoop(ctx, env, c.ReadinessProbe, func(ready bool, err error) {
				if err != nil {
					w.event(corev1.EventTypeWarning, "Unhealthy", "Readiness probe of sidecar %s failed: %v", c.Name, err)
				}
				w.post(event{kind: evSidecarProbe, name: c.Name, probeRun: run, started: true, ready: ready})
			})
		}
	}()
	return cancel
}

// sidecarProbed records a probe result of the sidecar's current run.
func (w *podWorker) sidecarProbed(ev event) stage {
	pr := w.probes[ev.name]
	if pr == nil || pr.run != ev.probeRun {
		return w.stage
	}
	pr.started, pr.ready = ev.started, ev.ready
	pod, _ := w.snapshot()
	w.setView(func(v *podView) {
		for _, c := range sidecarsOf(pod) {
			if c.Name != ev.name {
				continue
			}
			if slot := sidecarSlot(v, c.Name); slot != nil {
				w.followProbes(v, c, slot)
			}
		}
	})
	return w.initSidecarStarted(ev)
}

// sidecarUnhealthy kills the sidecar run whose liveness probe or postStart
// hook failed, as the kubelet does: within its grace period (after its
// preStop hook), and starts it again unless the pod's restartPolicy is
// Never (a native sidecar always), at once after a liveness failure, after
// a back-off after a hook's.
// The restart counts in its status once the new run shows (see
// sidecarChanged).
func (w *podWorker) sidecarUnhealthy(ev event) stage {
	pr := w.probes[ev.name]
	run := w.sidecars
	if pr == nil || pr.run != ev.probeRun || run == nil || run.ctx.Err() != nil {
		return w.stage
	}
	pr.cancel() // this run is done with probing
	pod, view := w.snapshot()
	for _, c := range sidecarsOf(pod) {
		if c.Name != ev.name {
			continue
		}
		if st, ok := sidecarStatus(view, c.Name); ok {
			id := strings.TrimPrefix(st.ContainerID, "docker://")
			grace := killGrace(pod, c.LivenessProbe)
			why := "failed liveness probe"
			if ev.reason == "FailedPostStartHook" {
				why, grace = "failed its postStart hook", killGrace(pod, nil)
			}
			restart := pod.Spec.RestartPolicy != corev1.RestartPolicyNever || isNativeSidecar(c)
			if restart {
				w.event(corev1.EventTypeNormal, "Killing", "Container %s %s, will be restarted", c.Name, why)
			} else {
				w.event(corev1.EventTypeNormal, "Killing", "Container %s %s", c.Name, why)
			}
			var delay time.Duration // before a restart after a failed hook
			if restart && ev.reason == "FailedPostStartHook" {
				delay = w.hookBackoff(c.Name)
			}
			run.wg.Add(1)
			go func() {
				defer run.wg.Done()
				left := w.p.preStop(run.ctx, w, c, id, grace)
				d := w.p.cfg.Docker
				var err error
				switch {
				case restart && delay == 0:
					err = d.Restart(run.ctx, id, left)
				case restart:
					w.hold(c.Name, true)
					if err = d.Stop(run.ctx, id, left); err == nil && sleepCtx(run.ctx, delay) {
						w.hold(c.Name, false)
						err = d.Start(run.ctx, id)
					}
					w.hold(c.Name, false)
				default:
					err = d.Stop(run.ctx, id, left)
				}
				if err != nil && run.ctx.Err() == nil {
					w.event(corev1.EventTypeWarning, "Failed", "Killing sidecar %s after it %s: %v", c.Name, why, err)
				}
			}()
		}
	}
	return w.stage
}

// hookBackoffBase is the wait before a sidecar whose postStart hook failed
// starts again; it doubles with each failure up to hookBackoffMax, and
// starts over after hookBackoffReset without one, as the kubelet's
// crash-loop back-off does.
var hookBackoffBase = 10 * time.Second

const (
	hookBackoffMax   = 5 * time.Minute
	hookBackoffReset = 10 * time.Minute
)

// hookBackoff is a sidecar's failed postStart hooks. Loop-owned.
type hookBackoff struct {
	delay time.Duration
	last  time.Time
}

// hookBackoff returns how long sidecar name waits before it starts again
// after its postStart hook failed now.
func (w *podWorker) hookBackoff(name string) time.Duration {
	if w.hookFails == nil {
		w.hookFails = map[string]hookBackoff{}
	}
	b := w.hookFails[name]
	if time.Since(b.last) > hookBackoffReset {
		b.delay = 0
	}
	b.delay, b.last = nextBackoff(b.delay, hookBackoffBase, hookBackoffMax), time.Now()
	w.hookFails[name] = b
	return b.delay
}

// sidecarAddr reaches the ports of the pod's sidecars where Docker
// publishes them on the loopback interface: the pod's sandbox's ports (see
// sidecar.Sandbox). They stay where they are while it runs, so the first
// answer is kept.
//
// The pod is read at the first call: callers may hold the worker's lock.
func (w *podWorker) sidecarAddr() portAddr {
	var (
		mu  sync.Mutex
		ct  sidecar.Container
		got bool
	)
	return func(ctx context.Context, port int) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if !got {
			pod, _ := w.snapshot()
			c, err := w.p.cfg.Docker.Inspect(ctx, sidecar.SandboxName(pod))
			if err != nil {
				return "", err
			}
			if !c.State.Running {
				return "", fmt.Errorf("the pod's sandbox %s does not run", sidecar.SandboxName(pod))
			}
			ct, got = c, true
		}
		if addr, ok := ct.LoopbackAddr(port); ok {
			return addr, nil
		}
		return "", fmt.Errorf("port %d is not published on the host's loopback interface; declare it in the container's ports", port)
	}
}

// sidecarExec runs argv in a sidecar's container and fails unless it
// exits 0.
func (p *PodProvider) sidecarExec(ctx context.Context, id string, argv []string) error {
	var out bytes.Buffer
	code, err := p.cfg.Docker.Exec(ctx, id, argv, sidecar.IO{Stdout: &out, Stderr: &out})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("command %q exited with %d: %s", argv, code, truncate(out.String(), 200))
	}
	return nil
}

// sidecarHook runs a lifecycle handler of sidecar c, container id, whose
// ports addr reaches: exec, httpGet or sleep (the kinds sidecar.Validate
// lets through).
func (p *PodProvider) sidecarHook(ctx context.Context, c corev1.Container, id string, addr portAddr, h *corev1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		return p.sidecarExec(ctx, id, h.Exec.Command)
	case h.HTTPGet != nil:
		return httpGet(ctx, addr, c, h.HTTPGet)
	case h.Sleep != nil:
		sleepCtx(ctx, time.Duration(h.Sleep.Seconds)*time.Second)
		return nil
	}
	return fmt.Errorf("lifecycle hook has no exec, httpGet or sleep handler")
}

// minStopGrace is the least time a container gets between SIGTERM and
// SIGKILL, whatever is left of the grace period: the kubelet's
// minimumGracePeriodInSeconds.
const minStopGrace = 2 * time.Second

// preStop runs sidecar c's preStop hook, if any, within grace and returns
// what is left of grace for the stop itself, at least minStopGrace.
func (p *PodProvider) preStop(ctx context.Context, w *podWorker, c corev1.Container, id string, grace time.Duration) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return max(minStopGrace, grace)
	}
	start := time.Now()
	hctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	if err := p.sidecarHook(hctx, c, id, w.sidecarAddr(), c.Lifecycle.PreStop); err != nil && ctx.Err() == nil {
		w.event(corev1.EventTypeWarning, "FailedPreStopHook", "PreStop hook of sidecar %s failed: %v", c.Name, err)
	}
	return max(minStopGrace, grace-time.Since(start))
}

// killGrace is how long a container killed for its liveness probe gets to
// stop: the probe's terminationGracePeriodSeconds, else the pod's.
func killGrace(pod *corev1.Pod, probe *corev1.Probe) time.Duration {
	switch {
	case probe != nil && probe.TerminationGracePeriodSeconds != nil:
		return time.Duration(*probe.TerminationGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// sidecarGone recreates a sidecar whose container was removed behind
// vz-node's back (or out of a sandbox that is gone), while the pod still
// runs. The new container's run counts as a restart, as the kubelet's
// does; Docker counts from zero for it.
func (w *podWorker) sidecarGone(ev event) stage {
	if run := w.sidecars; run == nil || run.ctx.Err() != nil {
		return w.stage
	}
	pod, _ := w.snapshot()
	for _, c := range sidecarsOf(pod) {
		if c.Name != ev.name {
			continue
		}
		w.setView(func(v *podView) {
			if slot := sidecarSlot(v, c.Name); slot != nil && slot.ContainerID != "" {
				v.SidecarKills = withEntry(v.SidecarKills, c.Name, slot.RestartCount+1)
			}
		})
		st := sidecar.Waiting(c, reasonContainerCreating, "the container was removed; creating it again")
		w.sidecarChanged(event{name: c.Name, status: &st})
		w.ensureSidecar(c)
	}
	return w.stage
}

// stopSidecars stops the pod's Docker containers within grace, after the
// loops that create them have ended, in the kubelet's order: the sidecars
// after the VM and a running init container at once, the native sidecars
// (which the VM may use while it stops) once vmDone is closed (nil: the VM
// is not running), one after the other in reverse order. Docker calls
// never run on the worker's loop.
func (w *podWorker) stopSidecars(grace time.Duration, vmDone <-chan struct{}) {
	run := w.sidecars
	if run == nil || run.stopped != nil {
		return
	}
	run.cancel()
	run.stopped = make(chan struct{})
	pod, _ := w.snapshot()
	deadline := time.Now().Add(grace)
	go func() {
		defer close(run.stopped)
		run.wg.Wait()
		// The worker may finish meanwhile; the stop still gets its grace,
		// and each native sidecar, stopping one after the other, at least
		// minStopGrace.
		containers := dockerContainers(pod)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), grace+time.Duration(len(containers))*minStopGrace+15*time.Second)
		defer cancel()
		stop := func(c corev1.Container) {
			name := sidecar.Name(pod, c.Name)
			left := max(minStopGrace, time.Until(deadline))
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
				// The hook runs only in a running container.
				if ct, err := w.p.cfg.Docker.Inspect(ctx, name); err == nil && ct.State.Running {
					left = w.p.preStop(ctx, w, c, ct.ID, time.Until(deadline))
				}
			}
			if err := w.p.cfg.Docker.Stop(ctx, name, left); err != nil && !sidecar.IsNotFound(err) {
				w.log.Warn("stop sidecar", "container", c.Name, "err", err)
			}
		}
		var wg sync.WaitGroup
		var natives []corev1.Container
		for _, c := range containers {
			if isNativeSidecar(c) {
				natives = append(natives, c)
				continue
			}
			wg.Go(func() { stop(c) })
		}
		wg.Wait()
		if vmDone != nil && len(natives) > 0 {
			select {
			case <-vmDone:
			case <-time.After(time.Until(deadline)):
			}
		}
		for _, c := range slices.Backward(natives) {
			stop(c)
		}
	}()
}

// removeSidecars removes every container of the pod once their graceful
// stop (if one was asked) has ended. It runs in the background: the pod is
// finished meanwhile, and containers a vz-node restart interrupts removing
// are collected as orphans when it starts again.
//
// released, if set, is the pod's volumes, which the sidecars may still use
// while they stop (a preStop hook, or a process flushing on SIGTERM): it is
// removed once they are.
func (w *podWorker) removeSidecars(released string) {
	pod, _ := w.snapshot()
	if !hasDockerContainers(pod) || w.p.cfg.Docker == nil {
		return
	}
	run := w.sidecars
	go func() {
		if released != "" {
			defer func() {
				if err := os.RemoveAll(released); err != nil {
					w.log.Warn("remove the pod's volumes", "err", err)
				}
			}()
		}
		if run != nil {
			run.cancel()
			run.wg.Wait()
			if run.stopped != nil {
				<-run.stopped
			}
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 30*time.Second)
		defer cancel()
		d := w.p.cfg.Docker
		cts, err := d.List(ctx, map[string]string{sidecar.LabelNode: w.p.cfg.NodeName, sidecar.LabelPodUID: w.uid})
		if err != nil {
			w.log.Warn("list sidecars to remove", "err", err)
			return
		}
		for _, ct := range sandboxesLast(cts) {
			if err := d.Remove(ctx, ct.ID); err != nil {
				w.log.Warn("remove sidecar", "container", strings.TrimPrefix(firstName(ct.Names), "/"), "err", err)
			}
		}
	}()
}

// releasedVolumes is where a finished pod's volumes wait, under the state
// directory, until its sidecars are removed.
func (p *PodProvider) releasedVolumes() string {
	return filepath.Join(p.cfg.StateDir, "released-volumes")
}

// releaseVolumes moves the pod's volumes out of its state directory, which
// is about to be removed, when sidecars may still have them mounted: a
// rename keeps the directories the containers' binds refer to. It returns
// where they went, or "" when there is nothing to keep.
func (w *podWorker) releaseVolumes() string {
	pod, _ := w.snapshot()
	if !hasDockerContainers(pod) || w.p.cfg.Docker == nil {
		return ""
	}
	dst := filepath.Join(w.p.releasedVolumes(), w.uid)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		w.log.Warn("keep the pod's volumes for its sidecars' stop", "err", err)
		return ""
	}
	if err := os.Rename(w.p.volumeDir(types.UID(w.uid)), dst); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("keep the pod's volumes for its sidecars' stop", "err", err)
		}
		return ""
	}
	return dst
}

// watchSidecars follows Docker's events for this node's sidecars and
// pushes each change to its pod's worker. After the stream (re)connects,
// every sidecar is read again so no change in between is lost.
func (p *PodProvider) watchSidecars() {
	labels := map[string]string{sidecar.LabelNode: p.cfg.NodeName}
	delay := time.Second
	for p.ctx.Err() == nil {
		connected := time.Now()
		err := p.cfg.Docker.Events(p.ctx, labels, p.refreshSidecars, p.sidecarEvent)
		if p.ctx.Err() != nil {
			return
		}
		if time.Since(connected) > time.Minute {
			delay = time.Second
		}
		p.log.Warn("Docker event stream ended; reconnecting", "err", err, "in", delay)
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// sidecarEvent turns one Docker event into a status update.
func (p *PodProvider) sidecarEvent(ev sidecar.Event) {
	w := p.workerByUID(ev.Attributes[sidecar.LabelPodUID])
	if w != nil && ev.Attributes[sidecar.LabelSandbox] != "" {
		switch ev.Action {
		case "start", "die", "destroy":
			w.post(event{kind: evSandbox})
		}
		return
	}
	name := ev.Attributes[sidecar.LabelContainer]
	if w == nil || name == "" {
		return
	}
	var exit *int
	switch ev.Action {
	case "destroy":
		w.post(event{kind: evSidecarGone, name: name})
		return
	case "die":
		if code, err := strconv.Atoi(ev.Attributes["exitCode"]); err == nil {
			exit = &code
		}
	case "create", "start", "restart", "stop", "kill", "oom", "pause", "unpause":
	default:
		return
	}
	ct, err := p.cfg.Docker.Inspect(p.ctx, ev.ID)
	if err != nil {
		return
	}
	w.post(event{kind: evSidecar, name: name, ct: &ct, exit: exit})
	if ev.Action == "die" && ct.State.Status == "exited" && !ct.State.Restarting {
		// The engine will not restart it: a docker stop, or the engine
		// shutting down. The check tells them apart by the sandbox.
		time.AfterFunc(declinedCheckDelay, func() { w.post(event{kind: evSandbox}) })
	}
}

// refreshSidecars reads every started sidecar's container again.
func (p *PodProvider) refreshSidecars() {
	p.mu.Lock()
	ws := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	for _, w := range ws {
		pod, view := w.snapshot()
		if len(view.Sidecars) == 0 && len(view.InitContainers) == 0 {
			continue
		}
		for _, c := range sidecarsOf(pod) {
			ct, err := p.cfg.Docker.Inspect(p.ctx, sidecar.Name(pod, c.Name))
			if err == nil {
				w.post(event{kind: evSidecar, name: c.Name, ct: &ct})
			}
		}
		w.post(event{kind: evSandbox, resync: true})
	}
}

func (p *PodProvider) workerByUID(uid string) *podWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		if w.uid == uid {
			return w
		}
	}
	return nil
}

// collectSidecarOrphans removes this node's containers whose pod vz-node
// no longer has.
func (p *PodProvider) collectSidecarOrphans() {
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	cts, err := p.cfg.Docker.List(ctx, map[string]string{sidecar.LabelNode: p.cfg.NodeName})
	if err != nil {
		p.log.Warn("list sidecars to collect orphans", "err", err)
		return
	}
	for _, ct := range sandboxesLast(cts) {
		if p.workerByUID(ct.Labels[sidecar.LabelPodUID]) != nil {
			continue
		}
		p.log.Info("removing orphan sidecar of a pod that is gone", "container", strings.TrimPrefix(firstName(ct.Names), "/"))
		if err := p.cfg.Docker.Remove(ctx, ct.ID); err != nil {
			p.log.Warn("remove orphan sidecar", "err", err)
		}
	}
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}
