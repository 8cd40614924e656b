package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vzfleet/vzfleet/node/supervisor"
	"github.com/vzfleet/vzfleet/node/vm"
	"github.com/vzfleet/vzfleet/node/volume"
)

// A pod's volumes are host directories under its state directory (package
// volume), written when the pod is created and kept current while it
// lives. Sidecars bind-mount them; the VM gets the ones its container
// mounts as virtio-fs shares tagged with the volume's name, which macOS
// shows under /Volumes/My Shared Files/<name>.

// ReasonUnsupportedVolume fails a pod that mounts a volume vz-node cannot
// provide.
const ReasonUnsupportedVolume = "UnsupportedVolume"

// volumeSync is how often volumes are written again to pick up changed
// ConfigMaps and Secrets, as the kubelet's sync period does.
const volumeSync = time.Minute

func (p *PodProvider) volumeDir(uid types.UID) string {
	return filepath.Join(supervisor.Dir(p.cfg.StateDir, string(uid)), "volumes")
}

// writeVolumes writes the pod's volumes with w and returns when a token
// in them needs renewing.
func (p *PodProvider) writeVolumes(ctx context.Context, w *volume.Writer, pod *corev1.Pod) (time.Time, error) {
	if len(pod.Spec.Volumes) == 0 {
		return time.Time{}, nil
	}
	return w.Write(ctx, pod, p.volumeDir(pod.UID), p.cfg.Objects)
}

// checkVolumes refuses volume mounts vz-node cannot provide. Errors are
// *invalidPodError.
func checkVolumes(pod *corev1.Pod) error {
	vols := volumesByName(pod)
	var errs []string
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			v, ok := vols[m.Name]
			switch {
			case !ok:
				errs = append(errs, fmt.Sprintf("container %q mounts volume %q, which the pod does not define", c.Name, m.Name))
			case m.SubPath != "" || m.SubPathExpr != "":
				errs = append(errs, fmt.Sprintf("container %q: the subPath of volume mount %q is not supported; mount the whole volume", c.Name, m.Name))
			default:
				if err := volume.Check(v); err != nil {
					errs = append(errs, fmt.Sprintf("container %q: %v", c.Name, err))
				}
			}
		}
	}
	if len(errs) > 0 {
		return invalid(ReasonUnsupportedVolume, "%s", strings.Join(errs, "; "))
	}
	return nil
}

func volumesByName(pod *corev1.Pod) map[string]corev1.Volume {
	vols := make(map[string]corev1.Volume, len(pod.Spec.Volumes))
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	return vols
}

// vmShares are the volumes the VM container mounts, as virtio-fs shares.
func (p *PodProvider) vmShares(pod *corev1.Pod) []vm.Share {
	vols := volumesByName(pod)
	var shares []vm.Share
	for _, m := range vmContainer(pod).VolumeMounts {
		v := vols[m.Name]
		shares = append(shares, vm.Share{Tag: m.Name, HostPath: volume.HostPath(p.volumeDir(pod.UID), v), ReadOnly: m.ReadOnly || volume.ReadOnly(v)})
	}
	return shares
}

// sidecarBinds are a sidecar's volume mounts as Docker binds.
func (p *PodProvider) sidecarBinds(pod *corev1.Pod, c corev1.Container) []string {
	vols := volumesByName(pod)
	var binds []string
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		b := volume.HostPath(p.volumeDir(pod.UID), v) + ":" + m.MountPath
		if m.ReadOnly || volume.ReadOnly(v) {
			b += ":ro"
		}
		binds = append(binds, b)
	}
	return binds
}

// keepVolumes writes the pod's volumes again while it lives: a token
// before it expires, and every volumeSync for changed ConfigMaps and
// Secrets. It stops once the pod's files are removed.
func (w *podWorker) keepVolumes(next time.Time) {
	for {
		wait := volumeSync
		if !next.IsZero() {
			wait = min(time.Until(next), volumeSync)
		}
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(wait):
		}
		pod, _ := w.snapshot()
		w.volMu.Lock()
		if w.volumesGone {
			w.volMu.Unlock()
			return
		}
		at, err := w.p.writeVolumes(w.ctx, &w.volumes, pod)
		w.volMu.Unlock()
		next = at
		if err != nil && w.ctx.Err() == nil {
			w.log.Warn("write the pod's volumes again", "err", err)
			next = time.Now().Add(10 * time.Second)
		}
	}
}
