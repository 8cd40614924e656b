// Package node benchmarks how long a pod takes from creation to Ready on a
// vz-node (sim driver) against a real apiserver, next to the floor: a
// watcher that marks a pod Running and Ready the moment it sees it, which
// is all any kubelet must do at least.
//
//	go test ./bench/node -run '^$' -bench . -benchtime 20x
//
// The sim guest's boot delay (VZFLEET_BENCH_BOOT_DELAY, default 300ms)
// stands for the macOS boot and is reported apart: overhead-ms is the time
// vz-node adds on top of it (overlay, supervisor, DHCP lease, SSH
// readiness, status updates).
package node

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/vznode"
)

const namespace = "default"

// BenchmarkPodCreateToReady creates one pod per iteration bound to the
// node, times it until the apiserver shows it Running and Ready, then
// deletes it (untimed) so the next one gets a VM slot.
func BenchmarkPodCreateToReady(b *testing.B) {
	harness.RequireRoot(b)
	boot := 300 * time.Millisecond
	if v := os.Getenv("VZFLEET_BENCH_BOOT_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("VZFLEET_BENCH_BOOT_DELAY=%q: %v", v, err)
		}
		boot = d
	}
	cp := harness.ControlPlaneT(b, harness.ControlPlaneOptions{})
	vz := vznode.StartT(b, cp, vznode.Options{Name: "bench-vz", BootDelay: boot, Args: []string{"--log-level", "info"}})
	waitNodeReady(b, cp.Client, vz.Name)

	b.Run("vzfleet", func(b *testing.B) {
		lat := createLoop(b, cp.Client, vz.Name, vznode.TestImage)
		report(b, lat, boot)
	})
	b.Run("vzfleet-rss", func(b *testing.B) {
		for i := range b.N {
			idle := rssMiB(b, vz.Proc.Pid())
			names := []string{fmt.Sprintf("rss-a-%d-%d", b.N, i), fmt.Sprintf("rss-b-%d-%d", b.N, i)}
			for _, name := range names {
				w, err := cp.Client.CoreV1().Pods(namespace).Watch(context.Background(), metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := cp.Client.CoreV1().Pods(namespace).Create(context.Background(), benchPod(name, vz.Name, vznode.TestImage), metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				if err := untilReady(w, 2*time.Minute); err != nil {
					b.Fatalf("pod %s: %v", name, err)
				}
				w.Stop()
			}
			busy := rssMiB(b, vz.Proc.Pid())
			for _, name := range names {
				deleteAndWait(b, cp.Client, name)
			}
			b.ReportMetric(idle, "rss-idle-MiB")
			b.ReportMetric(busy, "rss-2vms-MiB")
		}
	})
	const floor = "bench-floor"
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	if err := startFloorKubelet(ctx, cp.Client, floor); err != nil {
		b.Fatal(err)
	}
	b.Run("floor", func(b *testing.B) {
		lat := createLoop(b, cp.Client, floor, "floor")
		report(b, lat, 0)
	})
}

// rssMiB is a process's resident set size in MiB, from /proc.
func rssMiB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func report(b *testing.B, lat []time.Duration, boot time.Duration) {
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.9).Microseconds())/1000, "p90-ms")
	b.ReportMetric(float64((p(0.5)-boot).Microseconds())/1000, "overhead-p50-ms")
}

// createLoop runs b.N create→Ready cycles on node and returns each
// cycle's latency.
func createLoop(b *testing.B, c kubernetes.Interface, node, img string) []time.Duration {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("%s-%d-%d", node, b.N, i)
		w, err := c.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := c.CoreV1().Pods(namespace).Create(ctx, benchPod(name, node, img), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := untilReady(w, 2*time.Minute); err != nil {
			b.Fatalf("pod %s: %v", name, err)
		}
		lat = append(lat, time.Since(start))
		w.Stop()
		b.StopTimer()
		deleteAndWait(b, c, name)
		b.StartTimer()
	}
	return lat
}

func benchPod(name, node, img string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			NodeName:      node,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "vm", Image: img, ImagePullPolicy: corev1.PullIfNotPresent}},
			Tolerations:   []corev1.Toleration{{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpExists}},
		},
	}
}

func untilReady(w watch.Interface, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch closed")
			}
			if p, ok := ev.Object.(*corev1.Pod); ok && ready(p) {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("not Ready within %s", timeout)
		}
	}
}

func ready(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func deleteAndWait(b *testing.B, c kubernetes.Interface, name string) {
	ctx := context.Background()
	zero := int64(0)
	if err := c.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := c.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("pod %s not gone after a minute", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitNodeReady(b *testing.B, c kubernetes.Interface, name string) {
	deadline := time.Now().Add(90 * time.Second)
	for {
		n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("node %s not Ready: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
