package sidecar

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vzfleet/vzfleet/node/podenv"
)

// Labels on every sidecar container. The node and pod UID labels find a
// pod's containers again after vz-node restarts; the io.kubernetes ones are
// the names `docker ps` users know from the kubelet's dockershim.
const (
	LabelNode      = "dev.vzfleet.node"
	LabelPodUID    = "dev.vzfleet.pod-uid"
	LabelContainer = "dev.vzfleet.container"
	// LabelSandbox marks a pod's sandbox (see Sandbox), which has no
	// LabelContainer.
	LabelSandbox = "dev.vzfleet.sandbox"

	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
)

// Name is the Docker name of a pod's sidecar: unique per pod UID, and
// readable in `docker ps` as the dockershim's names were.
func Name(pod *corev1.Pod, container string) string {
	return fmt.Sprintf("k8s_%s_%s_%s_%s", container, pod.Name, pod.Namespace, pod.UID)
}

// Validate reports what of a sidecar container vz-node cannot honour, once
// podenv has resolved its env. Each message names the container and the
// field.
func Validate(c corev1.Container) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.Image == "" {
		bad("image is empty; name a Docker image")
	}
	if len(c.VolumeDevices) > 0 {
		bad("volumeDevices are not supported")
	}
	if l := c.Lifecycle; l != nil {
		for name, h := range map[string]*corev1.LifecycleHandler{"postStart": l.PostStart, "preStop": l.PreStop} {
			if h != nil && h.Exec == nil && h.Sleep == nil && h.HTTPGet == nil {
				bad("lifecycle.%s: only exec, httpGet and sleep hooks run in sidecars", name)
			}
		}
	}
	for _, e := range c.Env {
		f := e.ValueFrom
		switch {
		case f == nil:
		case f.FieldRef != nil && (f.FieldRef.FieldPath == "status.podIP" || f.FieldRef.FieldPath == "status.podIPs"):
			bad("env %s: fieldRef %q is not supported: the pod IP is the VM's, which it gets after the sidecars start", e.Name, f.FieldRef.FieldPath)
		case f.FieldRef != nil:
			bad("env %s: fieldRef %q is not supported (supported: %s, metadata.labels['KEY'], metadata.annotations['KEY'])", e.Name, f.FieldRef.FieldPath, strings.Join(podenv.Fields, ", "))
		case f.ResourceFieldRef != nil:
			bad("env %s: resourceFieldRef is not supported", e.Name)
		default:
			bad("env %s: valueFrom names no source vz-node supports", e.Name)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("container %q: %s", c.Name, strings.Join(errs, "; "))
}

// Spec is the Docker container for a pod's sidecar c, whose env podenv
// resolved, with its volume mounts as binds (host:container[:ro]).
func Spec(pod *corev1.Pod, c corev1.Container, node string, binds []string) ContainerSpec {
	var env []string
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	s := ContainerSpec{
		Name:       Name(pod, c.Name),
		Image:      c.Image,
		Entrypoint: c.Command,
		Cmd:        c.Args,
		Env:        env,
		WorkingDir: c.WorkingDir,
		TTY:        c.TTY,
		OpenStdin:  c.Stdin,
		Labels: map[string]string{
			LabelNode: node, LabelPodUID: string(pod.UID), LabelContainer: c.Name,
			labelPodName: pod.Name, labelPodNamespace: pod.Namespace, labelContainerName: c.Name,
		},
		Binds: binds,
	}
	switch {
	case c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways:
		// A native sidecar (an init container) restarts whatever the
		// pod's policy.
		s.RestartPolicy = "unless-stopped"
	case pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
		s.RestartPolicy = "no"
	case pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure:
		s.RestartPolicy = "on-failure"
	default:
		// Not "always": a sidecar vz-node stopped stays stopped when the
		// engine restarts.
		s.RestartPolicy = "unless-stopped"
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		s.MemoryBytes = q.Value()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		s.NanoCPUs = q.MilliValue() * 1e6
	}
	return s
}

// SandboxName is the Docker name of a pod's sandbox, as the dockershim
// named it.
func SandboxName(pod *corev1.Pod) string {
	return fmt.Sprintf("k8s_POD_%s_%s_%s", pod.Name, pod.Namespace, pod.UID)
}

// Sandbox is the Docker container of image (a pause image) that holds the
// network namespace all of the pod's Docker containers, cs, join, as the
// kubelet's pod sandbox does: they reach each other on localhost, and their
// ports are the sandbox's. A container that joins another's network cannot
// publish ports, so the sandbox publishes those of every container in cs.
func Sandbox(pod *corev1.Pod, node, image string, cs []corev1.Container) ContainerSpec {
	var ps []Port
	seen := map[Port]bool{}
	for _, c := range cs {
		for _, p := range ports(c) {
			if !seen[p] {
				seen[p] = true
				ps = append(ps, p)
			}
		}
	}
	return ContainerSpec{
		Name:  SandboxName(pod),
		Image: image,
		Labels: map[string]string{
			LabelNode: node, LabelPodUID: string(pod.UID), LabelSandbox: "true",
			labelPodName: pod.Name, labelPodNamespace: pod.Namespace, labelContainerName: "POD",
		},
		// Started again with the engine, before the containers that
		// join it.
		RestartPolicy: "unless-stopped",
		Ports:         ps,
	}
}

// ports is what a sidecar publishes (through its pod's sandbox, which
// drops repeats): every declared port on 127.0.0.1 at a port the engine
// picks, where vz-node's network probes and hooks reach it (with Docker
// Desktop, macOS cannot route to a container's own address), and also at
// its hostPort when it has one, as the kubelet does. Ports that probes or
// hooks name by number without declaring them are published on 127.0.0.1
// too.
func ports(c corev1.Container) []Port {
	var ps []Port
	for _, p := range c.Ports {
		proto := strings.ToLower(string(p.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		ps = append(ps, Port{ContainerPort: int(p.ContainerPort), Protocol: proto, HostIP: "127.0.0.1"})
		if p.HostPort != 0 {
			ps = append(ps, Port{ContainerPort: int(p.ContainerPort), Protocol: proto, HostIP: p.HostIP, HostPort: int(p.HostPort)})
		}
	}
	for _, port := range handlerPorts(c) {
		ps = append(ps, Port{ContainerPort: port, Protocol: "tcp", HostIP: "127.0.0.1"})
	}
	return ps
}

// handlerPorts are the ports that c's network probes and hooks name by
// number on the container itself (not on a host the handler names); named
// ports are declared ones.
func handlerPorts(c corev1.Container) []int {
	var ps []int
	add := func(http *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction) {
		var port intstr.IntOrString
		switch {
		case http != nil && http.Host == "":
			port = http.Port
		case tcp != nil && tcp.Host == "":
			port = tcp.Port
		default:
			return
		}
		if port.Type == intstr.Int {
			ps = append(ps, int(port.IntVal))
		}
	}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		if p != nil {
			add(p.HTTPGet, p.TCPSocket)
			if p.GRPC != nil {
				ps = append(ps, int(p.GRPC.Port))
			}
		}
	}
	if l := c.Lifecycle; l != nil {
		for _, h := range []*corev1.LifecycleHandler{l.PostStart, l.PreStop} {
			if h != nil {
				add(h.HTTPGet, h.TCPSocket)
			}
		}
	}
	return ps
}

// Waiting is the status of a sidecar that has no running container yet.
func Waiting(c corev1.Container, reason, message string) corev1.ContainerStatus {
	f := false
	return corev1.ContainerStatus{
		Name: c.Name, Image: c.Image, Started: &f,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
	}
}

// Status renders a sidecar's Docker container as its container status.
// prev is the status reported before; lastExit is the exit code of the
// container's last run when Docker reported it (its "die" event), so a
// container Docker restarted keeps its last termination.
func Status(c corev1.Container, ct Container, prev corev1.ContainerStatus, lastExit *int) corev1.ContainerStatus {
	st := corev1.ContainerStatus{
		Name:                 c.Name,
		Image:                c.Image,
		ImageID:              "docker://" + ct.Image,
		ContainerID:          "docker://" + ct.ID,
		RestartCount:         int32(ct.RestartCount),
		LastTerminationState: prev.LastTerminationState,
	}
	s := ct.State
	ended := func(code int) *corev1.ContainerStateTerminated {
		t := &corev1.ContainerStateTerminated{
			ExitCode: int32(code), Message: s.Error, ContainerID: st.ContainerID,
			StartedAt: metav1.NewTime(s.StartedAt.UTC().Truncate(time.Second)), FinishedAt: metav1.NewTime(s.FinishedAt.UTC().Truncate(time.Second)),
		}
		switch {
		case s.OOMKilled:
			t.Reason = "OOMKilled"
		case code == 0:
			t.Reason = "Completed"
		default:
			t.Reason = "Error"
		}
		return t
	}
	if ct.RestartCount > int(prev.RestartCount) {
		switch {
		case lastExit != nil:
			t := ended(*lastExit)
			t.StartedAt = metav1.Time{}
			if prev.State.Running != nil {
				t.StartedAt = prev.State.Running.StartedAt
			}
			st.LastTerminationState = corev1.ContainerState{Terminated: t}
		case prev.State.Terminated != nil:
			// Restarted after it was seen ended (vz-node restarts it after
			// a failed liveness probe).
			st.LastTerminationState = corev1.ContainerState{Terminated: prev.State.Terminated}
		}
	}
	started := false
	switch {
	case s.Running && !s.Restarting:
		started = true
		st.Ready = true
		st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(s.StartedAt.UTC().Truncate(time.Second))}
	case s.Restarting:
		st.LastTerminationState = corev1.ContainerState{Terminated: ended(s.ExitCode)}
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: fmt.Sprintf("Docker is restarting the container after it exited with code %d", s.ExitCode)}
	case s.Status == "created":
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	default:
		st.State.Terminated = ended(s.ExitCode)
	}
	st.Started = &started
	return st
}
