package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/node/podenv"
	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/node/supervisor"
	"github.com/vzfleet/vzfleet/node/vm"
	"github.com/vzfleet/vzfleet/node/volume"
)

// event is one input to a pod worker.
type event struct {
	kind  eventKind
	run   int // the VM run an evVM belongs to
	pod   *corev1.Pod
	img   LocalImage
	err   error
	vm    supervisor.State
	ip    net.IP
	ready bool
	// Sidecar events: the container's state as Docker reports it (with
	// the exit code of its last run), or a waiting status.
	name   string
	ct     *sidecar.Container
	exit   *int
	status *corev1.ContainerStatus
	// probeRun names the container run a sidecar probe result is for.
	probeRun string
	started  bool
	// reason says why a sidecarUnhealthy kills the run (Unhealthy, its
	// liveness probe, or FailedPostStartHook), or why a stopGrace's VM
	// was being shut down.
	reason string
	// renew is when a configured pod's volumes first need writing again.
	renew time.Time
	// mount says a configFailed is the volumes' (else the environment's).
	mount bool
	// resync says an evSandbox follows vz-node's start or a (re)connection
	// to the engine, after which the engine is whole again (see
	// renewSandbox).
	resync bool
}

// podRecord is the worker's state on disk (pod.json in the VM directory), so
// a restarted vz-node re-adopts the pod with its restart count and times.
type podRecord struct {
	Pod  *corev1.Pod `json:"pod"`
	View podView     `json:"view"`
	MAC  string      `json:"mac,omitempty"`
	Run  int         `json:"run"`
	// Unconfigured: Pod's environment is not resolved yet.
	Unconfigured bool `json:"unconfigured,omitempty"`
}

const recordFile = "pod.json"

// podWorker owns one pod: a goroutine runs the transition table over its
// events; side effects (pulls, boots, SSH, probes) run in goroutines that
// report back as events.
type podWorker struct {
	p      *PodProvider
	key    string
	uid    string
	dir    string
	log    *slog.Logger
	events chan event
	ctx    context.Context // the worker's lifetime
	cancel context.CancelFunc

	// Loop-owned.
	stage       stage
	req         vmRequest
	img         LocalImage
	run         int
	activity    context.CancelFunc // pull/connect/probe/backoff work of the current stage
	vmWatch     context.CancelFunc
	vmState     supervisor.State
	pullBackoff time.Duration
	// resolved: the pod's environment is resolved and its volumes
	// written (configure), so its spec is the one to run. Written by the
	// loop under mu.
	resolved      bool
	configBackoff time.Duration
	adopted       bool
	killed        bool // the VM was stopped by vz-node (liveness, hook, grace)
	stopDone      chan struct{}
	lastStatus    *corev1.PodStatus
	sidecars      *sidecarRun
	sidecarsUp    bool                     // startSidecars has started the sidecars' loops
	initRunning   bool                     // an init container's run is under way (runInit)
	initWaiting   string                   // the native sidecar the init containers wait for
	runWork       context.CancelFunc       // ends the VM run's command follower (startMain) or shutdown (shutdownVM)
	deadlineTimer *time.Timer              // posts evDeadline (armDeadline)
	deadlineHit   bool                     // activeDeadlineSeconds ran out
	probes        map[string]*sidecarProbe // by sidecar name
	hookFails     map[string]hookBackoff   // by sidecar name
	// renewVolumes is when the pod's volumes first need writing again (a
	// token nears its expiry); zero means at the next sync.
	renewVolumes time.Time
	volMu        sync.Mutex // guards volumes, and orders writes before the pod's files go
	sandboxMu    sync.Mutex // orders the creation of the pod's sandbox
	renewMu      sync.Mutex // runs renewSandbox's checks one at a time
	// held are the sidecars vz-node keeps stopped for now (the back-off
	// after a failed postStart hook), by name.
	held        map[string]bool
	heldMu      sync.Mutex
	volumes     volume.Writer
	volumesGone bool

	mu   sync.Mutex // guards pod, view, mac for readers outside the loop
	pod  *corev1.Pod
	view podView
	mac  net.HardwareAddr
}

func (w *podWorker) post(ev event) {
	select {
	case w.events <- ev:
	case <-w.ctx.Done():
	}
}

func (w *podWorker) loop() {
	defer w.cancel()
	w.armDeadline()
	defer func() {
		if w.deadlineTimer != nil {
			w.deadlineTimer.Stop()
		}
	}()
	for {
		select {
		case ev := <-w.events:
			if ev.kind == evVM && ev.run != w.run {
				continue
			}
			h := lookup(w.stage, ev.kind)
			if h == nil {
				w.log.Debug("event ignored", "stage", w.stage, "event", ev.kind)
				continue
			}
			from := w.stage
			w.stage = h(w, ev)
			if from != w.stage {
				w.log.Debug("pod stage", "from", from, "event", ev.kind, "to", w.stage)
			}
			w.publish()
			if w.stage == stGone {
				w.p.finished(w)
				return
			}
		case <-w.ctx.Done():
			return
		}
	}
}

// snapshot returns copies of the pod and its view for readers.
func (w *podWorker) snapshot() (*corev1.Pod, podView) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod.DeepCopy(), w.view
}

func (w *podWorker) setView(f func(*podView)) {
	w.mu.Lock()
	f(&w.view)
	w.mu.Unlock()
}

// publish renders the status and, when it changed, saves the record and
// tells the pod controller.
func (w *podWorker) publish() {
	pod, view := w.snapshot()
	st := renderStatus(view)
	if w.lastStatus != nil && equality.Semantic.DeepEqual(*w.lastStatus, st) {
		return
	}
	w.lastStatus = &st
	if w.stage != stGone {
		w.save()
	}
	pod.Status = st
	w.p.notify(pod)
}

func (w *podWorker) save() {
	pod, view := w.snapshot()
	w.mu.Lock()
	mac := w.mac.String()
	w.mu.Unlock()
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		w.log.Warn("save pod record", "err", err)
		return
	}
	if err := supervisor.WriteJSON(filepath.Join(w.dir, recordFile), podRecord{Pod: pod, View: view, MAC: mac, Run: w.run, Unconfigured: !w.resolved}); err != nil {
		w.log.Warn("save pod record", "err", err)
	}
}

func (w *podWorker) event(typ, reason, format string, args ...any) {
	pod, _ := w.snapshot()
	w.p.cfg.Recorder.Eventf(pod, typ, reason, format, args...)
	if typ == corev1.EventTypeWarning {
		w.log.Warn(fmt.Sprintf(format, args...), "reason", reason)
	} else {
		w.log.Info(fmt.Sprintf(format, args...), "reason", reason)
	}
}

func (w *podWorker) now() metav1.Time {
	return metav1.NewTime(w.p.cfg.Now().UTC().Truncate(time.Second))
}

// newActivity cancels the previous stage's work and returns a context for
// the next.
func (w *podWorker) newActivity() context.Context {
	w.cancelActivity()
	ctx, cancel := context.WithCancel(w.ctx)
	w.activity = cancel
	return ctx
}

func (w *podWorker) cancelActivity() {
	if w.activity != nil {
		w.activity()
		w.activity = nil
	}
}

func (w *podWorker) waiting(reason, msg string) {
	w.setView(func(v *podView) {
		v.Stage, v.WaitingReason, v.WaitingMessage = stageWaiting, reason, msg
		v.Ready = false
	})
}

// fail ends the pod for good.
func (w *podWorker) fail(reason, msg string) stage {
	w.event(corev1.EventTypeWarning, reason, "%s", msg)
	pod, _ := w.snapshot()
	w.stopSidecars(gracePeriod(pod), nil)
	now := w.now()
	w.setView(func(v *podView) {
		v.Final, v.Reason, v.Message = corev1.PodFailed, reason, msg
		v.Stage = stageTerminated
		v.Ready = false
		v.Terminated = &corev1.ContainerStateTerminated{ExitCode: 128, Reason: reason, Message: msg, StartedAt: v.StartedAt, FinishedAt: now}
	})
	return stTerminated
}

// configure resolves the containers' environment and the pod's
// persistentVolumeClaims, and writes the pod's volumes, off the loop; a pod
// configured before (recovered after a restart) goes on to accept. As with
// the kubelet, a missing Secret, ConfigMap or bound claim keeps the pod
// Pending and is tried again, whatever its restartPolicy.
func (w *podWorker) configure(ev event) stage {
	if w.resolved {
		return w.accept(ev)
	}
	pod, _ := w.snapshot()
	ctx := w.newActivity()
	go func() {
		report := func(reason, msg string) { w.event(corev1.EventTypeWarning, reason, "%s", msg) }
		if err := podenv.Resolve(ctx, pod, w.p.cfg.Objects, w.p.cfg.HostIP, report); err != nil {
			w.post(event{kind: evConfigFailed, err: err})
			return
		}
		if err := volume.ResolveClaims(ctx, pod, w.p.cfg.Objects); err != nil {
			w.post(event{kind: evConfigFailed, err: err, mount: true})
			return
		}
		w.volMu.Lock()
		if w.volumesGone {
			w.volMu.Unlock()
			return
		}
		renew, err := w.p.writeVolumes(ctx, &w.volumes, pod)
		w.volMu.Unlock()
		switch {
		case ctx.Err() != nil:
		case err != nil:
			w.post(event{kind: evConfigFailed, err: err, mount: true})
		default:
			w.post(event{kind: evConfigured, pod: pod, renew: renew})
		}
	}()
	return stConfiguring
}

// configured runs the resolved spec: the containers, with their
// environment, replace the ones received (the pod's metadata may have been
// updated meanwhile).
func (w *podWorker) configured(ev event) stage {
	w.mu.Lock()
	w.pod.Spec.Containers = ev.pod.Spec.Containers
	w.pod.Spec.InitContainers = ev.pod.Spec.InitContainers
	w.pod.Spec.Volumes = ev.pod.Spec.Volumes
	w.resolved = true
	pod := w.pod
	w.mu.Unlock()
	w.configBackoff = 0
	if len(pod.Spec.Volumes) > 0 {
		go w.keepVolumes(ev.renew)
	}
	return w.accept(ev)
}

// configFailed shows why the pod cannot start yet and tries again later.
func (w *podWorker) configFailed(ev event) stage {
	w.configBackoff = nextBackoff(w.configBackoff, 2*time.Second, time.Minute)
	var missing *podenv.MissingError
	switch {
	case ev.mount:
		w.waiting(ReasonContainerCreating, "volumes: "+ev.err.Error())
		w.event(corev1.EventTypeWarning, "FailedMount", "%v (retrying in %s)", ev.err, w.configBackoff)
	default:
		w.waiting(ReasonCreateContainerConfigError, ev.err.Error())
		// Resolve reports a missing object with its own reason.
		if !errors.As(ev.err, &missing) {
			w.event(corev1.EventTypeWarning, "Failed", "Error: %v (retrying in %s)", ev.err, w.configBackoff)
		}
	}
	w.after(w.configBackoff, event{kind: evRetry})
	return stConfiguring
}

// accept validates the pod and starts getting its image, and meanwhile
// runs its init containers.
func (w *podWorker) accept(event) stage {
	pod, _ := w.snapshot()
	req, err := parseVMRequest(pod, w.p.cfg.Host, w.p.cfg.Allocatable)
	if err != nil {
		var inv *invalidPodError
		if errors.As(err, &inv) {
			return w.fail(inv.Reason, inv.Message)
		}
		return w.fail("InvalidPod", err.Error())
	}
	docker := w.p.cfg.Docker != nil
	for _, err := range []error{checkVolumes(pod), checkVMCommand(pod), checkInitContainers(pod, docker), checkSidecars(pod, docker)} {
		var inv *invalidPodError
		if errors.As(err, &inv) {
			return w.fail(inv.Reason, inv.Message)
		}
	}
	w.req = req
	w.beginInit()
	w.startSidecars()
	w.waiting(ReasonDownloading, "getting VM image "+req.Image)
	w.event(corev1.EventTypeNormal, "Pulling", "Pulling VM image %q", req.Image)
	ctx := w.newActivity()
	go func() {
		img, err := w.p.cfg.Images.Ensure(ctx, req.Image, req.PullPolicy, w.p.pullAuth(ctx, pod))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.post(event{kind: evImageFailed, err: err})
			return
		}
		w.post(event{kind: evImageReady, img: img})
	}()
	return stPulling
}

func (w *podWorker) imageFailed(ev event) stage {
	w.pullBackoff = nextBackoff(w.pullBackoff, 5*time.Second, 5*time.Minute)
	msg := fmt.Sprintf("VM image %q: %v", w.req.Image, ev.err)
	w.waiting(ReasonErrImagePull, msg)
	w.event(corev1.EventTypeWarning, "Failed", "Failed to pull VM image %q: %v (retrying in %s)", w.req.Image, ev.err, w.pullBackoff)
	w.after(w.pullBackoff, event{kind: evRetry})
	return stPulling
}

func (w *podWorker) imageReady(ev event) stage {
	w.pullBackoff = 0
	req, err := w.req.withImageDefaults(ev.img.Config, w.p.cfg.Host, w.p.cfg.Allocatable)
	if err != nil {
		var inv *invalidPodError
		errors.As(err, &inv)
		return w.fail(inv.Reason, inv.Message)
	}
	w.req, w.img = req, ev.img
	w.setView(func(v *podView) { v.ImageID = ev.img.Digest })
	w.event(corev1.EventTypeNormal, "Pulled", "VM image %q is ready (%s)", ev.img.Ref, ev.img.Digest)
	if !w.initDone() {
		w.waiting(reasonPodInitializing, "the VM image is ready; the VM starts once the init containers have completed")
		return stInitializing
	}
	return w.requestSlot(ev)
}

// retryRun starts the VM again after a back-off; a re-adopted pod first
// needs its image again.
func (w *podWorker) retryRun(ev event) stage {
	if w.img.DiskPath == "" {
		return w.accept(ev)
	}
	return w.requestSlot(ev)
}

// requestSlot launches the VM when a slot is free, else queues the pod.
func (w *podWorker) requestSlot(ev event) stage {
	if w.p.slots.acquire(w.uid, func() { w.post(event{kind: evSlotGranted}) }) {
		return w.launch(ev)
	}
	max := w.p.cfg.MaxVMs
	w.waiting(ReasonWaitingForVMSlot, fmt.Sprintf("all %d VM slots of this node are in use; the VM starts when one frees", max))
	w.event(corev1.EventTypeNormal, ReasonWaitingForVMSlot, "All %d VM slots are in use; waiting for a free slot", max)
	return stWaitingSlot
}

// launch makes the overlay and starts the VM's supervisor.
func (w *podWorker) launch(event) stage {
	w.cancelActivity()
	w.killed = false
	w.run++
	run := w.run
	w.waiting(ReasonStarting, "starting the VM")
	pod, _ := w.snapshot()
	if hasCommand(vmContainer(pod)) {
		w.rotateMainLog()
	}
	ov, err := w.p.cfg.Overlays.Create(w.ctx, w.img, w.dir)
	if err != nil {
		return w.startFailed(fmt.Errorf("create the VM's disk overlay: %w", err))
	}
	w.mu.Lock()
	w.mac = ov.MAC
	w.mu.Unlock()
	hw, _ := w.img.Config.HardwareModelBytes()
	spec := supervisor.Spec{
		Driver:        w.p.cfg.DriverName,
		DriverOptions: w.p.cfg.DriverOptions,
		Machine: vm.Spec{
			ID:                w.uid,
			CPUs:              w.req.CPUs,
			MemoryBytes:       w.req.MemoryBytes,
			DiskPath:          ov.DiskPath,
			AuxPath:           ov.AuxPath,
			HardwareModel:     hw,
			MachineIdentifier: ov.MachineID,
			Network:           vm.Network{Mode: w.p.cfg.NetworkMode, Interface: w.p.cfg.BridgeInterface, MAC: ov.MAC},
			ConsoleLogPath:    filepath.Join(w.dir, "console.log"),
			Shares:            w.p.vmShares(pod),
		},
	}
	if err := supervisor.WriteSpec(w.dir, spec); err != nil {
		return w.startFailed(err)
	}
	if _, err := w.p.cfg.Launch(w.p.cfg.StateDir, w.uid); err != nil {
		return w.startFailed(err)
	}
	w.setView(func(v *podView) { v.ContainerID = "vz://" + w.uid })
	w.event(corev1.EventTypeNormal, "Created", "Created VM (%d CPUs, %s memory, MAC %s)", w.req.CPUs, bytesQ(w.req.MemoryBytes), ov.MAC)
	w.watchVM(run)
	return stBooting
}

// startFailed handles a VM that could not even be launched like a VM that
// exited with an error, so restartPolicy applies.
func (w *podWorker) startFailed(err error) stage {
	now := w.now()
	return w.exited(supervisor.State{Phase: supervisor.PhaseFailed, ExitReason: supervisor.ReasonStartFailed, Message: err.Error(), FinishedAt: now.Time})
}

// watchVM follows the supervisor of run and posts its states; a supervisor
// that vanished is reported as crashed.
func (w *podWorker) watchVM(run int) {
	if w.vmWatch != nil {
		w.vmWatch()
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.vmWatch = cancel
	dir := w.dir
	go func() {
		c := supervisor.Client{Socket: supervisor.SocketPath(dir)}
		deadline := time.Now().Add(30 * time.Second)
		for ctx.Err() == nil {
			terminal := false
			err := c.Watch(ctx, func(st supervisor.State) {
				terminal = st.Terminal()
				w.post(event{kind: evVM, run: run, vm: st})
			})
			if terminal || ctx.Err() != nil {
				return
			}
			st, rerr := supervisor.ReadState(dir)
			switch {
			case rerr == nil && st.Terminal():
				w.post(event{kind: evVM, run: run, vm: st})
				return
			case rerr == nil && !supervisor.Alive(st.PID) || rerr != nil && time.Now().After(deadline):
				msg := fmt.Sprintf("the VM supervisor exited without a final state (see %s)", filepath.Join(dir, supervisor.LogFile))
				if err != nil {
					msg += ": " + err.Error()
				}
				w.post(event{kind: evVM, run: run, vm: supervisor.State{Phase: supervisor.PhaseFailed, ExitReason: supervisor.ReasonCrashed, Message: msg, FinishedAt: time.Now().UTC()}})
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

// vmChanged follows the supervisor while the VM boots and runs.
func (w *podWorker) vmChanged(ev event) stage {
	w.vmState = ev.vm
	switch {
	case ev.vm.Terminal():
		return w.exited(ev.vm)
	case ev.vm.Phase == supervisor.PhaseRunning && w.stage == stBooting:
		started := metav1.NewTime(ev.vm.StartedAt)
		w.setView(func(v *podView) {
			v.Stage, v.StartedAt, v.WaitingReason, v.WaitingMessage = stageRunning, started, "", ""
			if !w.adopted {
				v.Started, v.Ready = false, false
			}
		})
		if w.adopted {
			w.log.Info("re-adopted running VM", "pid", ev.vm.PID)
		} else {
			w.event(corev1.EventTypeNormal, "Started", "Started VM (supervisor pid %d)", ev.vm.PID)
		}
		w.connect(0)
		return stConnecting
	}
	return w.stage
}

// connect finds the guest's address, waits for SSH and runs postStart,
// after delay.
func (w *podWorker) connect(delay time.Duration) {
	ctx := w.newActivity()
	w.mu.Lock()
	mac := w.mac
	w.mu.Unlock()
	pod, _ := w.snapshot()
	adopted := w.adopted
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		ip, err := w.p.waitAddress(ctx, mac)
		if err != nil {
			if ctx.Err() == nil {
				w.post(event{kind: evGuestFailed, err: err})
			}
			return
		}
		w.post(event{kind: evAddress, ip: ip})
		t := w.p.target(w.uid, w.dir, ip.String())
		if err := w.p.cfg.Guest.WaitSSH(ctx, t); err != nil {
			if ctx.Err() == nil {
				w.post(event{kind: evGuestFailed, err: fmt.Errorf("the guest's SSH server at %s did not answer: %w", t.Addr, err)})
			}
			return
		}
		if adopted {
			// postStart ran when the VM started, before the restart.
			w.post(event{kind: evGuestReady})
			return
		}
		if h := vmContainer(pod).Lifecycle; h != nil && h.PostStart != nil {
			if err := w.p.runHook(ctx, pod, t, h.PostStart); err != nil {
				if ctx.Err() == nil {
					w.post(event{kind: evGuestFailed, err: &hookError{"FailedPostStartHook", err}})
				}
				return
			}
		}
		w.post(event{kind: evGuestReady})
	}()
}

type hookError struct {
	reason string
	err    error
}

func (e *hookError) Error() string { return e.err.Error() }

func (w *podWorker) addressFound(ev event) stage {
	w.setView(func(v *podView) { v.PodIP = ev.ip.String() })
	return stConnecting
}

func (w *podWorker) guestReady(event) stage {
	if !w.adopted {
		w.event(corev1.EventTypeNormal, "GuestReady", "The guest accepts SSH connections")
	}
	w.adopted = false
	w.startProbes()
	w.startMain()
	return stRunning
}

func (w *podWorker) guestFailed(ev event) stage {
	var he *hookError
	if errors.As(ev.err, &he) {
		w.event(corev1.EventTypeWarning, he.reason, "PostStart hook failed: %v; stopping the VM", he.err)
		w.killVM()
		return stConnecting
	}
	w.event(corev1.EventTypeWarning, "GuestUnreachable", "%v; retrying", ev.err)
	w.connect(5 * time.Second)
	return stConnecting
}

// killVM powers the VM off; its supervisor then reports it stopped.
func (w *podWorker) killVM() {
	w.killed = true
	w.cancelActivity()
	c := supervisor.Client{Socket: supervisor.SocketPath(w.dir)}
	go func() {
		ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			w.log.Warn("stop VM", "err", err)
		}
	}()
}

// shutdownVM shuts the guest down over SSH (after the VM container's
// preStop hook, when preStop is set), else asks the VM to stop, and powers
// it off if it has not stopped within the pod's grace period. The
// shutdown is this run's: it ends when the VM does (exited).
func (w *podWorker) shutdownVM(why string, preStop bool) {
	pod, view := w.snapshot()
	t := w.p.target(w.uid, w.dir, view.PodIP)
	run, reachable := w.run, view.PodIP != "" && w.stage != stBooting
	w.cancelRunWork()
	ctx, cancel := context.WithCancel(w.ctx)
	w.runWork = cancel
	go func() {
		gctx, cancel := context.WithTimeout(ctx, gracePeriod(pod))
		defer cancel()
		if h := vmContainer(pod).Lifecycle; preStop && reachable && h != nil && h.PreStop != nil {
			if err := w.p.runHook(gctx, pod, t, h.PreStop); err != nil && ctx.Err() == nil {
				w.event(corev1.EventTypeWarning, "FailedPreStopHook", "PreStop hook failed: %v", err)
			}
		}
		if err := w.p.cfg.Guest.Shutdown(gctx, t); (err != nil || !reachable) && ctx.Err() == nil {
			w.log.Info("guest shutdown over SSH failed; asking the VM to stop", "err", err)
			_ = supervisor.Client{Socket: supervisor.SocketPath(w.dir)}.RequestStop(gctx)
		}
		<-gctx.Done()
		if ctx.Err() == nil {
			w.post(event{kind: evStopGrace, run: run, reason: why})
		}
	}()
}

// stopGrace powers off a VM that did not shut down within the grace period
// shutdownVM gave it.
func (w *podWorker) stopGrace(ev event) stage {
	if ev.run == w.run {
		w.event(corev1.EventTypeNormal, "Killing", "The VM did not shut down within its grace period after %s; powering it off", ev.reason)
		w.killVM()
	}
	return w.stage
}

func (w *podWorker) probed(ev event) stage {
	w.setView(func(v *podView) {
		if ev.ready != v.Ready {
			v.ReadySince = w.now()
		}
		v.Ready = ev.ready
		v.Started = true
	})
	return stRunning
}

func (w *podWorker) unhealthy(ev event) stage {
	w.event(corev1.EventTypeNormal, "Killing", "VM failed its liveness probe (%v), will be restarted", ev.err)
	w.killVM()
	return stRunning
}

// exited applies restartPolicy to a VM that stopped on its own (or could
// not start).
func (w *podWorker) exited(st supervisor.State) stage {
	w.cancelActivity()
	w.cancelRunWork()
	w.p.slots.release(w.uid)
	if w.deadlineHit {
		term := w.termination(st)
		// vz-node stopped it, however cleanly it went down.
		term.Reason, term.Message = ReasonDeadlineExceeded, deadlineMessage
		if term.ExitCode == 0 {
			term.ExitCode = 137
		}
		pod, _ := w.snapshot()
		w.stopSidecars(gracePeriod(pod), nil)
		if w.stopDone != nil {
			close(w.stopDone)
			w.stopDone = nil
		}
		w.setView(func(v *podView) {
			v.Final, v.Reason, v.Message = corev1.PodFailed, ReasonDeadlineExceeded, deadlineMessage
			v.Stage, v.Terminated, v.Ready = stageTerminated, term, false
		})
		return stTerminated
	}
	if st.ExitReason == supervisor.ReasonLimitExceeded {
		w.waiting(ReasonWaitingForVMSlot, "the host's VM limit is reached; retrying")
		w.event(corev1.EventTypeWarning, "VMLimitExceeded", "The virtualization framework refused another VM: %s; retrying", st.Message)
		w.after(2*time.Second, event{kind: evRetry})
		return stBackoff
	}
	term := w.termination(st)
	pod, view := w.snapshot()
	if st.ExitReason == supervisor.ReasonInvalidSpec {
		w.setView(func(v *podView) { v.LastTerminated = v.Terminated })
		return w.fail("InvalidVMSpec", st.Message)
	}
	if term.ExitCode != 0 {
		w.event(corev1.EventTypeWarning, "VMExited", "VM stopped: %s (exit code %d) %s", term.Reason, term.ExitCode, term.Message)
	} else {
		w.event(corev1.EventTypeNormal, "VMExited", "VM shut down")
	}
	restart := pod.Spec.RestartPolicy == corev1.RestartPolicyAlways || pod.Spec.RestartPolicy == "" ||
		pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure && term.ExitCode != 0
	if !restart {
		w.stopSidecars(gracePeriod(pod), nil)
		phase := corev1.PodSucceeded
		if term.ExitCode != 0 {
			phase = corev1.PodFailed
		}
		w.setView(func(v *podView) {
			v.Stage, v.Terminated, v.Ready, v.Final = stageTerminated, term, false, phase
		})
		return stTerminated
	}
	delay := restartDelay(view.RestartCount)
	w.setView(func(v *podView) {
		v.LastTerminated = term
		v.MainExit = nil
		v.RestartCount++
		v.Stage, v.Ready = stageWaiting, false
		v.WaitingReason = ReasonCrashLoopBackOff
		v.WaitingMessage = fmt.Sprintf("back-off %s restarting the VM", delay)
	})
	w.event(corev1.EventTypeWarning, "BackOff", "Back-off %s restarting the VM", delay)
	w.after(delay, event{kind: evRetry})
	return stBackoff
}

// termination turns a supervisor's final state into a container state.
func (w *podWorker) termination(st supervisor.State) *corev1.ContainerStateTerminated {
	pod, view := w.snapshot()
	t := &corev1.ContainerStateTerminated{
		StartedAt:   view.StartedAt,
		FinishedAt:  metav1.NewTime(st.FinishedAt),
		ContainerID: view.ContainerID,
		Message:     st.Message,
	}
	switch {
	case w.killed:
		t.ExitCode, t.Reason = 137, "Error"
	case st.ExitReason == supervisor.ReasonGuestShutdown || st.ExitReason == supervisor.ReasonStopRequested:
		t.ExitCode, t.Reason = 0, "Completed"
	case st.ExitReason == supervisor.ReasonStartFailed || st.ExitReason == supervisor.ReasonInvalidSpec:
		t.ExitCode, t.Reason = 128, "StartError"
	default:
		t.ExitCode, t.Reason = 1, "Error"
	}
	if view.MainExit != nil {
		// The VM's command ended the container.
		t.ExitCode, t.Reason, t.Message = *view.MainExit, "Completed", ""
		if t.ExitCode != 0 {
			t.Reason = "Error"
			if vmContainer(pod).TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
				t.Message = logTail(view.MainLog)
			}
		}
	}
	if t.FinishedAt.IsZero() {
		t.FinishedAt = w.now()
	}
	return t
}

// after posts ev once d has passed, unless the stage's work is cancelled.
func (w *podWorker) after(d time.Duration, ev event) {
	ctx := w.newActivity()
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(d):
			w.post(ev)
		}
	}()
}

// update takes the pod's new metadata. Its spec stays as accepted (a
// running VM or sidecar cannot change, and the accepted spec holds the
// resolved environment), but for activeDeadlineSeconds, which may be
// shortened.
func (w *podWorker) update(ev event) stage {
	w.mu.Lock()
	st, spec := w.pod.Status, w.pod.Spec
	w.pod = ev.pod.DeepCopy()
	ads := w.pod.Spec.ActiveDeadlineSeconds
	w.pod.Status, w.pod.Spec = st, spec
	changed := !equality.Semantic.DeepEqual(w.pod.Spec.ActiveDeadlineSeconds, ads)
	w.pod.Spec.ActiveDeadlineSeconds = ads
	w.mu.Unlock()
	if changed {
		w.armDeadline()
	}
	return w.stage
}

// beginDelete stops the VM within the pod's grace period: preStop hook,
// guest shutdown over SSH, hard stop when the grace period ends.
func (w *podWorker) beginDelete(ev event) stage {
	if ev.pod != nil {
		w.mu.Lock()
		w.pod.DeletionTimestamp = ev.pod.DeletionTimestamp
		w.pod.DeletionGracePeriodSeconds = ev.pod.DeletionGracePeriodSeconds
		w.mu.Unlock()
	}
	w.cancelActivity()
	w.cancelRunWork()
	pod, view := w.snapshot()
	grace := gracePeriod(pod)
	switch w.stage {
	case stBooting, stConnecting, stRunning:
	default:
		// No VM runs: nothing to stop.
		w.stopSidecars(grace, nil)
		return w.finishDeleted(true)
	}
	w.event(corev1.EventTypeNormal, "Killing", "Stopping VM (grace period %s)", grace)
	if w.stopDone == nil {
		w.stopDone = make(chan struct{})
	}
	done := w.stopDone
	w.stopSidecars(grace, done)
	ip := view.PodIP
	booting := w.stage == stBooting
	go func() {
		ctx, cancel := context.WithTimeout(w.ctx, grace)
		defer cancel()
		c := supervisor.Client{Socket: supervisor.SocketPath(w.dir)}
		// A force delete (grace period 0) skips straight to the hard stop.
		asked := grace <= 0
		if ip != "" && !booting && !asked {
			t := w.p.target(w.uid, w.dir, ip)
			if h := vmContainer(pod).Lifecycle; h != nil && h.PreStop != nil {
				if err := w.p.runHook(ctx, pod, t, h.PreStop); err != nil {
					w.event(corev1.EventTypeWarning, "FailedPreStopHook", "PreStop hook failed: %v", err)
				}
			}
			if err := w.p.cfg.Guest.Shutdown(ctx, t); err != nil {
				w.log.Info("guest shutdown over SSH failed; asking the VM to stop", "err", err)
			} else {
				asked = true
			}
		}
		if !asked {
			if err := c.RequestStop(ctx); err != nil {
				w.log.Info("request stop", "err", err)
			}
		}
		select {
		case <-done:
		case <-ctx.Done():
			w.post(event{kind: evGraceExpired})
		}
	}()
	return stStopping
}

func (w *podWorker) hardStop(event) stage {
	w.event(corev1.EventTypeNormal, "Killing", "Grace period over; powering the VM off")
	w.killed = true
	c := supervisor.Client{Socket: supervisor.SocketPath(w.dir)}
	dir := w.dir
	go func() {
		ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err == nil {
			return
		}
		// The supervisor does not answer: end it; the watcher reports.
		if st, err := supervisor.ReadState(dir); err == nil {
			_ = supervisor.Kill(st.PID)
		}
	}()
	return stStopping
}

func (w *podWorker) stoppingVM(ev event) stage {
	if !ev.vm.Terminal() {
		return stStopping
	}
	close(w.stopDone)
	w.stopDone = nil
	term := w.termination(ev.vm)
	w.setView(func(v *podView) { v.Terminated = term })
	return w.finishDeleted(false)
}

// finishDeleted removes everything the pod had on this host and reports its
// final status; the pod object is then removed from the API.
func (w *podWorker) finishDeleted(neverRan bool) stage {
	w.cancelActivity()
	if w.vmWatch != nil {
		w.vmWatch()
	}
	w.p.slots.release(w.uid)
	w.volMu.Lock()
	w.volumesGone = true
	released := w.releaseVolumes()
	if err := os.RemoveAll(w.dir); err != nil {
		w.log.Warn("remove VM state", "dir", w.dir, "err", err)
	}
	w.volMu.Unlock()
	w.removeSidecars(released)
	if sock := supervisor.SocketPath(w.dir); filepath.Dir(sock) != w.dir {
		_ = os.Remove(sock)
	}
	// Drivers keep per-machine runtime files in <driver state dir>/<id>.
	if d := w.p.cfg.DriverOptions.StateDir; d != "" {
		if err := os.RemoveAll(filepath.Join(d, w.uid)); err != nil {
			w.log.Warn("remove driver state", "err", err)
		}
	}
	now := w.now()
	w.setView(func(v *podView) {
		if v.Final == "" {
			switch {
			case v.Terminated != nil && v.Terminated.ExitCode == 0:
				v.Final = corev1.PodSucceeded
			default:
				v.Final = corev1.PodFailed
			}
		}
		if v.Terminated == nil {
			reason := "Deleted"
			if !neverRan {
				reason = "Error"
			}
			v.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: reason, Message: "the pod was deleted", StartedAt: v.StartedAt, FinishedAt: now}
		}
		v.Stage, v.Ready = stageTerminated, false
	})
	w.event(corev1.EventTypeNormal, "Deleted", "VM and its overlay removed")
	return stGone
}

// restartDelay is kubelet's crash-loop back-off: 10s doubling to 5 minutes,
// shortened for the first retry so a VM that shut down restarts quickly.
func restartDelay(restarts int32) time.Duration {
	d := time.Second
	for range restarts {
		d *= 2
		if d >= 5*time.Minute {
			return 5 * time.Minute
		}
	}
	return d
}

func nextBackoff(cur, base, max time.Duration) time.Duration {
	if cur == 0 {
		return base
	}
	return min(cur*2, max)
}

// gracePeriod is the time a deleted pod's VM gets to shut down.
func gracePeriod(pod *corev1.Pod) time.Duration {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

func vmContainer(pod *corev1.Pod) corev1.Container {
	if len(pod.Spec.Containers) == 0 {
		return corev1.Container{}
	}
	return pod.Spec.Containers[0]
}

// adopt takes over a VM found running when vz-node starts.
func (w *podWorker) adopt(ev event) stage {
	w.adopted = true
	w.p.slots.hold(w.uid)
	pod, _ := w.snapshot()
	req, err := parseVMRequest(pod, w.p.cfg.Host, w.p.cfg.Allocatable)
	if err == nil {
		w.req = req
	}
	w.startSidecars()
	w.watchVM(w.run)
	return stBooting
}
