package node

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// A pod's activeDeadlineSeconds, as the kubelet enforces it: once the pod
// has been on the node that long (from status.startTime), its containers
// are stopped and it fails with reason DeadlineExceeded, whatever its
// restartPolicy. CI systems set it as a build's timeout.

// ReasonDeadlineExceeded fails a pod that outlived its
// activeDeadlineSeconds.
const ReasonDeadlineExceeded = "DeadlineExceeded"

const deadlineMessage = "Pod was active on the node longer than the specified deadline"

// armDeadline (re)sets the timer that posts evDeadline when the pod's
// activeDeadlineSeconds runs out; a pod already past it gets it at once.
func (w *podWorker) armDeadline() {
	if w.deadlineTimer != nil {
		w.deadlineTimer.Stop()
		w.deadlineTimer = nil
	}
	pod, view := w.snapshot()
	ads := pod.Spec.ActiveDeadlineSeconds
	if ads == nil || view.Final != "" || view.Accepted.IsZero() {
		return
	}
	left := view.Accepted.Add(time.Duration(*ads) * time.Second).Sub(w.p.cfg.Now())
	w.deadlineTimer = time.AfterFunc(max(left, 0), func() { w.post(event{kind: evDeadline}) })
}

// deadlineExceeded ends the pod: a running VM is shut down within the
// pod's grace period (exited then fails the pod), anything else stops at
// once.
func (w *podWorker) deadlineExceeded(event) stage {
	if w.deadlineHit {
		return w.stage // re-armed by an update while the VM stops
	}
	w.deadlineHit = true
	pod, _ := w.snapshot()
	switch w.stage {
	case stBooting, stConnecting, stRunning:
		w.event(corev1.EventTypeWarning, ReasonDeadlineExceeded, "%s; stopping the VM", deadlineMessage)
		w.stopDone = make(chan struct{}) // closed by exited
		w.stopSidecars(gracePeriod(pod), w.stopDone)
		w.shutdownVM("its deadline", true)
		return w.stage
	}
	w.cancelActivity()
	w.p.slots.release(w.uid)
	return w.fail(ReasonDeadlineExceeded, deadlineMessage)
}
