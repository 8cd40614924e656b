package node

// The pod worker's transition table: for each local stage of a pod's VM, the
// events that move it and the handler that acts. Any (stage, event) pair not
// listed is ignored: it is a late report from work the pod has moved past
// (a pull that finished after a delete, a probe of a VM that has stopped).
//
//	stage          event            handler            next stage
//	new            start            configure          configuring | pulling | terminated (invalid pod)
//	new            adopt            adopt              booting (VM found running after a restart)
//	configuring    configured       configured         pulling | terminated (invalid pod)
//	configuring    configFailed     configFailed       configuring (retried with backoff)
//	configuring    retry            configure          configuring
//	new            delete           finishDeleted      gone
//	pulling        imageReady       imageReady         initializing | waitingSlot | booting | terminated
//	pulling        imageFailed      imageFailed        pulling (retried with backoff)
//	pulling        retry            accept             pulling
//	pulling        initStatus       initStatus         pulling
//	pulling        initExited       initExited         pulling | terminated (init failed, restartPolicy Never)
//	initializing   initStatus       initStatus         initializing
//	initializing   initExited       initExited         initializing | waitingSlot | booting | terminated
//	waitingSlot    slotGranted      launch             booting
//	booting        vm               vmChanged          connecting | backoff | terminated
//	connecting     address          addressFound       connecting
//	connecting     guestReady       guestReady         running
//	connecting     guestFailed      guestFailed        connecting (VM is being stopped)
//	connecting     vm               vmChanged          backoff | terminated
//	running        probe            probed             running
//	running        unhealthy        unhealthy          running (VM is being stopped)
//	running        vm               vmChanged          backoff | terminated
//	running        mainExited       mainExited         running (the VM is being shut down)
//	backoff        retry            retryRun           pulling | waitingSlot | booting
//	stopping       vm               stoppingVM         stopping | gone
//	stopping       graceExpired     hardStop           stopping
//	any but stopping/gone: delete   beginDelete        stopping | gone
//	any            update           update             (unchanged)
//	any but gone   sidecar          sidecarChanged     (unchanged)
//	any but gone   sidecarProbe     sidecarProbed      (unchanged)
//	any but stopping/terminated/gone:
//	               sidecarGone      sidecarGone        (unchanged; the sidecar is created again)
//	               sidecarUnhealthy sidecarUnhealthy   (unchanged; the sidecar's run is killed)
//	               deadline         deadlineExceeded   terminated, or (unchanged) while the VM shuts down
//	booting, connecting, running:
//	               stopGrace        stopGrace          (unchanged; the VM is powered off)
type stage int

const (
	stNew stage = iota
	stConfiguring
	stPulling
	stInitializing
	stWaitingSlot
	stBooting
	stConnecting
	stRunning
	stBackoff
	stTerminated
	stStopping
	stGone
)

var stageNames = [...]string{"new", "configuring", "pulling", "initializing", "waitingSlot", "booting", "connecting", "running", "backoff", "terminated", "stopping", "gone"}

func (s stage) String() string { return stageNames[s] }

type eventKind int

const (
	evStart eventKind = iota
	evAdopt
	evUpdate
	evDelete
	evImageReady
	evImageFailed
	evRetry
	evSlotGranted
	evVM
	evAddress
	evGuestReady
	evGuestFailed
	evProbe
	evUnhealthy
	evGraceExpired
	evSidecar
	evSidecarGone
	evSidecarProbe
	evSidecarUnhealthy
	evSandbox
	evConfigured
	evConfigFailed
	evInitStatus
	evInitExited
	evMainExited
	evStopGrace
	evDeadline
)

var eventNames = [...]string{"start", "adopt", "update", "delete", "imageReady", "imageFailed", "retry", "slotGranted", "vm", "address", "guestReady", "guestFailed", "probe", "unhealthy", "graceExpired", "sidecar", "sidecarGone", "sidecarProbe", "sidecarUnhealthy", "sandbox", "configured", "configFailed", "initStatus", "initExited", "mainExited", "stopGrace", "deadline"}

func (e eventKind) String() string { return eventNames[e] }

type handler func(*podWorker, event) stage

// transitions is the table above, in code.
var transitions = map[stage]map[eventKind]handler{
	stNew: {
		evStart: (*podWorker).configure,
		evAdopt: (*podWorker).adopt,
	},
	stConfiguring: {
		evConfigured:   (*podWorker).configured,
		evConfigFailed: (*podWorker).configFailed,
		evRetry:        (*podWorker).configure,
	},
	stPulling: {
		evImageReady:  (*podWorker).imageReady,
		evImageFailed: (*podWorker).imageFailed,
		evRetry:       (*podWorker).accept,
		evInitStatus:  (*podWorker).initStatus,
		evInitExited:  (*podWorker).initExited,
	},
	stInitializing: {
		evInitStatus: (*podWorker).initStatus,
		evInitExited: (*podWorker).initExited,
	},
	stWaitingSlot: {
		evSlotGranted: (*podWorker).launch,
	},
	stBooting: {
		evVM: (*podWorker).vmChanged,
	},
	stConnecting: {
		evAddress:     (*podWorker).addressFound,
		evGuestReady:  (*podWorker).guestReady,
		evGuestFailed: (*podWorker).guestFailed,
		evVM:          (*podWorker).vmChanged,
	},
	stRunning: {
		evProbe:      (*podWorker).probed,
		evUnhealthy:  (*podWorker).unhealthy,
		evVM:         (*podWorker).vmChanged,
		evMainExited: (*podWorker).mainExited,
	},
	stBackoff: {
		evRetry: (*podWorker).retryRun,
	},
	stStopping: {
		evVM:           (*podWorker).stoppingVM,
		evGraceExpired: (*podWorker).hardStop,
	},
}

// lookup finds the handler for ev in s; delete and update apply everywhere
// they make sense.
func lookup(s stage, k eventKind) handler {
	switch {
	case k == evUpdate && s != stGone:
		return (*podWorker).update
	case k == evDelete && s != stStopping && s != stGone:
		return (*podWorker).beginDelete
	case k == evSidecar && s != stGone:
		return (*podWorker).sidecarChanged
	case k == evSidecarProbe && s != stGone:
		return (*podWorker).sidecarProbed
	case k == evSidecarGone && s != stGone && s != stStopping && s != stTerminated:
		return (*podWorker).sidecarGone
	case k == evSidecarUnhealthy && s != stGone && s != stStopping && s != stTerminated:
		return (*podWorker).sidecarUnhealthy
	case k == evSandbox && s != stGone && s != stStopping && s != stTerminated:
		return (*podWorker).sandboxChanged
	case k == evDeadline && s != stGone && s != stStopping && s != stTerminated:
		return (*podWorker).deadlineExceeded
	case k == evStopGrace && (s == stBooting || s == stConnecting || s == stRunning):
		return (*podWorker).stopGrace
	}
	return transitions[s][k]
}
