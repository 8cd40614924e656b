package sidecar

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	// Validate sees the env podenv resolved: plain values, and what it
	// left as written.
	ok := corev1.Container{Name: "side", Image: "busybox", Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "x"}}}
	if err := Validate(ok); err != nil {
		t.Fatalf("valid sidecar refused: %v", err)
	}
	network := ok
	network.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, HostPort: 80}}
	network.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}}
	network.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}
	network.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(8080)}}}
	network.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}}
	if err := Validate(network); err != nil {
		t.Fatalf("sidecar with network probes (gRPC too), hook and hostPort refused: %v", err)
	}
	cases := map[string]struct {
		mutate func(*corev1.Container)
		want   string
	}{
		"no image":      {func(c *corev1.Container) { c.Image = "" }, "image is empty"},
		"volume device": {func(c *corev1.Container) { c.VolumeDevices = []corev1.VolumeDevice{{Name: "v", DevicePath: "/dev/v"}} }, "volumeDevices"},
		"pod IP":        {func(c *corev1.Container) { c.Env[1].ValueFrom = fieldRef("status.podIP") }, "the pod IP is the VM's"},
		"tcp hook": {func(c *corev1.Container) {
			c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}}
		}, "lifecycle.preStop: only exec, httpGet and sleep hooks"},
		"resource env": {func(c *corev1.Container) {
			c.Env[0].ValueFrom = &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{}}
		}, "env A: resourceFieldRef"},
		"unknown field": {func(c *corev1.Container) { c.Env[1].ValueFrom = fieldRef("status.phase") }, `fieldRef "status.phase"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := ok
			c.Env = slices.Clone(ok.Env)
			tc.mutate(&c)
			err := Validate(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `container "side"`) {
				t.Fatalf("Validate: %v, want an error naming the container and %q", err, tc.want)
			}
		})
	}
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func TestSpec(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ci-1", Namespace: "builds", UID: "u-1"}}
	c := corev1.Container{
		Name: "cache", Image: "registry.local/cache:1", Command: []string{"/bin/cache"}, Args: []string{"--port", "80"},
		WorkingDir: "/srv", TTY: true, Stdin: true,
		Env:       []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{}}}},
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}},
	}
	for policy, want := range map[corev1.RestartPolicy]string{"": "unless-stopped", corev1.RestartPolicyAlways: "unless-stopped", corev1.RestartPolicyOnFailure: "on-failure", corev1.RestartPolicyNever: "no"} {
		pod.Spec.RestartPolicy = policy
		s := Spec(pod, c, "mac-01", []string{"/v/cache:/cache:ro"})
		if s.RestartPolicy != want {
			t.Errorf("restart policy %q: docker %q, want %q", policy, s.RestartPolicy, want)
		}
		if s.Name != "k8s_cache_ci-1_builds_u-1" || s.NanoCPUs != 1_500_000_000 || s.MemoryBytes != 256<<20 ||
			!reflect.DeepEqual(s.Entrypoint, c.Command) || !reflect.DeepEqual(s.Cmd, c.Args) || !s.TTY || !s.OpenStdin ||
			s.WorkingDir != "/srv" || !reflect.DeepEqual(s.Env, []string{"A=1"}) || !reflect.DeepEqual(s.Binds, []string{"/v/cache:/cache:ro"}) || s.Labels[LabelNode] != "mac-01" || s.Labels[LabelPodUID] != "u-1" {
			t.Fatalf("spec %+v", s)
		}
	}
	// Declared ports are published on loopback, where probes reach them,
	// and at their hostPort; a probe's undeclared port on loopback; a
	// probe of another host publishes nothing.
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 80, HostPort: 8080, HostIP: "10.0.0.5"}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9090)}}}
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Host: "10.0.0.9", Port: intstr.FromInt32(7070)}}}
	want := []Port{
		{ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"},
		{ContainerPort: 80, Protocol: "tcp", HostIP: "10.0.0.5", HostPort: 8080},
		{ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
		{ContainerPort: 9090, Protocol: "tcp", HostIP: "127.0.0.1"},
	}
	// The sandbox publishes them for all the pod's containers, each once,
	// a gRPC probe's port too.
	other := corev1.Container{Name: "other", Ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 9000}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 50051}}}}
	sb := Sandbox(pod, "mac-01", "pause:3.10", []corev1.Container{c, other})
	if got := sb.Ports; !reflect.DeepEqual(got, append(want, Port{ContainerPort: 9000, Protocol: "tcp", HostIP: "127.0.0.1"}, Port{ContainerPort: 50051, Protocol: "tcp", HostIP: "127.0.0.1"})) {
		t.Errorf("sandbox ports %+v\nwant %+v, 9000 and 50051", got, want)
	}
	if sb.Name != "k8s_POD_ci-1_builds_u-1" || sb.Image != "pause:3.10" || sb.Labels[LabelSandbox] != "true" || sb.Labels[LabelContainer] != "" || sb.Labels[LabelPodUID] != "u-1" {
		t.Errorf("sandbox %+v", sb)
	}
	if got := Spec(pod, c, "mac-01", nil).Ports; got != nil {
		t.Errorf("a container publishes %+v itself; its sandbox publishes its ports", got)
	}
	// A native sidecar (an init container with restartPolicy Always)
	// restarts whatever the pod's policy.
	always := corev1.ContainerRestartPolicyAlways
	c.RestartPolicy = &always
	if s := Spec(pod, c, "mac-01", nil); s.RestartPolicy != "unless-stopped" {
		t.Errorf("native sidecar of a Never pod: docker %q, want unless-stopped", s.RestartPolicy)
	}
}

// frame is one frame of Docker's multiplexed stream.
func frame(stream byte, payload string) []byte {
	h := make([]byte, 8, 8+len(payload))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	return append(h, payload...)
}

func TestDemux(t *testing.T) {
	t.Parallel()
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name            string
		in              []byte
		stdout, stderr  string
		wantErrContains string
	}{
		{"empty", nil, "", "", ""},
		{"interleaved", join(frame(1, "a\n"), frame(2, "b\n"), frame(1, "c\n"), frame(1, "")), "a\nc\n", "b\n", ""},
		{"stdin echo counts as output", frame(0, "x"), "x", "", ""},
		{"engine error", join(frame(1, "a"), frame(3, "exec failed\n")), "a", "", "the engine reports: exec failed"},
		{"truncated header", frame(1, "abc")[:5], "", "", "truncated frame header"},
		{"truncated payload", frame(2, "abcdef")[:10], "", "ab", "cut short"},
		{"tty stream", []byte("hello world\n"), "", "", "names stream 104"},
		{"bad padding", []byte{1, 0, 1, 0, 0, 0, 0, 1, 'x'}, "", "", "malformed frame header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Demux(bytes.NewReader(tc.in), &out, &errOut)
			if tc.wantErrContains == "" && err != nil || tc.wantErrContains != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErrContains)) {
				t.Fatalf("error %v, want %q", err, tc.wantErrContains)
			}
			if out.String() != tc.stdout || errOut.String() != tc.stderr {
				t.Fatalf("stdout %q stderr %q, want %q %q", out.String(), errOut.String(), tc.stdout, tc.stderr)
			}
		})
	}
}

// The stream comes from the engine; whatever it holds, Demux never panics,
// never writes more than it read, and consumes valid framing exactly.
func FuzzDemux(f *testing.F) {
	f.Add(frame(1, "hello"))
	f.Add(append(frame(2, "e"), frame(3, "boom")...))
	f.Add([]byte{1, 0, 0, 0, 255, 255, 255, 255})
	f.Add([]byte("plain tty output"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out, errOut bytes.Buffer
		err := Demux(bytes.NewReader(in), &out, &errOut)
		if out.Len()+errOut.Len() > len(in) {
			t.Fatalf("wrote %d bytes from %d", out.Len()+errOut.Len(), len(in))
		}
		if err != nil {
			return
		}
		// Accepted input is whole frames, and every payload byte came out.
		frames := 0
		for rest := in; len(rest) > 0; frames++ {
			if len(rest) < 8 {
				t.Fatalf("accepted a stream ending in a %d-byte header", len(rest))
			}
			n := int(binary.BigEndian.Uint32(rest[4:8]))
			if rest[0] > 2 || len(rest) < 8+n {
				t.Fatalf("accepted a bad frame % x", rest[:8])
			}
			rest = rest[8+n:]
		}
		if out.Len()+errOut.Len() != len(in)-8*frames {
			t.Fatalf("wrote %d payload bytes of %d", out.Len()+errOut.Len(), len(in)-8*frames)
		}
	})
}

// A container seen ended and then running again with a higher restart count
// (vz-node restarted it after a failed liveness probe) keeps the ended run
// as its last state.
func TestStatusKeepsTheEndedRun(t *testing.T) {
	t.Parallel()
	c := corev1.Container{Name: "svc", Image: "busybox"}
	ended := &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", ContainerID: "docker://abc"}
	prev := corev1.ContainerStatus{Name: "svc", State: corev1.ContainerState{Terminated: ended}}
	ct := Container{ID: "abc", RestartCount: 1, State: State{Status: "running", Running: true, StartedAt: time.Now()}}
	st := Status(c, ct, prev, nil)
	if st.RestartCount != 1 || st.State.Running == nil || st.LastTerminationState.Terminated != ended {
		t.Fatalf("status %+v, want running, restarted once, the ended run as its last state", st)
	}
	if again := Status(c, ct, st, nil); again.LastTerminationState.Terminated != ended {
		t.Fatalf("the last state was lost on the next event: %+v", again)
	}
}
