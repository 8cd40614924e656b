package node

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Waiting reasons of the VM container (and the pod's status reason while
// Pending).
const (
	ReasonDownloading      = "Downloading"
	ReasonWaitingForVMSlot = "WaitingForVMSlot"
	// ReasonContainerCreating: the pod's environment is being resolved
	// and its volumes written (or cannot be yet: a FailedMount Event says
	// why).
	ReasonContainerCreating = "ContainerCreating"
	// ReasonCreateContainerConfigError: the containers' environment
	// cannot be resolved yet (a missing Secret or ConfigMap), as the
	// kubelet names it.
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
	ReasonStarting                   = "Starting"
	ReasonErrImagePull               = "ErrImagePull"
	ReasonCrashLoopBackOff           = "CrashLoopBackOff"
)

// vmStage is where the VM container is, for rendering.
type vmStage int

const (
	stageWaiting vmStage = iota
	stageRunning
	stageTerminated
)

// podView is everything the pod status is rendered from. The pod worker
// keeps it; renderStatus is pure so statuses are golden-tested.
type podView struct {
	HostIP string
	PodIP  string
	// Accepted is when vz-node took the pod (status.startTime).
	Accepted metav1.Time

	Container    string
	Image        string
	ImageID      string
	ContainerID  string
	RestartCount int32

	Stage          vmStage
	WaitingReason  string
	WaitingMessage string
	StartedAt      metav1.Time
	Terminated     *corev1.ContainerStateTerminated
	LastTerminated *corev1.ContainerStateTerminated
	Started        bool // startup probe passed (or none)
	Ready          bool

	// InitContainers are the statuses of the pod's init containers, in its
	// order; InitDone is set once all have completed, and not cleared
	// again (the kubelet does not rerun them when the VM restarts).
	InitContainers []corev1.ContainerStatus `json:",omitempty"`
	InitDone       bool                     `json:",omitempty"`
	InitDoneSince  metav1.Time              `json:",omitempty"`
	// NativeSidecars names the init containers that are sidecars
	// (restartPolicy Always): the pod is Ready only when they are.
	NativeSidecars []string `json:",omitempty"`

	// Sidecars are the statuses of the Docker containers after the VM, in
	// the pod's order.
	Sidecars []corev1.ContainerStatus `json:",omitempty"`
	// SidecarKills counts, by sidecar name, the restarts Docker does not:
	// it counts only those its restart policy makes in one container, from
	// zero again after vz-node starts it (after a failed liveness probe, or
	// when the engine declined to), and not a container replaced.
	SidecarKills map[string]int32 `json:",omitempty"`
	// DockerRunEnds are, by container name, where the latest runs of the
	// pod's Docker containers ended, to cut their logs into runs.
	DockerRunEnds map[string]runEnds `json:",omitempty"`
	// SidecarHooked is, by sidecar name, the run whose postStart hook
	// was started, so a vz-node restart does not run it twice.
	SidecarHooked map[string]string `json:",omitempty"`

	// MainLog is the host's copy of the output of the VM's command in its
	// current run, MainPrevLog the one before; MainExit is the command's
	// exit code once it has exited (the container's, when the VM stops).
	MainLog     string `json:",omitempty"`
	MainPrevLog string `json:",omitempty"`
	MainExit    *int32 `json:",omitempty"`

	// Final is set once the pod will not run again: Succeeded or Failed.
	Final   corev1.PodPhase
	Reason  string // pod-level reason for Failed pods (e.g. NoVMImage)
	Message string

	// Transition times of the conditions, kept stable across renders.
	ReadySince     metav1.Time
	ScheduledSince metav1.Time
	QOSClass       corev1.PodQOSClass
}

// renderStatus turns a view into the pod status vz-node reports.
func renderStatus(v podView) corev1.PodStatus {
	st := corev1.PodStatus{
		HostIP:    v.HostIP,
		PodIP:     v.PodIP,
		StartTime: ptrTime(v.Accepted),
		QOSClass:  v.QOSClass,
		Reason:    v.Reason,
		Message:   v.Message,
	}
	if v.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: v.HostIP}}
	}
	if v.PodIP != "" {
		st.PodIPs = []corev1.PodIP{{IP: v.PodIP}}
	}
	cs := corev1.ContainerStatus{
		Name:         v.Container,
		Image:        v.Image,
		ImageID:      v.ImageID,
		ContainerID:  v.ContainerID,
		RestartCount: v.RestartCount,
		Ready:        v.Ready && v.Stage == stageRunning,
	}
	started := false
	switch v.Stage {
	case stageWaiting:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: v.WaitingReason, Message: v.WaitingMessage}
	case stageRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: v.StartedAt}
		started = v.Started
	case stageTerminated:
		cs.State.Terminated = v.Terminated
	}
	cs.Started = &started
	if v.LastTerminated != nil {
		cs.LastTerminationState.Terminated = v.LastTerminated
	}
	if v.Container != "" {
		st.ContainerStatuses = append([]corev1.ContainerStatus{cs}, v.Sidecars...)
	}
	allReady := cs.Ready
	for _, s := range v.Sidecars {
		allReady = allReady && s.Ready
	}
	for _, s := range v.InitContainers {
		if slices.Contains(v.NativeSidecars, s.Name) {
			allReady = allReady && s.Ready
		}
	}

	switch {
	case v.Final != "":
		st.Phase = v.Final
	case v.Stage == stageRunning:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}

	ready := corev1.ConditionFalse
	readyReason := "ContainersNotReady"
	if allReady {
		ready, readyReason = corev1.ConditionTrue, ""
	}
	cond := func(t corev1.PodConditionType, s corev1.ConditionStatus, since metav1.Time, reason string) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: since, Reason: reason}
	}
	initialized, initReason, initSince := corev1.ConditionTrue, "", v.ScheduledSince
	if len(v.InitContainers) > 0 {
		st.InitContainerStatuses = v.InitContainers
		initSince = v.InitDoneSince
		if !v.InitDone {
			initialized, initReason, initSince = corev1.ConditionFalse, "ContainersNotInitialized", v.ScheduledSince
		}
	}
	sandbox := corev1.ConditionFalse
	if v.Stage == stageRunning {
		sandbox = corev1.ConditionTrue
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, sandbox, v.ReadySince, ""),
		cond(corev1.PodInitialized, initialized, initSince, initReason),
		cond(corev1.PodReady, ready, v.ReadySince, readyReason),
		cond(corev1.ContainersReady, ready, v.ReadySince, readyReason),
		cond(corev1.PodScheduled, corev1.ConditionTrue, v.ScheduledSince, ""),
	}
	return st
}

func ptrTime(t metav1.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
