package node

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/image"
	"github.com/vzfleet/vzfleet/test/harness"
)

// makeImageDir writes a small VM directory: tart's config, NVRAM and a
// sparse 8 MiB disk with data at its start and end.
func makeImageDir(t *testing.T, dir string) {
	t.Helper()
	cfg, err := os.ReadFile("../image/format/testdata/tart-config.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{image.ConfigFile: cfg, image.NVRAMFile: []byte("nvram contents")}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, image.DiskFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 8<<20 - 4096} {
		if _, err := f.WriteAt([]byte("vzfleet disk block"), off); err != nil {
			t.Fatal(err)
		}
	}
}

// The adapter pulls from a real registry as the pod's imagePullPolicy says
// and hands the node the pulled files and the VM's hardware configuration.
func TestImageCacheEnsure(t *testing.T) {
	reg := harness.RegistryT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := filepath.Join(t.TempDir(), "vm")
	makeImageDir(t, vm)
	ref := reg.Addr + "/node/macos:15"
	desc, err := image.Push(ctx, vm, ref, image.PushOptions{ChunkSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}

	var reports int
	src, err := NewImageCache(t.TempDir(), ImageCacheOptions{Progress: func(image.Progress) { reports++ }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Ensure(ctx, ref, corev1.PullNever, nil); !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("Never on an empty cache: %v, want ErrImageNotFound", err)
	}
	if _, err := src.Ensure(ctx, reg.Addr+"/node/macos:missing", corev1.PullAlways, nil); !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("a tag the registry lacks: %v, want ErrImageNotFound", err)
	}
	img, err := src.Ensure(ctx, ref, corev1.PullAlways, []RegistryAuth{{Registry: "other.example:5000", Username: "u", Password: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != desc.Digest.String() || img.Ref != ref || img.SizeBytes != 8<<20 {
		t.Errorf("image %+v: want digest %s, ref %s, size 8 MiB", img, desc.Digest, ref)
	}
	if img.Config.CPUCount != 4 || img.Config.MemorySize != 8<<30 || img.Config.HardwareModel == "" || img.Config.ECID == "" {
		t.Errorf("config %+v does not carry tart's config.json", img.Config)
	}
	if _, err := img.Config.HardwareModelBytes(); err != nil {
		t.Errorf("hardware model: %v", err)
	}
	for _, p := range []string{img.DiskPath, img.NVRAMPath, img.ConfigPath} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("pulled file: %v", err)
		}
	}
	if reports == 0 {
		t.Error("no progress reports")
	}
	for _, policy := range []corev1.PullPolicy{corev1.PullNever, corev1.PullIfNotPresent, ""} {
		again, err := src.Ensure(ctx, ref, policy, nil)
		if err != nil || again.Digest != img.Digest || again.DiskPath != img.DiskPath {
			t.Errorf("policy %q after the pull: %+v, %v; want the cached image", policy, again, err)
		}
	}
}

func TestImageAuth(t *testing.T) {
	a, err := imageAuth([]RegistryAuth{
		{Registry: "https://index.docker.io/v1/", Username: "hub", Password: "hp"},
		{Registry: "https://ghcr.io", Username: "gh", Password: "gp"},
		{Registry: "registry.local:5000/v2/", Token: "tok"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.DockerConfigJSON) != 1 || a.Username != "" {
		t.Fatalf("auth %+v: want one docker config document and no global user", a)
	}
	var doc struct {
		Auths map[string]map[string]string `json:"auths"`
	}
	if err := json.Unmarshal(a.DockerConfigJSON[0], &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"https://index.docker.io/v1/": {"username": "hub", "password": "hp"},
		"ghcr.io":                     {"username": "gh", "password": "gp"},
		"registry.local:5000":         {"identitytoken": "tok"},
	}
	if len(doc.Auths) != len(want) {
		t.Fatalf("auths %v, want %v", doc.Auths, want)
	}
	for k, w := range want {
		for f, v := range w {
			if doc.Auths[k][f] != v {
				t.Errorf("auths[%q][%q] = %q, want %q", k, f, doc.Auths[k][f], v)
			}
		}
	}
}

func TestPullPolicy(t *testing.T) {
	for in, want := range map[corev1.PullPolicy]image.PullPolicy{
		corev1.PullAlways: image.PullAlways, corev1.PullNever: image.PullNever,
		corev1.PullIfNotPresent: image.PullIfNotPresent, "": image.PullIfNotPresent,
	} {
		if got := pullPolicy(in); got != want {
			t.Errorf("pullPolicy(%q) = %q, want %q", in, got, want)
		}
	}
}
