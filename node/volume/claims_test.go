package volume

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// claims is a Claims over fixed objects.
type claims struct {
	pvcs map[string]*corev1.PersistentVolumeClaim
	pvs  map[string]*corev1.PersistentVolume
}

func (c claims) PersistentVolumeClaim(_ context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	if pvc, ok := c.pvcs[ns+"/"+name]; ok {
		return pvc.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumeclaims"}, name)
}

func (c claims) PersistentVolume(_ context.Context, name string) (*corev1.PersistentVolume, error) {
	if pv, ok := c.pvs[name]; ok {
		return pv.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumes"}, name)
}

func bound(volume string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{VolumeName: volume}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
}

func pv(name string, src corev1.PersistentVolumeSource) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: src}}
}

func claimPod(volumes ...corev1.Volume) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ci-1", Namespace: "builds"}, Spec: corev1.PodSpec{Volumes: volumes}}
	c := corev1.Container{Name: "macos"}
	for _, v := range volumes {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: "/" + v.Name})
	}
	pod.Spec.Containers = []corev1.Container{c, *c.DeepCopy()}
	return pod
}

func claimVolume(name, claim string, ro bool) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: ro}}}
}

func TestResolveClaims(t *testing.T) {
	t.Parallel()
	block := corev1.PersistentVolumeBlock
	get := claims{
		pvcs: map[string]*corev1.PersistentVolumeClaim{
			"builds/cache":   bound("pv-cache"),
			"builds/sdk":     bound("pv-sdk"),
			"builds/pending": {Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}},
			"builds/nfs":     bound("pv-nfs"),
			"builds/raw":     bound("pv-raw"),
			"builds/lost":    bound("pv-gone"),
		},
		pvs: map[string]*corev1.PersistentVolume{
			"pv-cache": pv("pv-cache", corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/Volumes/cache", Type: ptr(corev1.HostPathDirectoryOrCreate)}}),
			"pv-sdk":   pv("pv-sdk", corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/Volumes/sdk"}}),
			"pv-nfs":   pv("pv-nfs", corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "filer", Path: "/x"}}),
			"pv-raw":   {ObjectMeta: metav1.ObjectMeta{Name: "pv-raw"}, Spec: corev1.PersistentVolumeSpec{VolumeMode: &block, PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/dev/disk4"}}}},
		},
	}
	pod := claimPod(claimVolume("cache", "cache", false), claimVolume("sdk", "sdk", true), corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	if err := ResolveClaims(context.Background(), pod, get); err != nil {
		t.Fatal(err)
	}
	vols := pod.Spec.Volumes
	if h := vols[0].HostPath; h == nil || h.Path != "/Volumes/cache" || *h.Type != corev1.HostPathDirectoryOrCreate || vols[0].PersistentVolumeClaim != nil {
		t.Errorf("hostPath PV: volume %+v", vols[0].VolumeSource)
	}
	if h := vols[1].HostPath; h == nil || h.Path != "/Volumes/sdk" || *h.Type != corev1.HostPathDirectory {
		t.Errorf("local PV: volume %+v, want a directory that must exist", vols[1].VolumeSource)
	}
	if vols[2].EmptyDir == nil {
		t.Errorf("emptyDir changed: %+v", vols[2].VolumeSource)
	}
	for _, c := range pod.Spec.Containers {
		if ms := c.VolumeMounts; ms[0].ReadOnly || !ms[1].ReadOnly || ms[2].ReadOnly {
			t.Errorf("mounts %+v: want only those of the read-only claim read-only", ms)
		}
	}

	for claim, want := range map[string]string{
		"absent":  `volume "v": persistentVolumeClaim "absent": persistentvolumeclaims "absent" not found`,
		"pending": `persistentVolumeClaim "pending" is Pending, not bound`,
		"nfs":     `PersistentVolume "pv-nfs" is neither hostPath nor local`,
		"raw":     `PersistentVolume "pv-raw" is a block volume`,
		"lost":    `PersistentVolume "pv-gone": persistentvolumes "pv-gone" not found`,
	} {
		pod := claimPod(claimVolume("v", claim, false))
		if err := ResolveClaims(context.Background(), pod, get); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("claim %s: %v, want %q", claim, err, want)
		}
		if pod.Spec.Volumes[0].PersistentVolumeClaim == nil {
			t.Errorf("claim %s: the volume changed though it failed", claim)
		}
	}
	// Written unresolved, a claim is an error rather than an empty
	// directory.
	var w Writer
	if _, err := w.Write(context.Background(), claimPod(claimVolume("v", "cache", false)), t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "not resolved") {
		t.Errorf("Write of an unresolved claim: %v", err)
	}
}
