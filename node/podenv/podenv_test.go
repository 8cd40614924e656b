package podenv

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// objects is an Objects over fixed Secrets, ConfigMaps and Services;
// names (and namespaces, for Services) in broken fail to read. It counts
// reads and records the namespaces whose Services were listed.
type objects struct {
	secrets    map[string]map[string][]byte
	configMaps map[string]map[string]string
	services   map[string][]corev1.Service
	broken     map[string]bool
	reads      int
	listed     []string
}

func (o *objects) Services(_ context.Context, ns string) ([]corev1.Service, error) {
	o.listed = append(o.listed, ns)
	if o.broken[ns] {
		return nil, errors.New("connection refused")
	}
	return o.services[ns], nil
}

func (o *objects) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	o.reads++
	if o.broken[name] {
		return nil, errors.New("connection refused")
	}
	d, ok := o.secrets[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
	}
	return &corev1.Secret{Data: d}, nil
}

func (o *objects) ConfigMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	o.reads++
	d, ok := o.configMaps[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
	}
	return &corev1.ConfigMap{Data: d}, nil
}

func testPod(envFrom []corev1.EnvFromSource, env ...corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ci-1", Namespace: "builds", UID: "u-1", Labels: map[string]string{"app": "xcode"}, Annotations: map[string]string{"note": "n"}},
		Spec: corev1.PodSpec{NodeName: "mac-01", ServiceAccountName: "builder", Containers: []corev1.Container{
			{Name: "macos"},
			{Name: "side", EnvFrom: envFrom, Env: env},
		}},
	}
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func secretKey(name, key string, optional bool) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &optional}}
}

func configMapKey(name, key string, optional bool) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &optional}}
}

type reports []string

func (r *reports) report(reason, msg string) { *r = append(*r, reason+": "+msg) }

func TestResolve(t *testing.T) {
	t.Parallel()
	get := &objects{
		secrets:    map[string]map[string][]byte{"creds": {"token": []byte("s3cret")}},
		configMaps: map[string]map[string]string{"settings": {"level": "debug", "mode": "fast", "bad-name": "x"}},
	}
	yes := true
	pod := testPod([]corev1.EnvFromSource{
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}, Prefix: "CFG_"},
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: &yes}},
	},
		corev1.EnvVar{Name: "POD", ValueFrom: fieldRef("metadata.name")},
		corev1.EnvVar{Name: "NS", ValueFrom: fieldRef("metadata.namespace")},
		corev1.EnvVar{Name: "UID", ValueFrom: fieldRef("metadata.uid")},
		corev1.EnvVar{Name: "NODE", ValueFrom: fieldRef("spec.nodeName")},
		corev1.EnvVar{Name: "SA", ValueFrom: fieldRef("spec.serviceAccountName")},
		corev1.EnvVar{Name: "HOST", ValueFrom: fieldRef("status.hostIP")},
		corev1.EnvVar{Name: "HOSTS", ValueFrom: fieldRef("status.hostIPs")},
		corev1.EnvVar{Name: "APP", ValueFrom: fieldRef("metadata.labels['app']")},
		corev1.EnvVar{Name: "NOTE", ValueFrom: fieldRef("metadata.annotations['note']")},
		corev1.EnvVar{Name: "TOKEN", ValueFrom: secretKey("creds", "token", false)},
		corev1.EnvVar{Name: "LEVEL", ValueFrom: configMapKey("settings", "level", false)},
		corev1.EnvVar{Name: "OPT", ValueFrom: secretKey("absent", "k", true)},
		corev1.EnvVar{Name: "OPTKEY", ValueFrom: configMapKey("settings", "nope", true)},
		corev1.EnvVar{Name: "URL", Value: "http://$(HOST):8080/$(POD)/$(LATER)/$$(POD)/$"},
		corev1.EnvVar{Name: "LATER", Value: "x"},
		corev1.EnvVar{Name: "CFG_mode", Value: "$(CFG_level)-override"},
		corev1.EnvVar{Name: "IP", ValueFrom: fieldRef("status.podIP")},
	)
	var got reports
	if err := Resolve(context.Background(), pod, get, "10.0.0.2", got.report); err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[1]
	var vars []string
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			vars = append(vars, e.Name+" (unresolved)")
			continue
		}
		vars = append(vars, e.Name+"="+e.Value)
	}
	want := []string{"CFG_bad-name=x", "CFG_level=debug", "CFG_mode=debug-override", "POD=ci-1", "NS=builds", "UID=u-1", "NODE=mac-01", "SA=builder", "HOST=10.0.0.2", "HOSTS=10.0.0.2",
		"APP=xcode", "NOTE=n", "TOKEN=s3cret", "LEVEL=debug", "URL=http://10.0.0.2:8080/ci-1/$(LATER)/$(POD)/$", "LATER=x", "IP (unresolved)"}
	if !reflect.DeepEqual(vars, want) || c.EnvFrom != nil {
		t.Fatalf("env\n got %q\nwant %q (envFrom %v)", vars, want, c.EnvFrom)
	}
	wantReports := []string{
		`OptionalSecretNotFound: skipping optional envFrom of container "side": Secret "absent" not found`,
		`OptionalSecretNotFound: skipping optional env OPT of container "side": Secret "absent" not found`,
		`OptionalConfigMapKeyNotFound: skipping optional env OPTKEY of container "side": ConfigMap "settings" has no key "nope"`,
	}
	if !reflect.DeepEqual([]string(got), wantReports) {
		t.Fatalf("reports\n got %q\nwant %q", got, wantReports)
	}
	if get.reads != 3 {
		t.Fatalf("%d reads of 3 objects, want each read once", get.reads)
	}

	// Init containers are resolved too, from the objects already read.
	pod.Spec.InitContainers = []corev1.Container{{Name: "setup", Env: []corev1.EnvVar{
		{Name: "TOKEN", ValueFrom: secretKey("creds", "token", false)},
		{Name: "DIR", Value: "/w/$(TOKEN)"},
	}}}
	if err := Resolve(context.Background(), pod, get, "10.0.0.2", got.report); err != nil {
		t.Fatal(err)
	}
	if vars := envList(pod.Spec.InitContainers[0]); !reflect.DeepEqual(vars, []string{"TOKEN=s3cret", "DIR=/w/s3cret"}) {
		t.Fatalf("init container env %q", vars)
	}
	pod.Spec.InitContainers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: secretKey("missing", "k", false)}}
	var missing *MissingError
	if err := Resolve(context.Background(), pod, get, "10.0.0.2", got.report); !errors.As(err, &missing) || !strings.Contains(err.Error(), `"setup"`) {
		t.Fatalf("init container with a missing Secret: %v, want a MissingError naming the container", err)
	}
}

func service(ns, name, ip string, ports ...corev1.ServicePort) corev1.Service {
	return corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func envList(c corev1.Container) []string {
	var vars []string
	for _, e := range c.Env {
		vars = append(vars, e.Name+"="+e.Value)
	}
	return vars
}

// TestServiceVariables: the kubelet's choice of Services (the API server's
// always, the pod namespace's with enableServiceLinks, which win) and its
// variable names, after the container's own variables, which win too.
func TestServiceVariables(t *testing.T) {
	t.Parallel()
	get := &objects{services: map[string][]corev1.Service{
		"default": {
			service("default", "kubernetes", "10.96.0.1", corev1.ServicePort{Name: "https", Port: 443}),
			service("default", "registry", "10.96.0.9", corev1.ServicePort{Port: 5000}),
		},
		"builds": {
			service("builds", "cache-api", "10.96.3.7",
				corev1.ServicePort{Name: "http", Port: 8080},
				corev1.ServicePort{Name: "stats-udp", Port: 9125, Protocol: corev1.ProtocolUDP}),
			service("builds", "headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 80}),
			service("builds", "external", ""),
		},
	}}
	pod := testPod(nil,
		corev1.EnvVar{Name: "API", Value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
		corev1.EnvVar{Name: "CACHE_API_SERVICE_HOST", Value: "mine"})
	if err := Resolve(context.Background(), pod, get, "", nil); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"API=https://10.96.0.1:443", "CACHE_API_SERVICE_HOST=mine",
		"CACHE_API_PORT=tcp://10.96.3.7:8080",
		"CACHE_API_PORT_8080_TCP=tcp://10.96.3.7:8080", "CACHE_API_PORT_8080_TCP_ADDR=10.96.3.7", "CACHE_API_PORT_8080_TCP_PORT=8080", "CACHE_API_PORT_8080_TCP_PROTO=tcp",
		"CACHE_API_PORT_9125_UDP=udp://10.96.3.7:9125", "CACHE_API_PORT_9125_UDP_ADDR=10.96.3.7", "CACHE_API_PORT_9125_UDP_PORT=9125", "CACHE_API_PORT_9125_UDP_PROTO=udp",
		"CACHE_API_SERVICE_PORT=8080", "CACHE_API_SERVICE_PORT_HTTP=8080", "CACHE_API_SERVICE_PORT_STATS_UDP=9125",
		"KUBERNETES_PORT=tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1", "KUBERNETES_PORT_443_TCP_PORT=443", "KUBERNETES_PORT_443_TCP_PROTO=tcp",
		"KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
	}
	if got := envList(pod.Spec.Containers[1]); !reflect.DeepEqual(got, want) {
		t.Fatalf("env\n got %q\nwant %q", got, want)
	}
	if got := envList(pod.Spec.Containers[0]); len(got) != len(want)-1 {
		t.Fatalf("the first container, which defines nothing, has %d variables, want the %d Services' ones: %q", len(got), len(want)-1, got)
	}
	if !reflect.DeepEqual(get.listed, []string{"default", "builds"}) {
		t.Fatalf("listed the Services of %q, want default's then the pod's namespace's, once each", get.listed)
	}

	// Without service links only the API server's; a Service of the pod's
	// namespace named kubernetes wins over it when links are on.
	off := false
	pod = testPod(nil)
	pod.Spec.EnableServiceLinks = &off
	get.services["builds"] = append(get.services["builds"], service("builds", "kubernetes", "10.96.3.1", corev1.ServicePort{Port: 6443}))
	if err := Resolve(context.Background(), pod, get, "", nil); err != nil {
		t.Fatal(err)
	}
	if got := envList(pod.Spec.Containers[1]); len(got) != 8 || got[5] != "KUBERNETES_SERVICE_HOST=10.96.0.1" {
		t.Fatalf("enableServiceLinks false: %q, want the 8 variables of default/kubernetes", got)
	}
	pod = testPod(nil)
	if err := Resolve(context.Background(), pod, get, "", nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(envList(pod.Spec.Containers[1]), " "); !strings.Contains(got, "KUBERNETES_SERVICE_HOST=10.96.3.1 ") || strings.Contains(got, "10.96.0.1") {
		t.Fatalf("the namespace's own kubernetes Service should win: %s", got)
	}

	// A pod of the default namespace lists it once.
	get.listed = nil
	pod = testPod(nil)
	pod.Namespace = "default"
	if err := Resolve(context.Background(), pod, get, "", nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(envList(pod.Spec.Containers[1]), " "); !reflect.DeepEqual(get.listed, []string{"default"}) || !strings.Contains(got, "REGISTRY_SERVICE_HOST=10.96.0.9") {
		t.Fatalf("default namespace: listed %q, env %s", get.listed, got)
	}

	// Services that cannot be listed stop the pod, as in the kubelet.
	get.broken = map[string]bool{"builds": true}
	err := Resolve(context.Background(), testPod(nil), get, "", nil)
	if err == nil || !strings.Contains(err.Error(), "listing the Services of namespace builds") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("unlistable Services: %v", err)
	}
}

func TestResolveMandatoryMissing(t *testing.T) {
	t.Parallel()
	get := &objects{
		secrets:    map[string]map[string][]byte{"creds": {"token": []byte("s3cret")}},
		configMaps: map[string]map[string]string{},
		broken:     map[string]bool{"flaky": true},
	}
	cases := []struct {
		name   string
		pod    *corev1.Pod
		reason string
		msg    string
	}{
		{"secret", testPod(nil, corev1.EnvVar{Name: "T", ValueFrom: secretKey("gone", "k", false)}), ReasonMandatorySecretNotFound, `env T of container "side": Secret "gone" not found`},
		{"secret key", testPod(nil, corev1.EnvVar{Name: "T", ValueFrom: secretKey("creds", "nope", false)}), ReasonMandatorySecretKeyNotFound, `Secret "creds" has no key "nope"`},
		{"configmap", testPod(nil, corev1.EnvVar{Name: "L", ValueFrom: configMapKey("settings", "level", false)}), ReasonMandatoryConfigMapNotFound, `ConfigMap "settings" not found`},
		{"unreadable", testPod(nil, corev1.EnvVar{Name: "T", ValueFrom: secretKey("flaky", "k", false)}), ReasonFailedToReadMandatorySecret, `failed to read Secret "flaky": connection refused`},
		{"envFrom", testPod([]corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}), ReasonMandatoryConfigMapNotFound, `envFrom of container "side": ConfigMap "settings" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got reports
			err := Resolve(context.Background(), tc.pod, get, "", got.report)
			var missing *MissingError
			if !errors.As(err, &missing) || missing.Reason != tc.reason || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want %s naming %q", err, tc.reason, tc.msg)
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], tc.reason+": ") {
				t.Fatalf("reports %q, want one %s", got, tc.reason)
			}
		})
	}
	var got reports
	if err := Resolve(context.Background(), testPod(nil, corev1.EnvVar{Name: "T", ValueFrom: secretKey("x", "k", false)}), nil, "", got.report); err == nil || !strings.Contains(err.Error(), "no API client") {
		t.Fatalf("without a Getter: %v", err)
	}
}
