package volume

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Claims reads PersistentVolumeClaims and the PersistentVolumes bound to
// them: what the Node authorizer lets a node get for its pods.
type Claims interface {
	PersistentVolumeClaim(ctx context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error)
	PersistentVolume(ctx context.Context, name string) (*corev1.PersistentVolume, error)
}

// ResolveClaims turns the pod's persistentVolumeClaim volumes into the
// host directories of the PersistentVolumes bound to them: a hostPath
// PersistentVolume's path, or a local one's. A read-only claim makes every
// mount of it read-only. A claim that does not exist or is not bound yet
// is an error to retry, as the kubelet waits to mount it; so is a
// PersistentVolume of another kind, which a Mac cannot mount. Errors name
// the volume and the claim.
func ResolveClaims(ctx context.Context, pod *corev1.Pod, get Claims) error {
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		src := v.PersistentVolumeClaim
		if src == nil {
			continue
		}
		hp, err := claimPath(ctx, pod.Namespace, src.ClaimName, get)
		if err != nil {
			return fmt.Errorf("volume %q: %w", v.Name, err)
		}
		v.VolumeSource = corev1.VolumeSource{HostPath: hp}
		if src.ReadOnly {
			readOnlyMounts(pod, v.Name)
		}
	}
	return nil
}

func claimPath(ctx context.Context, ns, claim string, get Claims) (*corev1.HostPathVolumeSource, error) {
	if get == nil {
		return nil, fmt.Errorf("persistentVolumeClaim %q: vz-node has no API client to read it", claim)
	}
	pvc, err := get.PersistentVolumeClaim(ctx, ns, claim)
	if err != nil {
		return nil, fmt.Errorf("persistentVolumeClaim %q: %w", claim, err)
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return nil, fmt.Errorf("persistentVolumeClaim %q is %s, not bound to a PersistentVolume yet", claim, pvc.Status.Phase)
	}
	pv, err := get.PersistentVolume(ctx, pvc.Spec.VolumeName)
	if err != nil {
		return nil, fmt.Errorf("persistentVolumeClaim %q: PersistentVolume %q: %w", claim, pvc.Spec.VolumeName, err)
	}
	if pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return nil, fmt.Errorf("persistentVolumeClaim %q: PersistentVolume %q is a block volume; vz-node mounts filesystem volumes only", claim, pv.Name)
	}
	switch s := pv.Spec.PersistentVolumeSource; {
	case s.HostPath != nil:
		return s.HostPath.DeepCopy(), nil
	case s.Local != nil:
		// As with the kubelet, a local volume's directory must exist.
		dir := corev1.HostPathDirectory
		return &corev1.HostPathVolumeSource{Path: s.Local.Path, Type: &dir}, nil
	}
	return nil, fmt.Errorf("persistentVolumeClaim %q: PersistentVolume %q is neither hostPath nor local; vz-node mounts those only (a Mac has no CSI or network volume plugins)", claim, pv.Name)
}

// readOnlyMounts makes every mount of volume name read-only.
func readOnlyMounts(pod *corev1.Pod, name string) {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			for j := range cs[i].VolumeMounts {
				if cs[i].VolumeMounts[j].Name == name {
					cs[i].VolumeMounts[j].ReadOnly = true
				}
			}
		}
	}
}
