package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fleetctl prepull runs vz-node pull on the lab's three simulated Macs over
// SSH; each host pulls from the registry itself (reached through the
// forwarded loopback) into its own cache. A host without vz-node fails on
// its own, named in the summary and the exit status, and a second run for it
// alone completes the fleet.
func TestImagePrepullLab(t *testing.T) {
	fl := startFleetLab(t)
	img := fl.pushTestVM("e2e/prepull:v1", 64<<20)
	vm, ref, pushed := img.vm, img.ref, img.pushed

	install := func(host string) {
		for _, h := range fl.lab.Hosts {
			if h.Name != host {
				continue
			}
			b, err := os.ReadFile(fl.vzNode["v0.1.0-e2e"])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(h.Path(binaryPath), b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	install("mini-01")
	install("mini-02") // mini-03 has no vz-node yet

	prepull := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, fl.fleetctlBin, append([]string{"prepull", ref, fl.inventory, "--ssh-config", "none"}, args...)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("fleetctl prepull: %v", err)
		}
		t.Logf("$ fleetctl prepull %s (exit %d)\n%s", strings.Join(args, " "), code, b.String())
		return b.String(), code
	}

	out, code := prepull("--max-hosts", "2", "--concurrency", "2")
	if code == 0 {
		t.Fatal("prepull succeeded although mini-03 has no vz-node")
	}
	for _, want := range []string{"mini-01: done", "mini-02: done", "mini-03: failed", "2 of 3 hosts have the image; 1 failed", "1 of 3 hosts failed to pull: mini-03"} {
		if !strings.Contains(out, want) {
			t.Errorf("prepull output lacks %q", want)
		}
	}
	diskOn := func(host string) string {
		for _, h := range fl.lab.Hosts {
			if h.Name == host {
				return h.Path("/Library/Caches/vzfleet/oci/images/" + strings.Replace(pushed, ":", "-", 1) + "/disk.img")
			}
		}
		t.Fatalf("no host %s", host)
		return ""
	}
	for _, h := range []string{"mini-01", "mini-02"} {
		sameContent(t, filepath.Join(vm, "disk.img"), diskOn(h))
	}
	if _, err := os.Stat(diskOn("mini-03")); err == nil {
		t.Error("mini-03 has the image although its pull failed")
	}

	install("mini-03")
	out, code = prepull("--limit", "mini-03")
	if code != 0 || !strings.Contains(out, "1 of 1 hosts have the image.") {
		t.Fatalf("prepull --limit mini-03: exit %d", code)
	}
	sameContent(t, filepath.Join(vm, "disk.img"), diskOn("mini-03"))

	// Everyone has it now: IfNotPresent answers from each cache.
	out, code = prepull("--policy", "IfNotPresent")
	if code != 0 || !strings.Contains(out, "3 of 3 hosts have the image.") || strings.Count(out, pushed) != 3 {
		t.Fatalf("prepull --policy IfNotPresent: exit %d", code)
	}
}
