package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// source is a Source over fixed objects that mints numbered tokens.
type source struct {
	configMaps map[string]map[string]string
	secrets    map[string]map[string][]byte
	tokens     int
	ttl        time.Duration
}

func (s *source) ConfigMap(_ context.Context, _, name string) (*corev1.ConfigMap, error) {
	d, ok := s.configMaps[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
	}
	return &corev1.ConfigMap{Data: d}, nil
}

func (s *source) Secret(_ context.Context, _, name string) (*corev1.Secret, error) {
	d, ok := s.secrets[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
	}
	return &corev1.Secret{Data: d}, nil
}

func (s *source) Token(_ context.Context, pod *corev1.Pod, sa, audience string, seconds int64) (string, time.Time, error) {
	s.tokens++
	return strings.Join([]string{"token", sa, audience, string(pod.UID), string(rune('0' + s.tokens))}, "/"), time.Now().Add(s.ttl), nil
}

func ptr[T any](v T) *T { return &v }

func read(t *testing.T, path string) (string, os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(path)
	return string(b), info.Mode().Perm()
}

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	host := filepath.Join(t.TempDir(), "cache")
	src := &source{
		configMaps: map[string]map[string]string{"settings": {"level": "debug", "mode": "fast"}, "kube-root-ca.crt": {"ca.crt": "CA"}},
		secrets:    map[string]map[string][]byte{"creds": {"token": []byte("s3cret")}},
		ttl:        time.Hour,
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ci-1", Namespace: "builds", UID: "u-1", Labels: map[string]string{"b": "2", "a": "1"}},
		Spec: corev1.PodSpec{ServiceAccountName: "builder", Volumes: []corev1.Volume{
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "cache", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host, Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
			{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
			{Name: "picked", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"},
				Items: []corev1.KeyToPath{{Key: "level", Path: "conf/level.txt", Mode: ptr(int32(0o640))}}}}},
			{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
			{Name: "optional", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "absent", Optional: ptr(true)}}},
			{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			}}}},
			{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr(int64(3607))}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
			}}}},
			{Name: "nfs", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "filer", Path: "/x"}}},
		}},
	}
	start := time.Now()
	var w Writer
	renew, err := w.Write(context.Background(), pod, dir, src)
	if err != nil {
		t.Fatal(err)
	}
	if renew.Before(start.Add(47*time.Minute)) || renew.After(start.Add(49*time.Minute)) {
		t.Fatalf("renew at %s after start, want 80%% of the hour", renew.Sub(start))
	}
	if info, err := os.Stat(filepath.Join(dir, "scratch")); err != nil || info.Mode().Perm() != 0o777 {
		t.Fatalf("emptyDir: %v %v", info, err)
	}
	if info, err := os.Stat(host); err != nil || !info.IsDir() {
		t.Fatalf("hostPath DirectoryOrCreate: %v", err)
	}
	for _, c := range []struct {
		path, data string
		mode       os.FileMode
	}{
		{"settings/level", "debug", 0o644},
		{"settings/mode", "fast", 0o644},
		{"picked/conf/level.txt", "debug", 0o640},
		{"creds/token", "s3cret", 0o600},
		{"info/name", "ci-1", 0o644},
		{"info/labels", "a=\"1\"\nb=\"2\"", 0o644},
		{"kube-api-access/token", "token/builder//u-1/1", 0o600},
		{"kube-api-access/ca.crt", "CA", 0o644},
		{"kube-api-access/namespace", "builds", 0o644},
	} {
		if data, mode := read(t, filepath.Join(dir, c.path)); data != c.data || mode != c.mode {
			t.Errorf("%s: %q %o, want %q %o", c.path, data, mode, c.data, c.mode)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "picked", "mode")); !os.IsNotExist(err) {
		t.Errorf("a key not among the items was written: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nfs")); !os.IsNotExist(err) {
		t.Errorf("an unsupported volume was written: %v", err)
	}

	// Writing again keeps a token that is not due, follows changed keys
	// and removes keys that went away.
	src.configMaps["settings"] = map[string]string{"level": "info"}
	if _, err := w.Write(context.Background(), pod, dir, src); err != nil {
		t.Fatal(err)
	}
	if data, _ := read(t, filepath.Join(dir, "kube-api-access", "token")); data != "token/builder//u-1/1" || src.tokens != 1 {
		t.Errorf("token after a rewrite before it is due: %q (%d requests)", data, src.tokens)
	}
	if data, _ := read(t, filepath.Join(dir, "settings", "level")); data != "info" {
		t.Errorf("changed key: %q", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "settings", "mode")); !os.IsNotExist(err) {
		t.Errorf("a removed key is still there: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*", ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// A token past 80% of its lifetime is renewed.
	src.ttl = time.Second
	var short Writer
	at, err := short.Write(context.Background(), pod, t.TempDir(), src)
	if err != nil || time.Until(at) > time.Second {
		t.Fatalf("renew of a 1s token at %s: %v", time.Until(at), err)
	}
	time.Sleep(time.Until(at))
	if _, err := short.Write(context.Background(), pod, dir, src); err != nil {
		t.Fatal(err)
	}
	if data, _ := read(t, filepath.Join(dir, "kube-api-access", "token")); data != "token/builder//u-1/3" {
		t.Errorf("token once due: %q", data)
	}
}

func TestWriteFailures(t *testing.T) {
	t.Parallel()
	src := &source{configMaps: map[string]map[string]string{"settings": {"level": "debug"}}}
	cases := map[string]struct {
		v    corev1.Volume
		want string
	}{
		"missing configmap": {corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}}}, `volume "s": ConfigMap "gone"`},
		"missing key":       {corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Items: []corev1.KeyToPath{{Key: "nope", Path: "x"}}}}}, `has no key "nope"`},
		"missing secret":    {corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "gone"}}}, `volume "s": Secret "gone"`},
		"escaping path":     {corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Items: []corev1.KeyToPath{{Key: "level", Path: "../../etc/x"}}}}}, "leaves the volume"},
		"hostPath type":     {corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/no/such/dir", Type: ptr(corev1.HostPathDirectory)}}}, "is not a directory on this host"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{tc.v}}}
			dir := t.TempDir()
			var w Writer
			if _, err := w.Write(context.Background(), pod, dir, src); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write: %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "etc")); err == nil {
				t.Fatal("a file was written outside the volume")
			}
		})
	}
	if err := Check(corev1.Volume{Name: "c", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "filer", Path: "/x"}}}); err == nil || !strings.Contains(err.Error(), `volume "c": only emptyDir`) {
		t.Fatalf("Check of an NFS volume: %v", err)
	}
	if err := Check(corev1.Volume{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{{Path: "cpu", ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}}}}}); err == nil || !strings.Contains(err.Error(), "only fieldRef") {
		t.Fatalf("Check of a resourceFieldRef item: %v", err)
	}
}
