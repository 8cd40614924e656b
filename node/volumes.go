package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vzfleet/vzfleet/node/podenv"
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
	cs := append(slices.Clone(pod.Spec.Containers), pod.Spec.InitContainers...)
	for i, c := range cs {
		for _, m := range c.VolumeMounts {
			v, ok := vols[m.Name]
			sub := m.SubPath != "" || m.SubPathExpr != ""
			switch {
			case !ok:
				errs = append(errs, fmt.Sprintf("container %q mounts volume %q, which the pod does not define", c.Name, m.Name))
			case sub && i == 0:
				errs = append(errs, fmt.Sprintf("container %q: the subPath of volume mount %q is not supported on the VM, which shares whole volumes; mount the whole volume", c.Name, m.Name))
			case sub && !volume.ReadOnly(v):
				errs = append(errs, fmt.Sprintf("container %q: the subPath of volume mount %q is supported on configMap, secret, downwardAPI and projected volumes only (whose files vz-node writes, so no container can redirect it with a symlink); mount the whole volume", c.Name, m.Name))
			case m.SubPath != "" && !filepath.IsLocal(m.SubPath):
				errs = append(errs, fmt.Sprintf("container %q: the subPath %q of volume mount %q leaves the volume", c.Name, m.SubPath, m.Name))
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

// vmShares are the volumes the VM container mounts, as virtio-fs shares,
// one per volume: the guest sees a volume mounted twice (at mountPaths it
// does not use) once, writable if either mount is.
func (p *PodProvider) vmShares(pod *corev1.Pod) []vm.Share {
	vols := volumesByName(pod)
	var shares []vm.Share
	seen := map[string]int{} // volume name -> index in shares
	for _, m := range vmContainer(pod).VolumeMounts {
		v := vols[m.Name]
		ro := m.ReadOnly || volume.ReadOnly(v)
		if i, ok := seen[m.Name]; ok {
			shares[i].ReadOnly = shares[i].ReadOnly && ro
			continue
		}
		seen[m.Name] = len(shares)
		shares = append(shares, vm.Share{Tag: m.Name, HostPath: volume.HostPath(p.volumeDir(pod.UID), v), ReadOnly: ro})
	}
	return shares
}

// sidecarBinds are a sidecar's volume mounts as Docker binds, once its
// env is resolved (a subPathExpr expands with it).
func (p *PodProvider) sidecarBinds(pod *corev1.Pod, c corev1.Container) ([]string, error) {
	vols := volumesByName(pod)
	var binds []string
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		src := volume.HostPath(p.volumeDir(pod.UID), v)
		if m.SubPath != "" || m.SubPathExpr != "" {
			var err error
			if src, err = subPath(src, c, m); err != nil {
				return nil, fmt.Errorf("container %q, volume mount %q: %w", c.Name, m.Name, err)
			}
		}
		b := src + ":" + m.MountPath
		if m.ReadOnly || volume.ReadOnly(v) {
			b += ":ro"
		}
		binds = append(binds, b)
	}
	return binds, nil
}

// subPath is the file or directory a volume mount's subPath (or expanded
// subPathExpr) names inside the volume at root. Like the kubelet's, the
// bind is made once: a file it names keeps the content it had when the
// container was created.
func subPath(root string, c corev1.Container, m corev1.VolumeMount) (string, error) {
	sub := m.SubPath
	if m.SubPathExpr != "" {
		sub = podenv.Expand(m.SubPathExpr, c.Env)
	}
	if !filepath.IsLocal(sub) {
		return "", fmt.Errorf("subPath %q leaves the volume", sub)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	target, err := filepath.EvalSymlinks(filepath.Join(realRoot, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("subPath %q does not exist in the volume", sub)
	}
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(realRoot, target); err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("subPath %q leads out of the volume", sub)
	}
	return target, nil
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
