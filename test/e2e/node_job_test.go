package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/vznode"
)

// A macOS build as a Kubernetes Job: the VM container's command runs in
// the guest, kubectl logs reads its output (also after the VM has
// stopped), its exit code decides the Job, a vz-node restart in the
// middle of it neither stops nor repeats it, and the pod's
// activeDeadlineSeconds is its timeout.
func TestVZNodeJobs(t *testing.T) {
	harness.RequireRoot(t)
	t.Parallel()
	ctx := context.Background()
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{ControllerManager: true})
	const node = "mac-jobs"
	vz := vznode.StartT(t, cp, vznode.Options{Name: node})
	job := func(name, script string) string {
		return strings.NewReplacer("NAME", name, "NODE", node, "VM", nodeTestImage, "SCRIPT", script, "DEADLINE", "3600").Replace(`apiVersion: batch/v1
kind: Job
metadata:
  name: NAME
  namespace: default
spec:
  backoffLimit: 0
  template:
    spec:
      nodeName: NODE
      restartPolicy: Never
      activeDeadlineSeconds: DEADLINE
      terminationGracePeriodSeconds: 5
      tolerations:
      - key: virtual-kubelet.io/provider
        operator: Exists
      containers:
      - name: macos
        image: VM
        terminationMessagePolicy: FallbackToLogsOnError
        command: ["sh", "-c"]
        args: ['SCRIPT']
        env:
        - name: TARGET
          value: ios
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
`)
	}
	manifest := job("build", `echo "building $TARGET"; while [ ! -f go ]; do sleep 0.2; done; echo "done on $POD_IP"`) + "---\n" +
		job("broken", `echo "compiling"; echo "error: no such scheme" >&2; exit 65`) + "---\n" +
		strings.Replace(job("hung", `echo "waiting forever"; sleep 600`), "activeDeadlineSeconds: 3600", "activeDeadlineSeconds: 5", 1)
	if out, err := cp.Apply(ctx, manifest); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	podOf := func(jobName string) *corev1.Pod {
		t.Helper()
		var pod *corev1.Pod
		eventually(t, 90*time.Second, "the pod of job "+jobName, func() error {
			pods, err := cp.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jobName})
			if err != nil || len(pods.Items) != 1 {
				return fmt.Errorf("%d pods (%v)", len(pods.Items), err)
			}
			pod = &pods.Items[0]
			return nil
		})
		return pod
	}
	jobDone := func(name string, want batchv1.JobConditionType) {
		t.Helper()
		eventually(t, 90*time.Second, "job "+name+" "+string(want), func() error {
			j, err := cp.Client.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range j.Status.Conditions {
				if c.Type == want && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", j.Status.Conditions)
		})
	}

	build := podOf("build")
	eventually(t, 90*time.Second, "the build's first line", func() error {
		if out, code := nodeKubectlCode(t, cp, "", "logs", "job/build"); code != 0 || out != "building ios\n" {
			return fmt.Errorf("kubectl logs job/build: exit %d, %q", code, out)
		}
		return nil
	})
	// vz-node restarts while the build runs; the build goes on.
	if err := vz.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the build's pod Running after the restart", func() error {
		p, err := nodeGetPod(t, cp, "default", build.Name)
		if err != nil || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod %v (%v)", p.Status.Phase, err)
		}
		return nil
	})
	// kubectl exec runs with the container's environment.
	running, err := nodeGetPod(t, cp, "default", build.Name)
	if err != nil {
		t.Fatal(err)
	}
	if out, code := nodeKubectlCode(t, cp, "", "exec", build.Name, "--", "sh", "-c", "echo $TARGET $POD_IP"); code != 0 || out != "ios "+running.Status.PodIP+"\n" {
		t.Fatalf("kubectl exec with the container's env: exit %d, %q", code, out)
	}
	// kubectl cp reaches the guest both ways (tar over exec).
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "source.txt"), []byte("sources\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodeKubectl(t, cp, "cp", filepath.Join(dir, "source.txt"), build.Name+":source.txt")
	nodeKubectl(t, cp, "cp", build.Name+":source.txt", filepath.Join(dir, "back.txt"))
	if b, err := os.ReadFile(filepath.Join(dir, "back.txt")); err != nil || string(b) != "sources\n" {
		t.Fatalf("kubectl cp there and back: %q (%v)", b, err)
	}
	if out, code := nodeKubectlCode(t, cp, "", "exec", build.Name, "--", "touch", "go"); code != 0 {
		t.Fatalf("kubectl exec touch go: exit %d, %q", code, out)
	}
	jobDone("build", batchv1.JobComplete)
	if out := nodeKubectl(t, cp, "logs", "job/build"); out != "building ios\ndone on "+running.Status.PodIP+"\n" {
		t.Fatalf("kubectl logs job/build after it completed: %q", out)
	}

	jobDone("broken", batchv1.JobFailed)
	broken := podOf("broken")
	eventually(t, 30*time.Second, "the broken build's exit code", func() error {
		p, err := nodeGetPod(t, cp, "default", broken.Name)
		if err != nil {
			return err
		}
		if cs := p.Status.ContainerStatuses; p.Status.Phase != corev1.PodFailed || len(cs) == 0 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 65 ||
			cs[0].State.Terminated.Message != "compiling\nerror: no such scheme\n" {
			return fmt.Errorf("phase %s, statuses %+v; want exit code 65 and the log's end as the message", p.Status.Phase, cs)
		}
		return nil
	})
	if out := nodeKubectl(t, cp, "logs", broken.Name, "--timestamps"); !strings.Contains(out, "Z compiling\n") || !strings.HasSuffix(out, "Z error: no such scheme\n") {
		t.Fatalf("kubectl logs --timestamps of the broken build: %q", out)
	}
	// The hung build is stopped at its pod's deadline.
	jobDone("hung", batchv1.JobFailed)
	hung := podOf("hung")
	eventually(t, 30*time.Second, "the hung build's pod failed at its deadline", func() error {
		p, err := nodeGetPod(t, cp, "default", hung.Name)
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "DeadlineExceeded" {
			return fmt.Errorf("phase %s, reason %q", p.Status.Phase, p.Status.Reason)
		}
		return nil
	})
	nodeKubectl(t, cp, "delete", "job", "build", "broken", "hung", "--cascade=foreground", "--wait=true", "--timeout=60s")
}
