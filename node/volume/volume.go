// Package volume makes a pod's volumes host directories: sidecars
// bind-mount them, and the VM sees them as virtio-fs shares. It writes
// emptyDir, configMap, secret, downwardAPI and projected volumes (service
// account tokens from the TokenRequest API included) under the pod's state
// directory, and points hostPath volumes at the host's path. Writing again
// refreshes tokens and picks up changed ConfigMaps and Secrets.
package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/vzfleet/vzfleet/node/podenv"
)

// Source reads what volumes hold from the API.
type Source interface {
	podenv.Getter
	// Token returns a token for the pod's service account, bound to the
	// pod, and when it expires.
	Token(ctx context.Context, pod *corev1.Pod, serviceAccount, audience string, seconds int64) (string, time.Time, error)
}

// Default file modes. The kubelet's default is 0644 for every volume file;
// files holding secrets are 0600 here unless the pod sets a mode.
const (
	defaultMode       = 0o644
	defaultSecretMode = 0o600
	defaultTokenTTL   = 3600
)

// Check says why volume v cannot be used, if it cannot.
func Check(v corev1.Volume) error {
	s := v.VolumeSource
	switch {
	case s.EmptyDir != nil, s.HostPath != nil, s.ConfigMap != nil, s.Secret != nil, s.PersistentVolumeClaim != nil:
		// A claim becomes a hostPath volume (see ResolveClaims).
		return nil
	case s.DownwardAPI != nil:
		return checkFields(v.Name, s.DownwardAPI.Items)
	case s.Projected != nil:
		for _, p := range s.Projected.Sources {
			switch {
			case p.DownwardAPI != nil:
				if err := checkFields(v.Name, p.DownwardAPI.Items); err != nil {
					return err
				}
			case p.ConfigMap != nil, p.Secret != nil, p.ServiceAccountToken != nil:
			default:
				return fmt.Errorf("volume %q: a projected source other than configMap, secret, downwardAPI or serviceAccountToken is not supported", v.Name)
			}
		}
		return nil
	}
	return fmt.Errorf("volume %q: only emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim volumes are supported", v.Name)
}

func checkFields(name string, items []corev1.DownwardAPIVolumeFile) error {
	for _, it := range items {
		if it.FieldRef == nil {
			return fmt.Errorf("volume %q: item %s: only fieldRef items are supported", name, it.Path)
		}
		if _, ok := fieldFile(&corev1.Pod{}, it.FieldRef.FieldPath); !ok {
			return fmt.Errorf("volume %q: item %s: fieldRef %q is not supported", name, it.Path, it.FieldRef.FieldPath)
		}
	}
	return nil
}

// HostPath is where volume v of a pod whose volumes live in dir is on the
// host.
func HostPath(dir string, v corev1.Volume) string {
	if v.HostPath != nil {
		return v.HostPath.Path
	}
	return filepath.Join(dir, v.Name)
}

// ReadOnly reports whether v's content comes from the API (the kubelet
// mounts such volumes read-only).
func ReadOnly(v corev1.Volume) bool {
	s := v.VolumeSource
	return s.ConfigMap != nil || s.Secret != nil || s.DownwardAPI != nil || s.Projected != nil
}

// Writer writes one pod's volumes, keeping each token until it needs
// renewing. Its methods are not safe for concurrent use.
type Writer struct {
	tokens map[string]token
}

// token is a token already written, and when to renew it.
type token struct {
	value string
	renew time.Time
}

// Write materializes the pod's supported volumes under dir and returns
// when the earliest token in them should be renewed (zero when none has
// one): at 80% of its lifetime, as the kubelet does. A mandatory
// ConfigMap, Secret or key that is missing is an error naming the volume.
func (w *Writer) Write(ctx context.Context, pod *corev1.Pod, dir string, src Source) (time.Time, error) {
	if w.tokens == nil {
		w.tokens = map[string]token{}
	}
	var renew time.Time
	for _, v := range pod.Spec.Volumes {
		if Check(v) != nil {
			continue
		}
		at, err := w.write(ctx, pod, dir, v, src)
		if err != nil {
			return time.Time{}, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		if !at.IsZero() && (renew.IsZero() || at.Before(renew)) {
			renew = at
		}
	}
	return renew, nil
}

func (w *Writer) write(ctx context.Context, pod *corev1.Pod, dir string, v corev1.Volume, src Source) (time.Time, error) {
	s := v.VolumeSource
	switch {
	case s.HostPath != nil:
		return time.Time{}, hostPath(*s.HostPath)
	case s.PersistentVolumeClaim != nil:
		return time.Time{}, fmt.Errorf("persistentVolumeClaim %q is not resolved to a PersistentVolume (see ResolveClaims)", s.PersistentVolumeClaim.ClaimName)
	}
	root := filepath.Join(dir, v.Name)
	if s.EmptyDir != nil {
		// Writable by whatever user the sidecar runs as, as the kubelet
		// makes it; the pod's state directory above it is 0700.
		if err := os.MkdirAll(root, 0o777); err != nil {
			return time.Time{}, err
		}
		return time.Time{}, os.Chmod(root, 0o777)
	}
	sources, defMode := projections(s)
	files := map[string]file{}
	var renew time.Time
	for _, p := range sources {
		var f map[string]file
		var err error
		switch {
		case p.ConfigMap != nil:
			f, err = configMapFiles(ctx, pod, src, p.ConfigMap.Name, p.ConfigMap.Items, p.ConfigMap.Optional, mode(defMode, defaultMode))
		case p.Secret != nil:
			f, err = secretFiles(ctx, pod, src, p.Secret.Name, p.Secret.Items, p.Secret.Optional, mode(defMode, defaultSecretMode))
		case p.DownwardAPI != nil:
			f = fieldFiles(pod, p.DownwardAPI.Items, mode(defMode, defaultMode))
		case p.ServiceAccountToken != nil:
			var at time.Time
			f, at, err = w.tokenFile(ctx, pod, src, v.Name, *p.ServiceAccountToken, mode(defMode, defaultSecretMode))
			if renew.IsZero() || at.Before(renew) {
				renew = at
			}
		}
		if err != nil {
			return time.Time{}, err
		}
		for path, file := range f {
			files[path] = file
		}
	}
	return renew, sync(root, files)
}

// projections are the sources of a volume whose files come from the API,
// with its default file mode: a configMap, secret or downwardAPI volume is
// a projected volume of one source.
func projections(s corev1.VolumeSource) ([]corev1.VolumeProjection, *int32) {
	switch {
	case s.ConfigMap != nil:
		return []corev1.VolumeProjection{{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: s.ConfigMap.LocalObjectReference, Items: s.ConfigMap.Items, Optional: s.ConfigMap.Optional}}}, s.ConfigMap.DefaultMode
	case s.Secret != nil:
		return []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: s.Secret.SecretName}, Items: s.Secret.Items, Optional: s.Secret.Optional}}}, s.Secret.DefaultMode
	case s.DownwardAPI != nil:
		return []corev1.VolumeProjection{{DownwardAPI: &corev1.DownwardAPIProjection{Items: s.DownwardAPI.Items}}}, s.DownwardAPI.DefaultMode
	case s.Projected != nil:
		return s.Projected.Sources, s.Projected.DefaultMode
	}
	return nil, nil
}

// file is one file of a volume.
type file struct {
	data []byte
	mode os.FileMode
}

func mode(m *int32, def os.FileMode) os.FileMode {
	if m != nil {
		return os.FileMode(*m) & 0o777
	}
	return def
}

func hostPath(h corev1.HostPathVolumeSource) error {
	t := corev1.HostPathUnset
	if h.Type != nil {
		t = *h.Type
	}
	switch t {
	case corev1.HostPathDirectoryOrCreate:
		return os.MkdirAll(h.Path, 0o755)
	case corev1.HostPathDirectory:
		if info, err := os.Stat(h.Path); err != nil || !info.IsDir() {
			return fmt.Errorf("hostPath %s is not a directory on this host", h.Path)
		}
	case corev1.HostPathFile:
		if info, err := os.Stat(h.Path); err != nil || !info.Mode().IsRegular() {
			return fmt.Errorf("hostPath %s is not a file on this host", h.Path)
		}
	}
	return nil
}

// missing handles an object or key that is not there: nothing for an
// optional one, an error otherwise.
func missing(kind, name string, optional *bool, err error) error {
	if optional != nil && *optional && (err == nil || apierrors.IsNotFound(err)) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("%s %q has no such key", kind, name)
	}
	return fmt.Errorf("%s %q: %w", kind, name, err)
}

func configMapFiles(ctx context.Context, pod *corev1.Pod, src Source, name string, items []corev1.KeyToPath, optional *bool, m os.FileMode) (map[string]file, error) {
	if src == nil {
		return nil, errors.New("this node has no API client to read ConfigMaps")
	}
	cm, err := src.ConfigMap(ctx, pod.Namespace, name)
	if err != nil {
		return nil, missing("ConfigMap", name, optional, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	return keyFiles("ConfigMap", name, data, items, optional, m)
}

func secretFiles(ctx context.Context, pod *corev1.Pod, src Source, name string, items []corev1.KeyToPath, optional *bool, m os.FileMode) (map[string]file, error) {
	if src == nil {
		return nil, errors.New("this node has no API client to read Secrets")
	}
	s, err := src.Secret(ctx, pod.Namespace, name)
	if err != nil {
		return nil, missing("Secret", name, optional, err)
	}
	return keyFiles("Secret", name, s.Data, items, optional, m)
}

// keyFiles lays out an object's keys: every key under its own name, or the
// listed items at their paths and modes.
func keyFiles(kind, name string, data map[string][]byte, items []corev1.KeyToPath, optional *bool, m os.FileMode) (map[string]file, error) {
	out := map[string]file{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = file{v, m}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if err := missing(kind, name, optional, nil); err != nil {
				return nil, fmt.Errorf("%s %q has no key %q", kind, name, it.Key)
			}
			continue
		}
		out[it.Path] = file{v, mode(it.Mode, m)}
	}
	return out, nil
}

func fieldFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, m os.FileMode) map[string]file {
	out := map[string]file{}
	for _, it := range items {
		v, _ := fieldFile(pod, it.FieldRef.FieldPath)
		out[it.Path] = file{[]byte(v), mode(it.Mode, m)}
	}
	return out
}

// fieldFile renders a downward-API field as the kubelet writes it to a
// file: all labels or annotations as sorted key="value" lines, any other
// field as env reads it.
func fieldFile(pod *corev1.Pod, p string) (string, bool) {
	switch p {
	case "metadata.labels":
		return mapFile(pod.Labels), true
	case "metadata.annotations":
		return mapFile(pod.Annotations), true
	}
	return podenv.Field(pod, p, "")
}

func mapFile(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// tokenFile is the token of a projection, requested again only once the
// one written before needs renewing.
func (w *Writer) tokenFile(ctx context.Context, pod *corev1.Pod, src Source, volume string, t corev1.ServiceAccountTokenProjection, m os.FileMode) (map[string]file, time.Time, error) {
	key := fmt.Sprintf("%s/%s/%s/%v", volume, t.Path, t.Audience, t.ExpirationSeconds)
	if c, ok := w.tokens[key]; ok && time.Now().Before(c.renew) {
		return map[string]file{t.Path: {[]byte(c.value), m}}, c.renew, nil
	}
	if src == nil {
		return nil, time.Time{}, errors.New("this node has no API client to request service account tokens")
	}
	secs := int64(defaultTokenTTL)
	if t.ExpirationSeconds != nil {
		secs = *t.ExpirationSeconds
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tok, exp, err := src.Token(ctx, pod, sa, t.Audience, secs)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("token for service account %q: %w", sa, err)
	}
	renew := exp.Add(-time.Duration(float64(time.Until(exp)) * 0.2))
	w.tokens[key] = token{tok, renew}
	return map[string]file{t.Path: {[]byte(tok), m}}, renew, nil
}

// sync makes root hold exactly files: each written to a temporary file in
// its directory and renamed over the old one, so a reader sees the old or
// the new content, never a mix; files no longer listed are removed.
func sync(root string, files map[string]file) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	keep := map[string]bool{}
	for p, f := range files {
		clean := path.Clean(p)
		if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
			return fmt.Errorf("file path %q leaves the volume", p)
		}
		keep[clean] = true
		target := filepath.Join(root, filepath.FromSlash(clean))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		tmp, err := os.CreateTemp(filepath.Dir(target), ".tmp-")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(f.data)
		if cerr := tmp.Close(); werr == nil {
			werr = cerr
		}
		if werr == nil {
			werr = os.Chmod(tmp.Name(), f.mode)
		}
		if werr == nil {
			werr = os.Rename(tmp.Name(), target)
		}
		if werr != nil {
			os.Remove(tmp.Name())
			return werr
		}
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !keep[filepath.ToSlash(rel)] {
			return os.Remove(p)
		}
		return nil
	})
}
