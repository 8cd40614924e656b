package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/vznode"
)

// A pod whose containers after the VM are Docker sidecars, driven with
// plain kubectl against a real apiserver, a real Docker engine and a real
// registry: an init container prepares a volume before the VM and the
// sidecar start, the containers' image is pulled from a registry that
// wants the pod's imagePullSecret, their env comes from the downward API, a
// ConfigMap and a Secret (read with the node's own credentials), a
// PersistentVolumeClaim bound by the controller manager is the volume's
// directory for the sidecar and the VM, a native sidecar starts once its
// HTTP startup probe reaches it and publishes its hostPort, the containers
// reach each other on localhost through the pod's sandbox, kubectl logs
// and exec reach them, and deleting the pod removes its containers.
func TestVZNodeSidecars(t *testing.T) {
	harness.RequireRoot(t)
	t.Parallel()
	ctx := context.Background()
	docker := harness.DockerWithImageT(t, "vzfleet-test/busybox:1")
	reg := harness.AuthRegistryT(t, "ci", "pa55word")
	image := reg.Addr + "/tools/busybox:1"
	cliConfig := t.TempDir()
	for _, args := range [][]string{{"login", "-u", "ci", "--password-stdin", reg.Addr}, {"tag", "vzfleet-test/busybox:1", image}, {"push", image}, {"rmi", image}, {"logout", reg.Addr}} {
		cmd := exec.Command("docker", append([]string{"--config", cliConfig, "--host", docker.Host}, args...)...)
		cmd.Stdin = strings.NewReader("pa55word")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, out)
		}
	}
	// As on a real cluster, every container gets a service account token
	// volume.
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{ControllerManager: true, ServiceAccounts: true})
	const node = "mac-sidecars"
	vz := vznode.StartT(t, cp, vznode.Options{Name: node, Env: []string{"DOCKER_HOST=" + docker.Host}})

	eventually(t, 90*time.Second, "node Ready with Docker reachable", func() error {
		n, err := cp.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds := map[corev1.NodeConditionType]corev1.ConditionStatus{}
		for _, c := range n.Status.Conditions {
			conds[c.Type] = c.Status
		}
		if conds[corev1.NodeReady] != corev1.ConditionTrue || conds["DockerReachable"] != corev1.ConditionTrue {
			return fmt.Errorf("conditions %v", conds)
		}
		return nil
	})

	eventually(t, 60*time.Second, "the default service account and kube-root-ca.crt", func() error {
		if _, err := cp.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err := cp.Client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	})
	nodeKubectl(t, cp, "create", "secret", "docker-registry", "regcred", "--docker-server="+reg.Addr, "--docker-username=ci", "--docker-password=pa55word")
	nodeKubectl(t, cp, "create", "secret", "generic", "agent-token", "--from-literal=token=t0ken")
	hostPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// A build cache on the Mac, claimed through a hostPath PersistentVolume
	// that the controller manager binds.
	cacheDir := t.TempDir()
	manifest := strings.NewReplacer("NODE", node, "IMAGE", image, "VM", nodeTestImage, "HOSTPORT", strconv.Itoa(hostPort), "CACHEDIR", cacheDir).Replace(`apiVersion: v1
kind: PersistentVolume
metadata:
  name: NODE-cache
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  storageClassName: mac-local
  hostPath:
    path: CACHEDIR
    type: Directory
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: build-cache
  namespace: default
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: mac-local
  resources:
    requests:
      storage: 1Gi
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: agent-settings
  namespace: default
data:
  level: debug
---
apiVersion: v1
kind: Service
metadata:
  name: cache-api
  namespace: default
spec:
  ports:
  - name: http
    port: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: hybrid
  namespace: default
spec:
  nodeName: NODE
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
  terminationGracePeriodSeconds: 5
  imagePullSecrets:
  - name: regcred
  volumes:
  - name: settings
    configMap:
      name: agent-settings
  - name: work
    emptyDir: {}
  - name: cache
    persistentVolumeClaim:
      claimName: build-cache
  initContainers:
  - name: prepare
    image: IMAGE
    command: ["sh", "-c", "echo prepared for $POD_NAME > /work/prepared; echo prepare done"]
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    volumeMounts:
    - name: work
      mountPath: /work
  - name: cache
    image: IMAGE
    restartPolicy: Always
    command: ["sh", "-c", "echo cache up; mkdir /www; echo hit > /www/index.html; exec httpd -f -p 8080 -h /www"]
    ports:
    - name: http
      containerPort: 8080
      hostPort: HOSTPORT
    startupProbe:
      httpGet:
        path: /index.html
        port: http
      periodSeconds: 1
  containers:
  - name: macos
    image: VM
    volumeMounts:
    - name: settings
      mountPath: /Volumes/settings
    - name: work
      mountPath: /Volumes/work
    - name: cache
      mountPath: /Volumes/cache
  - name: agent
    image: IMAGE
    imagePullPolicy: Always
    command: ["sh", "-c", "rm -f /tmp/unwell; echo agent of $POD_NAME level=$LEVEL token=$TOKEN; trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts:
    - name: settings
      mountPath: /etc/agent
    - name: settings
      mountPath: /etc/agent-level.conf
      subPath: level
    - name: cache
      mountPath: /cache
    readinessProbe:
      exec:
        command: ["test", "-s", "/etc/agent/level"]
      periodSeconds: 1
    livenessProbe:
      exec:
        command: ["test", "!", "-e", "/tmp/unwell"]
      periodSeconds: 1
      failureThreshold: 1
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "echo run >> /tmp/post-start"]
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: LEVEL
      valueFrom:
        configMapKeyRef:
          name: agent-settings
          key: level
    - name: TOKEN
      valueFrom:
        secretKeyRef:
          name: agent-token
          key: token
`)
	if out, err := cp.Apply(ctx, manifest); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}

	var pod *corev1.Pod
	eventually(t, 90*time.Second, "both containers Ready", func() error {
		p, err := nodeGetPod(t, cp, "default", "hybrid")
		if err != nil {
			return err
		}
		pod = p
		var ready []string
		for _, c := range p.Status.ContainerStatuses {
			if c.Ready {
				ready = append(ready, c.Name)
			}
		}
		if p.Status.Phase != corev1.PodRunning || strings.Join(ready, ",") != "macos,agent" {
			return fmt.Errorf("phase %s, ready containers %v", p.Status.Phase, ready)
		}
		return nil
	})
	agent := pod.Status.ContainerStatuses[1]
	if !strings.HasPrefix(agent.ContainerID, "docker://") || !strings.HasPrefix(agent.ImageID, "docker://sha256:") {
		t.Fatalf("agent status %+v", agent)
	}
	// The init container ran to completion before the VM started, and what
	// it wrote is in the VM's share; the native sidecar after it runs, and
	// kubectl counts it among the pod's containers.
	if st := pod.Status.InitContainerStatuses; len(st) != 2 || st[0].State.Terminated == nil || st[0].State.Terminated.Reason != "Completed" ||
		st[0].State.Terminated.FinishedAt.After(pod.Status.ContainerStatuses[0].State.Running.StartedAt.Time) || st[1].State.Running == nil || !st[1].Ready {
		t.Fatalf("init container statuses %+v, want prepare completed before the VM started at %s, and cache running", st, pod.Status.ContainerStatuses[0].State.Running.StartedAt)
	}
	if out := nodeKubectl(t, cp, "get", "pod", "hybrid", "--no-headers"); !strings.HasPrefix(strings.Join(strings.Fields(out), " "), "hybrid 3/3 Running") {
		t.Fatalf("kubectl get pod hybrid: %q, want 3/3 containers ready, Running", out)
	}
	if out := nodeKubectl(t, cp, "logs", "hybrid", "-c", "cache"); out != "cache up\n" {
		t.Fatalf("kubectl logs -c cache: %q", out)
	}
	// The native sidecar started once its HTTP startup probe reached it,
	// and its hostPort is published on the node.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort))
	if err != nil {
		t.Fatalf("the cache's hostPort %d: %v", hostPort, err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(page) != "hit\n" {
		t.Fatalf("the cache's hostPort %d answered %s %q", hostPort, resp.Status, page)
	}
	// The pod's Docker containers share its sandbox's network: the agent
	// reaches the cache on localhost.
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "wget", "-qO-", "http://127.0.0.1:8080/index.html"); code != 0 || out != "hit\n" {
		t.Fatalf("the agent fetching the cache's page over localhost: exit %d, %q", code, out)
	}
	// kubectl port-forward reaches a port the Docker containers declare
	// (the cache's), and any other in the VM (the guest's SSH server).
	if page, err := httpGet("http://" + portForward(t, cp, "hybrid", 8080) + "/index.html"); err != nil || page != "hit\n" {
		t.Fatalf("the cache's page through kubectl port-forward: %q, %v", page, err)
	}
	if banner, err := readLine(portForward(t, cp, "hybrid", 22)); err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Fatalf("the VM's SSH server through kubectl port-forward: %q, %v", banner, err)
	}
	if out := nodeKubectl(t, cp, "logs", "hybrid", "-c", "prepare"); out != "prepare done\n" {
		t.Fatalf("kubectl logs -c prepare: %q", out)
	}
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "macos", "--", "cat", "Volumes/My Shared Files/work/prepared"); code != 0 || out != "prepared for hybrid\n" {
		t.Fatalf("the init container's file in the VM: exit %d, %q", code, out)
	}

	eventually(t, 30*time.Second, "the agent's log", func() error {
		if out := nodeKubectl(t, cp, "logs", "hybrid", "-c", "agent"); out != "agent of hybrid level=debug token=t0ken\n" {
			return fmt.Errorf("kubectl logs -c agent: %q", out)
		}
		return nil
	})
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "sh", "-c", "echo in $POD_NAME; exit 3"); code != 3 || out != "in hybrid\n" {
		t.Fatalf("kubectl exec -c agent: exit %d, output %q", code, out)
	}
	if out, code := nodeKubectlCode(t, cp, "through stdin", "exec", "-i", "hybrid", "-c", "agent", "--", "cat"); code != 0 || out != "through stdin" {
		t.Fatalf("kubectl exec -i -c agent -- cat: exit %d, output %q", code, out)
	}
	// The Services' variables, as the kubelet sets them: the API server's
	// and, with enableServiceLinks, those of the pod's namespace.
	var ips []string
	for _, name := range []string{"kubernetes", "cache-api"} {
		svc, err := cp.Client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ips = append(ips, svc.Spec.ClusterIP)
	}
	want := fmt.Sprintf("%s 443 %s 8080 tcp://%s:8080\n", ips[0], ips[1], ips[1])
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "sh", "-c",
		"echo $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT $CACHE_API_SERVICE_HOST $CACHE_API_SERVICE_PORT_HTTP $CACHE_API_PORT"); code != 0 || out != want {
		t.Fatalf("Service variables in the sidecar: exit %d, %q, want %q", code, out, want)
	}
	// Volumes: the ConfigMap in the sidecar and, as a virtio-fs share
	// (macOS shows it under /Volumes/My Shared Files), in the VM; the
	// admission-injected service account token works against the API.
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "cat", "/etc/agent/level", "/etc/agent-level.conf"); code != 0 || out != "debugdebug" {
		t.Fatalf("the ConfigMap volume in the sidecar: exit %d, %q", code, out)
	}
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "macos", "--", "cat", "Volumes/My Shared Files/settings/level"); code != 0 || out != "debug" {
		t.Fatalf("the ConfigMap volume in the VM: exit %d, %q", code, out)
	}
	// The claim: what the sidecar writes is in the PersistentVolume's
	// directory on the host and in the VM's share.
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "sh", "-c", "echo warm > /cache/state"); code != 0 {
		t.Fatalf("writing the claimed volume in the sidecar: exit %d, %q", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(cacheDir, "state")); err != nil || string(b) != "warm\n" {
		t.Fatalf("the PersistentVolume's directory holds %q (%v), want what the sidecar wrote", b, err)
	}
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "macos", "--", "cat", "Volumes/My Shared Files/cache/state"); code != 0 || out != "warm\n" {
		t.Fatalf("the claimed volume in the VM: exit %d, %q", code, out)
	}
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	token, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "cat", sa+"token")
	if ns, _ := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "cat", sa+"namespace"); code != 0 || token == "" || ns != "default" {
		t.Fatalf("service account volume: token exit %d (%d bytes), namespace %q", code, len(token), ns)
	}
	kubectl, err := harness.Tool("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	who, err := exec.Command(kubectl, "--server="+cp.URL, "--certificate-authority="+cp.CA.CertPath, "--token="+token,
		"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
	if err != nil || string(who) != "system:serviceaccount:default:default" {
		t.Fatalf("kubectl auth whoami with the sidecar's token: %v %s", err, who)
	}

	events := nodeKubectl(t, cp, "get", "events", "--field-selector", "involvedObject.name=hybrid", "-o", "custom-columns=REASON:.reason,MESSAGE:.message", "--no-headers")
	for _, want := range []string{"Pulled image \"" + image + "\" for container prepare", "Started init container prepare", "Pulled image \"" + image + "\" for container agent", "Started sidecar container agent"} {
		if !strings.Contains(events, want) {
			t.Fatalf("pod events lack %q:\n%s", want, events)
		}
	}

	// A failed liveness probe restarts the sidecar, as with the kubelet.
	nodeKubectl(t, cp, "exec", "hybrid", "-c", "agent", "--", "touch", "/tmp/unwell")
	eventually(t, 60*time.Second, "the agent restarted after its liveness probe failed", func() error {
		p, err := nodeGetPod(t, cp, "default", "hybrid")
		if err != nil {
			return err
		}
		a := p.Status.ContainerStatuses[1]
		if a.RestartCount != 1 || !a.Ready || a.LastTerminationState.Terminated == nil || a.LastTerminationState.Terminated.ExitCode != 0 {
			return fmt.Errorf("agent restarts %d, ready %v, last state %+v", a.RestartCount, a.Ready, a.LastTerminationState)
		}
		return nil
	})
	events = nodeKubectl(t, cp, "get", "events", "--field-selector", "involvedObject.name=hybrid", "-o", "custom-columns=REASON:.reason,MESSAGE:.message", "--no-headers")
	if !strings.Contains(events, "Killing") || !strings.Contains(events, "Container agent failed liveness probe, will be restarted") {
		t.Fatalf("pod events lack the liveness kill:\n%s", events)
	}
	// The postStart hook ran once for each of the agent's two runs (the
	// restart keeps the container's files).
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "cat", "/tmp/post-start"); code != 0 || out != "run\nrun\n" {
		t.Fatalf("the agent's postStart hook: exit %d, %q, want a line per run", code, out)
	}
	// Docker restarted the agent in place, with one log; kubectl logs
	// shows its current run, and --previous the one before, as the
	// kubelet's container instances.
	eventually(t, 30*time.Second, "the agent's log by run", func() error {
		for _, args := range [][]string{{"logs", "hybrid", "-c", "agent"}, {"logs", "hybrid", "-c", "agent", "--previous"}} {
			if out := nodeKubectl(t, cp, args...); out != "agent of hybrid level=debug token=t0ken\n" {
				return fmt.Errorf("kubectl %s: %q, want the line of one run", strings.Join(args, " "), out)
			}
		}
		return nil
	})

	// The pod's sandbox removed behind vz-node's back: as with the
	// kubelet's SandboxChanged, its Docker containers start anew in a new
	// one, where they reach each other on localhost again.
	d, err := sidecar.New(docker.Host)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, sidecar.SandboxName(pod)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the agent and the cache restarted in a new sandbox", func() error {
		p, err := nodeGetPod(t, cp, "default", "hybrid")
		if err != nil {
			return err
		}
		a, c := p.Status.ContainerStatuses[1], p.Status.InitContainerStatuses[1]
		if a.RestartCount != 2 || !a.Ready || c.RestartCount != 1 || !c.Ready {
			return fmt.Errorf("agent restarts %d ready %v, cache restarts %d ready %v", a.RestartCount, a.Ready, c.RestartCount, c.Ready)
		}
		return nil
	})
	if out, code := nodeKubectlCode(t, cp, "", "exec", "hybrid", "-c", "agent", "--", "wget", "-qO-", "http://127.0.0.1:8080/index.html"); code != 0 || out != "hit\n" {
		t.Fatalf("the agent fetching the cache's page over localhost in the new sandbox: exit %d, %q", code, out)
	}
	events = nodeKubectl(t, cp, "get", "events", "--field-selector", "involvedObject.name=hybrid", "-o", "custom-columns=REASON:.reason,MESSAGE:.message", "--no-headers")
	if !strings.Contains(events, "SandboxChanged") || !strings.Contains(events, "Pod sandbox changed, it will be killed and re-created.") {
		t.Fatalf("pod events lack SandboxChanged:\n%s", events)
	}

	// A pod whose Secret does not exist yet waits Pending, restartPolicy
	// Never or not, and starts once it exists, as with the kubelet.
	late := strings.NewReplacer("NODE", node, "VM", nodeTestImage).Replace(`apiVersion: v1
kind: Pod
metadata:
  name: late
  namespace: default
spec:
  nodeName: NODE
  restartPolicy: Never
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
  terminationGracePeriodSeconds: 5
  containers:
  - name: macos
    image: VM
    env:
    - name: TOKEN
      valueFrom:
        secretKeyRef:
          name: arrives-later
          key: token
`)
	if out, err := cp.Apply(ctx, late); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	eventually(t, 60*time.Second, "pod late Pending on its Secret", func() error {
		p, err := nodeGetPod(t, cp, "default", "late")
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodPending || len(p.Status.ContainerStatuses) == 0 {
			return fmt.Errorf("phase %s, container statuses %v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		if w == nil || w.Reason != "CreateContainerConfigError" || !strings.Contains(w.Message, `Secret "arrives-later" not found`) {
			return fmt.Errorf("waiting %+v", w)
		}
		return nil
	})
	nodeKubectl(t, cp, "create", "secret", "generic", "arrives-later", "--from-literal=token=x")
	eventually(t, 90*time.Second, "pod late Running once its Secret exists", func() error {
		p, err := nodeGetPod(t, cp, "default", "late")
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s (%s)", p.Status.Phase, p.Status.Message)
		}
		return nil
	})
	nodeKubectl(t, cp, "delete", "pod", "late", "--wait=true", "--timeout=60s")

	nodeKubectl(t, cp, "delete", "pod", "hybrid", "--wait=true", "--timeout=60s")
	// Under its own node credentials vz-node asks the API server nothing it
	// may not: no informer lists Secrets or ConfigMaps cluster-wide.
	if log, err := os.ReadFile(vz.LogPath); err != nil || bytes.Contains(log, []byte("forbidden")) {
		t.Fatalf("vz-node's log (%v) shows requests the node was refused:\n%s", err, forbiddenLines(log))
	}
	eventually(t, 30*time.Second, "the pod's containers removed", func() error {
		left, err := d.List(ctx, map[string]string{sidecar.LabelPodUID: string(pod.UID)})
		if err != nil || len(left) > 0 {
			return fmt.Errorf("containers left: %+v (err %v)", left, err)
		}
		return nil
	})
}

// forbiddenLines are the lines of log that mention a refused request, at
// most 5.
func forbiddenLines(log []byte) string {
	var out []string
	for l := range strings.Lines(string(log)) {
		if strings.Contains(l, "forbidden") && len(out) < 5 {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// httpGet returns the body url answers with 200 OK.
func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return string(b), err
}

// readLine returns the first line a TCP server at addr sends.
func readLine(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return bufio.NewReader(conn).ReadString('\n')
}
