package fleet

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/inventory"
)

func TestParseFacts(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	out := "hostname mini-01\nmacos 14.6.1\nbuild 23G93\narch arm64\nkern.hv_support: 1\nkern.hv_vmm_present: 0\nfree_kb 1048576\ncodesign yes\n" +
		`version {  "version": "v1.2.3",  "commit": "abc"}` + "\n" +
		`state {"files":{"/usr/local/bin/vz-node":{"source":"s","installed":"i"}}}` + "\n" +
		"sha " + sum + " /Library/Application Support/vzfleet/kubeconfig\nlaunchd_rc 0\nlaunchd_state running\nlaunchd_pid 4242\n"
	f, err := parseFacts(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Facts{Hostname: "mini-01", MacOSVersion: "14.6.1", MacOSBuild: "23G93", Arch: "arm64", HVSupport: "1", InVM: "0",
		FreeDiskBytes: 1 << 30, Codesign: true, InstalledVersion: "v1.2.3"}
	if f.Hostname != want.Hostname || f.MacOSVersion != want.MacOSVersion || f.Arch != want.Arch || f.FreeDiskBytes != want.FreeDiskBytes ||
		!f.Codesign || f.Plutil || f.InstalledVersion != want.InstalledVersion || f.HVSupport != "1" || f.MacOSBuild != "23G93" {
		t.Errorf("facts = %+v", f)
	}
	if f.Hashes["/Library/Application Support/vzfleet/kubeconfig"] != sum {
		t.Errorf("hashes = %v (paths with spaces must survive)", f.Hashes)
	}
	if f.State.Files["/usr/local/bin/vz-node"].Installed != "i" {
		t.Errorf("state = %+v", f.State)
	}
	if !f.Job.Running() || f.Job.PID != 4242 {
		t.Errorf("job = %+v", f.Job)
	}

	f, err = parseFacts("arch arm64\nfree_kb \nlaunchd_rc 113\n")
	if err != nil || f.Job.Loaded || f.FreeDiskBytes != -1 || f.InstalledVersion != "" {
		t.Errorf("bare host: %+v, %v", f, err)
	}
	if _, err := parseFacts("garbage\n"); err == nil {
		t.Error("output without an arch was accepted")
	}
}

func FuzzParseFacts(f *testing.F) {
	f.Add("arch arm64\nlaunchd_rc 0\nlaunchd_pid 1\n")
	f.Add("state {\"files\":null}\nversion {}\nsha x y\n")
	f.Add("free_kb 99999999999999999999\nstate [\n")
	f.Fuzz(func(t *testing.T, s string) {
		facts, err := parseFacts(s)
		if err == nil && facts.Arch == "" {
			t.Error("facts without an arch passed")
		}
	})
}

func TestPreflight(t *testing.T) {
	good := Facts{Arch: "arm64", MacOSVersion: "14.5", FreeDiskBytes: 100 << 30, Codesign: true, HVSupport: "1"}
	cases := []struct {
		name   string
		mod    func(*Facts)
		failed []string
	}{
		{name: "good"},
		{name: "intel", mod: func(f *Facts) { f.Arch = "x86_64" }, failed: []string{"arch"}},
		{name: "old macOS", mod: func(f *Facts) { f.MacOSVersion = "12.7.4" }, failed: []string{"macos"}},
		{name: "unknown macOS", mod: func(f *Facts) { f.MacOSVersion = "" }, failed: []string{"macos"}},
		{name: "full disk", mod: func(f *Facts) { f.FreeDiskBytes = 1 << 30 }, failed: []string{"disk"}},
		{name: "no codesign", mod: func(f *Facts) { f.Codesign = false }, failed: []string{"codesign"}},
		{name: "no hypervisor", mod: func(f *Facts) { f.HVSupport = "0" }, failed: []string{"hypervisor"}},
		{name: "nested VM warns only", mod: func(f *Facts) { f.InVM = "1" }},
		{name: "everything", mod: func(f *Facts) { *f = Facts{FreeDiskBytes: -1} }, failed: []string{"arch", "macos", "disk", "codesign"}},
	}
	for _, c := range cases {
		f := good
		if c.mod != nil {
			c.mod(&f)
		}
		var got []string
		for _, ch := range failedChecks(preflight(f, DefaultRequirements)) {
			got = append(got, ch.Name)
			if ch.Fix == "" {
				t.Errorf("%s: failed check %s explains nothing", c.name, ch.Name)
			}
		}
		if strings.Join(got, ",") != strings.Join(c.failed, ",") {
			t.Errorf("%s: failed checks %v, want %v", c.name, got, c.failed)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, c := range []struct {
		have, want string
		ok         bool
	}{{"14.6.1", "13.0", true}, {"13.0", "13.0", true}, {"13", "13.0", true}, {"12.7.6", "13.0", false}, {"13.0.1", "13.1", false}, {"15.0", "13.0", true}, {"x", "13.0", false}} {
		if got := versionAtLeast(c.have, c.want); got != c.ok {
			t.Errorf("versionAtLeast(%s, %s) = %v", c.have, c.want, got)
		}
	}
}

func TestNodeMeta(t *testing.T) {
	vkTaint := corev1.Taint{Key: "virtual-kubelet.io/provider", Value: "vz", Effect: corev1.TaintEffectNoSchedule}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        "mini-01",
		Labels:      map[string]string{"kubernetes.io/os": "darwin", "pool": "ci", "old": "x"},
		Annotations: map[string]string{AnnotationManagedLabels: "old,pool", AnnotationManagedTaints: "gone:NoSchedule"},
	}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{vkTaint, {Key: "gone", Effect: corev1.TaintEffectNoSchedule}}}}

	labels := map[string]string{"pool": "release", "rack": "a"}
	taints := []inventory.Taint{{Key: "macos", Value: "true", Effect: inventory.NoSchedule}}
	patch, changes := nodeMeta(node, labels, taints)
	want := []string{"label pool=release", "label rack=a", "label -old", "taint -gone:NoSchedule", "taint macos=true:NoSchedule"}
	if strings.Join(changes, "|") != strings.Join(want, "|") {
		t.Errorf("changes = %q, want %q", changes, want)
	}
	var body struct {
		Metadata struct {
			Labels      map[string]*string `json:"labels"`
			Annotations map[string]string  `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			Taints []corev1.Taint `json:"taints"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(patch, &body); err != nil {
		t.Fatal(err)
	}
	if v := body.Metadata.Labels["old"]; v != nil {
		t.Errorf("old label not removed: %s", patch)
	}
	if _, kept := body.Metadata.Labels["kubernetes.io/os"]; kept {
		t.Errorf("a label fleetctl does not manage is in the patch: %s", patch)
	}
	if len(body.Spec.Taints) != 2 || body.Spec.Taints[0] != vkTaint || body.Spec.Taints[1].Key != "macos" {
		t.Errorf("taints = %+v; vz-node's own taint must stay", body.Spec.Taints)
	}
	if body.Metadata.Annotations[AnnotationManagedLabels] != "pool,rack" || body.Metadata.Annotations[AnnotationManagedTaints] != "macos:NoSchedule" {
		t.Errorf("annotations = %v", body.Metadata.Annotations)
	}

	// Applied: nothing left to do.
	done := node.DeepCopy()
	done.Labels = map[string]string{"kubernetes.io/os": "darwin", "pool": "release", "rack": "a"}
	done.Annotations = body.Metadata.Annotations
	done.Spec.Taints = body.Spec.Taints
	if patch, changes := nodeMeta(done, labels, taints); patch != nil || len(changes) != 0 {
		t.Errorf("converged node: patch %s, changes %q", patch, changes)
	}
	// Not registered yet: changes to show, nothing to patch.
	if patch, changes := nodeMeta(nil, labels, nil); patch != nil || len(changes) != 2 {
		t.Errorf("missing node: patch %s, changes %q", patch, changes)
	}
}

func TestNodeReady(t *testing.T) {
	now := metav1.Now()
	before := now.Add(-5 * time.Second)
	n := &corev1.Node{Status: corev1.NodeStatus{
		NodeInfo:   corev1.NodeSystemInfo{ContainerRuntimeVersion: "vz://v2"},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now}},
	}}
	if ok, why := nodeReady(n, "v2", before); !ok {
		t.Errorf("ready node: %s", why)
	}
	if ok, _ := nodeReady(n, "v3", before); ok {
		t.Error("a node on the wrong version counted as Ready")
	}
	if ok, _ := nodeReady(n, "v2", now.Time); ok {
		t.Error("a heartbeat from before the restart counted")
	}
	n.Status.Conditions[0].Status = corev1.ConditionFalse
	if ok, _ := nodeReady(n, "", before); ok {
		t.Error("Ready=False counted")
	}
}
