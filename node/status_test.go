package node

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestRenderStatusGolden(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(20 * time.Second))
	t2 := metav1.NewTime(t0.Add(5 * time.Minute))
	base := podView{
		HostIP: "10.0.0.2", Accepted: t0, ScheduledSince: t0, ReadySince: t0,
		Container: "macos", Image: "ghcr.io/cirruslabs/macos-sequoia-base:latest", QOSClass: corev1.PodQOSBurstable,
	}
	with := func(f func(*podView)) podView { v := base; f(&v); return v }
	cases := map[string]podView{
		"pending-downloading": with(func(v *podView) {
			v.Stage, v.WaitingReason, v.WaitingMessage = stageWaiting, ReasonDownloading, "getting VM image "+v.Image
		}),
		"pending-waiting-for-slot": with(func(v *podView) {
			v.ImageID = "sha256:abc"
			v.Stage, v.WaitingReason, v.WaitingMessage = stageWaiting, ReasonWaitingForVMSlot, "all 2 VM slots of this node are in use; the VM starts when one frees"
		}),
		"running-not-ready": with(func(v *podView) {
			v.ImageID, v.ContainerID = "sha256:abc", "vz://uid-1"
			v.Stage, v.StartedAt = stageRunning, t1
		}),
		"running-ready": with(func(v *podView) {
			v.ImageID, v.ContainerID, v.PodIP = "sha256:abc", "vz://uid-1", "192.168.64.7"
			v.Stage, v.StartedAt, v.Started, v.Ready, v.ReadySince = stageRunning, t1, true, true, t1
		}),
		"crashloop-backoff": with(func(v *podView) {
			v.ImageID, v.ContainerID, v.RestartCount = "sha256:abc", "vz://uid-1", 2
			v.Stage, v.WaitingReason, v.WaitingMessage = stageWaiting, ReasonCrashLoopBackOff, "back-off 4s restarting the VM"
			v.LastTerminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: "the virtual machine stopped with an error", StartedAt: t1, FinishedAt: t2, ContainerID: "vz://uid-1"}
		}),
		"succeeded": with(func(v *podView) {
			v.ImageID, v.ContainerID, v.PodIP = "sha256:abc", "vz://uid-1", "192.168.64.7"
			v.Final, v.Stage = corev1.PodSucceeded, stageTerminated
			v.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: t1, FinishedAt: t2, ContainerID: "vz://uid-1"}
		}),
		"failed-no-image": with(func(v *podView) {
			v.Image = ""
			v.Final, v.Reason, v.Message, v.Stage = corev1.PodFailed, ReasonNoVMImage, `container "macos" (the VM) has no image; set it to an OCI VM image reference`, stageTerminated
			v.Terminated = &corev1.ContainerStateTerminated{ExitCode: 128, Reason: ReasonNoVMImage, Message: v.Message, FinishedAt: t0}
		}),
	}
	side := corev1.Container{Name: "cache", Image: "registry.local/cache:1"}
	ct := sidecar.Container{ID: "c0ffee", Image: "sha256:def", RestartCount: 1}
	ct.State = sidecar.State{Status: "running", Running: true, StartedAt: t2.Time, FinishedAt: t1.Time}
	exit := 2
	runningSide := sidecar.Status(side, ct, corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t0}}}, &exit)
	ct.RestartCount, ct.State = 2, sidecar.State{Status: "restarting", Restarting: true, ExitCode: 1, StartedAt: t2.Time, FinishedAt: t2.Time}
	restartingSide := sidecar.Status(side, ct, runningSide, nil)
	cases["running-ready-with-sidecar"] = with(func(v *podView) {
		v.ImageID, v.ContainerID, v.PodIP = "sha256:abc", "vz://uid-1", "192.168.64.7"
		v.Stage, v.StartedAt, v.Started, v.Ready, v.ReadySince = stageRunning, t1, true, true, t1
		v.Sidecars = []corev1.ContainerStatus{runningSide}
	})
	cases["running-sidecar-restarting"] = with(func(v *podView) {
		v.ImageID, v.ContainerID, v.PodIP = "sha256:abc", "vz://uid-1", "192.168.64.7"
		v.Stage, v.StartedAt, v.Started, v.Ready, v.ReadySince = stageRunning, t1, true, true, t1
		v.Sidecars = []corev1.ContainerStatus{restartingSide}
	})
	cases["pending-sidecar-image-pull"] = with(func(v *podView) {
		v.Stage, v.WaitingReason, v.WaitingMessage = stageWaiting, ReasonDownloading, "getting VM image "+v.Image
		v.Sidecars = []corev1.ContainerStatus{sidecar.Waiting(side, ReasonErrImagePull, "docker pull registry.local/cache:1: manifest unknown (HTTP 404)")}
	})
	fetch, build := corev1.Container{Name: "fetch", Image: "busybox"}, corev1.Container{Name: "build", Image: "busybox"}
	done := sidecar.Container{ID: "f00d", Image: "sha256:aaa", State: sidecar.State{Status: "exited", StartedAt: t0.Time, FinishedAt: t1.Time}}
	fetched := initContainerStatus(fetch, done, corev1.ContainerStatus{})
	building := initContainerStatus(build, sidecar.Container{ID: "b111d", Image: "sha256:aaa", State: sidecar.State{Status: "running", Running: true, StartedAt: t1.Time}}, corev1.ContainerStatus{})
	cases["pending-init-running"] = with(func(v *podView) {
		v.Stage, v.WaitingReason, v.WaitingMessage = stageWaiting, ReasonDownloading, "getting VM image "+v.Image
		v.InitContainers = []corev1.ContainerStatus{fetched, building}
	})
	failed := initContainerStatus(build, sidecar.Container{ID: "b111d", Image: "sha256:aaa", State: sidecar.State{Status: "exited", ExitCode: 2, StartedAt: t1.Time, FinishedAt: t2.Time}}, corev1.ContainerStatus{})
	cases["failed-init"] = with(func(v *podView) {
		v.Final, v.Message = corev1.PodFailed, "Init container build exited with code 2 and the pod's restartPolicy is Never"
		v.Stage, v.WaitingReason = stageWaiting, reasonPodInitializing
		v.InitContainers = []corev1.ContainerStatus{fetched, failed}
	})
	cases["running-after-init"] = with(func(v *podView) {
		v.ImageID, v.ContainerID, v.PodIP = "sha256:abc", "vz://uid-1", "192.168.64.7"
		v.Stage, v.StartedAt, v.Started, v.Ready, v.ReadySince = stageRunning, t2, true, true, t2
		v.InitContainers, v.InitDone, v.InitDoneSince = []corev1.ContainerStatus{fetched}, true, t1
	})
	proxy := corev1.Container{Name: "proxy", Image: "registry.local/proxy:1"}
	proxyUp := sidecar.Status(proxy, sidecar.Container{ID: "beef", Image: "sha256:bbb", State: sidecar.State{Status: "running", Running: true, StartedAt: t0.Time}}, corev1.ContainerStatus{}, nil)
	proxyUp.Ready = false // its readiness probe fails
	cases["running-native-sidecar-not-ready"] = with(func(v *podView) {
		v.ImageID, v.ContainerID, v.PodIP = "sha256:abc", "vz://uid-1", "192.168.64.7"
		v.Stage, v.StartedAt, v.Started, v.Ready, v.ReadySince = stageRunning, t2, true, true, t2
		v.InitContainers, v.NativeSidecars, v.InitDone, v.InitDoneSince = []corev1.ContainerStatus{fetched, proxyUp}, []string{"proxy"}, true, t1
	})
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(renderStatus(v), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "status", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("status differs from %s (run with -update after checking):\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}
