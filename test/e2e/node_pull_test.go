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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/image"
	"github.com/vzfleet/vzfleet/node"
	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/vznode"
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
	if err := vznode.WriteImage(scratch, "scratch"); err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr + "/vms/macos-sim:15"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := image.Push(ctx, node.LocalImageDir(scratch, "scratch"), ref, image.PushOptions{}); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}

	// Watch the node for the pull-progress annotation fleetctl status shows.
	watch, err := cp.Client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	progress := make(chan string, 100)
	go func() {
		for ev := range watch.ResultChan() {
			if n, ok := ev.Object.(*corev1.Node); ok {
				if v := n.Annotations[node.AnnotationPullProgress]; v != "" {
					select {
					case progress <- v:
					default:
					}
				}
			}
		}
	}()

	pod := strings.Replace(vmPod("pulled"), nodeTestImage, ref, 1) + "  nodeName: " + name + "\n"
	if out, err := cp.Apply(ctx, pod); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := waitPodRunningReady(t, cp, "default", "pulled")
	if !strings.HasPrefix(p.Status.ContainerStatuses[0].ImageID, "sha256:") {
		t.Errorf("imageID %q, want the manifest digest", p.Status.ContainerStatuses[0].ImageID)
	}
	if _, err := os.Stat(filepath.Join(n.CacheDir, "oci")); err != nil {
		t.Errorf("pull engine cache: %v", err)
	}
	select {
	case v := <-progress:
		if !strings.HasPrefix(v, ref+" ") || !strings.HasSuffix(v, "%") {
			t.Errorf("pull progress annotation %q, want %q and a percentage", v, ref)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the node never showed the %s annotation during the pull", node.AnnotationPullProgress)
	}
	eventually(t, 30*time.Second, "the pull progress annotation is removed after the pull", func() error {
		n, err := cp.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v, ok := n.Annotations[node.AnnotationPullProgress]; ok {
			return fmt.Errorf("annotation still %q", v)
		}
		return nil
	})
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
