package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/test/harness"
)

// fleetctl image push packages a VM directory into the harness's registry,
// fleetctl image inspect describes it, and vz-node pull brings it into a
// cache with JSON progress; the pulled disk equals the pushed one byte for
// byte, and vz-node images lists it.
func TestImagePushInspectPull(t *testing.T) {
	t.Parallel()
	reg := harness.RegistryT(t)
	fleetctl, vzNode := imageFleetctl(t), buildVZNode(t)
	dir := t.TempDir()
	vm := filepath.Join(dir, "vm")
	const size, chunk = 96 << 20, 16 << 20
	makeTestVM(t, vm, size)
	ref := reg.Addr + "/e2e/macos:v1"

	out, errOut := mustRun(t, 2*time.Minute, fleetctl, "image", "push", vm, ref, "--chunk-size", "16777216", "--concurrency", "2")
	pushed := strings.TrimSpace(out)
	if !strings.HasPrefix(pushed, "sha256:") {
		t.Fatalf("image push printed %q on stdout, want the manifest digest", out)
	}
	if !strings.Contains(errOut, "chunks 6/6") || !strings.Contains(errOut, "/s") {
		t.Errorf("image push progress on stderr lacks the final chunk count or a rate:\n%s", errOut)
	}

	out, _ = mustRun(t, time.Minute, fleetctl, "image", "inspect", ref, "-o", "json")
	var desc struct {
		Digest string
		Image  struct{ DiskSize int64 }
	}
	if err := json.Unmarshal([]byte(out), &desc); err != nil {
		t.Fatalf("image inspect -o json: %v\n%s", err, out)
	}
	if desc.Digest != pushed || desc.Image.DiskSize != size {
		t.Fatalf("inspect says digest %s, disk %d; pushed %s, disk %d", desc.Digest, desc.Image.DiskSize, pushed, size)
	}
	out, _ = mustRun(t, time.Minute, fleetctl, "image", "inspect", ref, "--chunks")
	if !strings.Contains(out, pushed) || !strings.Contains(out, "96.0 MiB in 6 chunk(s)") || strings.Count(out, "16.0 MiB") < size/chunk {
		t.Errorf("image inspect --chunks output:\n%s", out)
	}

	cache := filepath.Join(dir, "cache")
	out, _ = mustRun(t, 2*time.Minute, vzNode, "pull", ref, "--cache-dir", cache, "--progress=json")
	lines := jsonLines(t, out)
	if len(lines) < 2 {
		t.Fatalf("vz-node pull printed %d JSON lines, want progress and a final line:\n%s", len(lines), out)
	}
	last := lines[len(lines)-1]
	if last["done"] != true || last["digest"] != pushed || last["bytesTotal"] != float64(size) {
		t.Fatalf("last progress line %v: want done, digest %s, bytesTotal %d", last, pushed, size)
	}
	disk, _ := last["disk"].(string)
	sameContent(t, filepath.Join(vm, "disk.img"), disk)

	// A second pull with IfNotPresent is served by the cache.
	_, errOut = mustRun(t, time.Minute, vzNode, "pull", ref, "--cache-dir", cache, "--policy", "IfNotPresent")
	if !strings.Contains(errOut, "pulled "+pushed) {
		t.Errorf("vz-node pull (text progress) stderr:\n%s", errOut)
	}

	out, _ = mustRun(t, time.Minute, vzNode, "images", "--cache-dir", cache, "-o", "json")
	var imgs []struct {
		Digest   string
		Refs     []string
		DiskSize int64
	}
	if err := json.Unmarshal([]byte(out), &imgs); err != nil {
		t.Fatalf("vz-node images -o json: %v\n%s", err, out)
	}
	if len(imgs) != 1 || imgs[0].Digest != pushed || imgs[0].DiskSize != size || len(imgs[0].Refs) == 0 {
		t.Fatalf("vz-node images: %+v", imgs)
	}
	out, _ = mustRun(t, time.Minute, vzNode, "images", "--cache-dir", cache)
	if !strings.Contains(out, "e2e/macos:v1") || !strings.Contains(out, "96.0 MiB") {
		t.Errorf("vz-node images table:\n%s", out)
	}

	// A tag that does not exist: non-zero exit, an error line, a clear message.
	out, errOut, err := runBin(t, time.Minute, vzNode, "pull", reg.Addr+"/e2e/macos:missing", "--cache-dir", cache, "--progress=json")
	if err == nil {
		t.Fatalf("pulling a missing tag succeeded:\n%s", out)
	}
	lines = jsonLines(t, out)
	if len(lines) == 0 || lines[len(lines)-1]["error"] == nil {
		t.Fatalf("pulling a missing tag: no error line on stdout:\n%s", out)
	}
	if !strings.Contains(errOut, "e2e/macos:missing") {
		t.Errorf("pulling a missing tag: stderr does not name the reference:\n%s", errOut)
	}
}
