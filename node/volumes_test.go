package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCheckVolumesSubPath(t *testing.T) {
	t.Parallel()
	vols := []corev1.Volume{
		{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	cases := map[string]struct {
		container int
		mount     corev1.VolumeMount
		want      string // empty: accepted
	}{
		"sidecar, configMap key": {1, corev1.VolumeMount{Name: "conf", MountPath: "/c", SubPath: "key"}, ""},
		"sidecar, expression":    {1, corev1.VolumeMount{Name: "conf", MountPath: "/c", SubPathExpr: "$(POD)"}, ""},
		"the VM":                 {0, corev1.VolumeMount{Name: "conf", MountPath: "/c", SubPath: "key"}, "not supported on the VM"},
		"emptyDir":               {1, corev1.VolumeMount{Name: "scratch", MountPath: "/s", SubPath: "x"}, "configMap, secret, downwardAPI and projected volumes only"},
		"escaping":               {1, corev1.VolumeMount{Name: "conf", MountPath: "/c", SubPath: "../x"}, `subPath "../x" of volume mount "conf" leaves the volume`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := testPod("p", withSidecars(corev1.Container{Name: "side"}), func(p *corev1.Pod) { p.Spec.Volumes = vols })
			pod.Spec.Containers[tc.container].VolumeMounts = []corev1.VolumeMount{tc.mount}
			err := checkVolumes(pod)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestSubPathStaysInTheVolume(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "vol")
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dir", "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir/f", filepath.Join(root, "in")); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(root) // what the paths found start with
	if err != nil {
		t.Fatal(err)
	}
	c := corev1.Container{Name: "side", Env: []corev1.EnvVar{{Name: "D", Value: "dir"}}}
	cases := map[string]struct {
		mount corev1.VolumeMount
		want  string // the path, or the error's text
	}{
		"file":          {corev1.VolumeMount{SubPath: "dir/f"}, filepath.Join(real, "dir", "f")},
		"expression":    {corev1.VolumeMount{SubPathExpr: "$(D)/f"}, filepath.Join(real, "dir", "f")},
		"link inside":   {corev1.VolumeMount{SubPath: "in"}, filepath.Join(real, "dir", "f")},
		"link outside":  {corev1.VolumeMount{SubPath: "out"}, `subPath "out" leads out of the volume`},
		"expanded up":   {corev1.VolumeMount{SubPathExpr: "$(D)/../.."}, `subPath "dir/../.." leaves the volume`},
		"absent":        {corev1.VolumeMount{SubPath: "nope"}, `subPath "nope" does not exist`},
		"unset var":     {corev1.VolumeMount{SubPathExpr: "$(NOPE)"}, `subPath "$(NOPE)" does not exist`},
		"absolute expr": {corev1.VolumeMount{SubPathExpr: "/$(D)"}, `subPath "/dir" leaves the volume`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := subPath(root, c, tc.mount)
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) || (err != nil) == strings.HasPrefix(tc.want, "/") {
				t.Fatalf("got %q (err %v), want %q", got, err, tc.want)
			}
		})
	}
}

// Whatever a pod's subPath or subPathExpr says, a bind source is inside
// the volume or there is none.
func FuzzSubPath(f *testing.F) {
	root := filepath.Join(f.TempDir(), "vol")
	for _, d := range []string{"dir/sub", "other"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	for link, target := range map[string]string{"up": "..", "abs": "/", "in": "dir/sub", "loop": "loop", "dir/back": "../other"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			f.Fatal(err)
		}
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"dir", "up/x", "abs/etc", "in", "loop", "dir/back", "$(D)/../..", "../x", "/etc", "dir/./sub/..", "$$(D)"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	c := corev1.Container{Name: "side", Env: []corev1.EnvVar{{Name: "D", Value: "dir"}, {Name: "U", Value: ".."}}}
	f.Fuzz(func(t *testing.T, s string, expr bool) {
		m := corev1.VolumeMount{SubPath: s}
		if expr {
			m = corev1.VolumeMount{SubPathExpr: s}
		}
		got, err := subPath(root, c, m)
		if err != nil {
			return
		}
		if rel, rerr := filepath.Rel(real, got); rerr != nil || !filepath.IsLocal(rel) {
			t.Fatalf("subPath %q (expression %v) gave %q, outside the volume %s", s, expr, got, real)
		}
	})
}

func TestVMSharesOnePerVolume(t *testing.T) {
	t.Parallel()
	p := &PodProvider{cfg: PodProviderConfig{StateDir: "/state"}}
	pod := testPod("p", func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{
			{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
			{Name: "work", MountPath: "/a", ReadOnly: true},
			{Name: "conf", MountPath: "/c"},
			{Name: "work", MountPath: "/b"},
		}
	})
	shares := p.vmShares(pod)
	if len(shares) != 2 || shares[0].Tag != "work" || shares[0].ReadOnly || shares[1].Tag != "conf" || !shares[1].ReadOnly {
		t.Fatalf("shares %+v, want work (writable: one of its mounts is) and conf (read-only), once each", shares)
	}
}
