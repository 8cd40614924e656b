package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/image"
	"github.com/vzfleet/vzfleet/node"
	"github.com/vzfleet/vzfleet/test/harness"
)

// A pod whose VM image is only in a registry: vz-node pulls it with the
// OCI pull engine, then boots it.
func TestVZNodePullsFromRegistry(t *testing.T) {
	harness.RequireRoot(t)
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{})
	reg := harness.RegistryT(t)
	const name = "mac-e2e-pull"
	n := startVZNode(t, cp, name)

	// Build the image in a scratch cache and push it.
	scratch := t.TempDir()
	src := &vzNode{t: t, cacheDir: scratch}
	src.addImage("scratch")
	ref := reg.Addr + "/vms/macos-sim:15"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := image.Push(ctx, node.LocalImageDir(scratch, "scratch"), ref, image.PushOptions{}); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}

	pod := strings.Replace(vmPod("pulled"), nodeTestImage, ref, 1) + "  nodeName: " + name + "\n"
	if out, err := cp.Apply(ctx, pod); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := waitPodRunningReady(t, cp, "default", "pulled")
	if !strings.HasPrefix(p.Status.ContainerStatuses[0].ImageID, "sha256:") {
		t.Errorf("imageID %q, want the manifest digest", p.Status.ContainerStatuses[0].ImageID)
	}
	if _, err := os.Stat(filepath.Join(n.cacheDir, "oci")); err != nil {
		t.Errorf("pull engine cache: %v", err)
	}
	eventually(t, 30*time.Second, "the node status lists the pulled image", func() error {
		node, err := cp.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, img := range node.Status.Images {
			if slices.Contains(img.Names, ref) && img.SizeBytes > 0 {
				return nil
			}
		}
		return fmt.Errorf("node status images %+v lack %s", node.Status.Images, ref)
	})
}
