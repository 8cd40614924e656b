package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// apply pre-pulls the images the inventory lists for each host once its
// node is Ready, from the harness registry through the forwarded
// loopback. A host whose pull fails is reported FAILED in its images step
// and is not rolled back: its node stays Ready on the new vz-node. A
// re-apply finds the images cached and changes nothing.
func TestFleetApplyPrepullsImages(t *testing.T) {
	fl := startFleetLab(t)
	img := fl.pushTestVM("e2e/apply-images:v1", 32<<20)
	vm, ref, pushed := img.vm, img.ref, img.pushed
	missing := img.registry + "/e2e/missing:v1"

	images := func(refs ...string) string {
		return "    images:\n      - " + strings.Join(refs, "\n      - ") + "\n"
	}
	fl.writeInventory(map[string]string{"mini-01": images(ref), "mini-02": images(ref), "mini-03": images(ref, missing)})
	out, code := fl.apply("v0.1.0-e2e")
	if code == 0 {
		t.Error("apply exited 0 although mini-03's second image does not exist")
	}
	for _, h := range []string{"mini-01", "mini-02"} {
		if l := summaryLine(t, out, h); !strings.Contains(l, "changed") || !strings.Contains(l, " 1/1 ") {
			t.Errorf("%s: %s", h, l)
		}
	}
	l := summaryLine(t, out, "mini-03")
	for _, want := range []string{"FAILED", " 1/2 ", "images: pre-pulling 1 of 2 images failed", "e2e/missing:v1"} {
		if !strings.Contains(l, want) {
			t.Errorf("mini-03 summary lacks %q: %s", want, l)
		}
	}
	if strings.Contains(out, "rolling back") || strings.Contains(l, "ROLLED BACK") {
		t.Error("a failed pre-pull rolled the host back")
	}
	for _, h := range fl.lab.Hosts {
		fl.assertNodeReady(h.Name, "v0.1.0-e2e")
		sameContent(t, filepath.Join(vm, "disk.img"),
			h.Path("/Library/Caches/vzfleet/oci/images/"+strings.Replace(pushed, ":", "-", 1)+"/disk.img"))
	}
	if _, err := os.Stat(fl.lab.Host("mini-03").Path(binaryPath)); err != nil {
		t.Errorf("mini-03's vz-node is gone after the failed pre-pull: %v", err)
	}

	// The images are cached now: a re-apply uploads, restarts and pulls
	// nothing.
	fl.writeInventory(map[string]string{"mini-01": images(ref), "mini-02": images(ref), "mini-03": images(ref)})
	out, code = fl.apply("v0.1.0-e2e")
	if code != 0 || !strings.Contains(out, "no changes: all 3 hosts are up to date") {
		t.Fatalf("re-apply: exit %d", code)
	}
	for _, h := range fl.lab.Hosts {
		if l := summaryLine(t, out, h.Name); !strings.Contains(l, " 1/1 ") {
			t.Errorf("%s: %s", h.Name, l)
		}
	}
	if strings.Contains(out, "installed ") || strings.Contains(out, "launchctl") {
		t.Error("re-apply installed or restarted something")
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, ": done,") && !strings.Contains(line, "(0 B downloaded") {
			t.Errorf("re-apply downloaded image data: %s", line)
		}
	}
}
