package fleet

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/inventory"
)

// factsOutput is what factsScript prints on a Mac, marker "M".
const factsOutput = `
M sysctl
kern.hostname: mini-01
hw.machine: arm64
kern.osproductversion: 14.6.1
kern.osversion: 23G93
kern.hv_support: 1
kern.hv_vmm_present: 0

M df
Filesystem    1024-blocks      Used Available Capacity  Mounted on
/dev/disk3s5    482797652 207368584   1048576    45%    /System/Volumes/Data

M launchctl
system/dev.vzfleet.vz-node = {
	active count = 1
	path = /Library/LaunchDaemons/dev.vzfleet.vz-node.plist
	state = running
	pid = 4242
	endpoints = {
		"x" = {
			state = idle
			pid = 1
		}
	}
}

M facts
launchd_rc 0
codesign yes

M stat
67559586 1764000000 1234 /usr/local/bin/vz-node
2048 1764000001 99 /Library/Application Support/vzfleet/kubeconfig

M files
present 0
`

func TestParseFacts(t *testing.T) {
	f, files, err := parseFacts([]byte(factsOutput+"5 x\nhello"), "M")
	if err != nil {
		t.Fatal(err)
	}
	if f.Hostname != "mini-01" || f.MacOSVersion != "14.6.1" || f.MacOSBuild != "23G93" || f.Arch != "arm64" ||
		f.HVSupport != "1" || f.InVM != "0" || f.FreeDiskBytes != 1<<30 || !f.Codesign || f.Plutil {
		t.Errorf("facts = %+v", f)
	}
	if want := "2048 1764000001 99"; f.Stats["/Library/Application Support/vzfleet/kubeconfig"] != want {
		t.Errorf("stats = %q (paths with spaces must survive)", f.Stats)
	}
	if !f.Job.Loaded || !f.Job.Running() || f.Job.PID != 4242 {
		t.Errorf("job = %+v (only the service's own state and pid count)", f.Job)
	}
	if string(files) != "present 0\n5 x\nhello" {
		t.Errorf("files section = %q", files)
	}

	// A bare host: no job, no df, and GNU stat failed half-way (a file
	// went away) before BSD stat was tried, as stat -f on Linux prints.
	bare := "\nM sysctl\nhw.machine: arm64\n\nM df\n\nM launchctl\n\nM facts\nlaunchd_rc 113\n" +
		"\nM stat\n12 34 56 /a\n\nM stat\n  File: \"/a\"\n    ID: 0 Namelen: 255 Type: ext2/ext3\n\nM files\n"
	f, _, err = parseFacts([]byte(bare), "M")
	if err != nil || f.Job.Loaded || f.FreeDiskBytes != -1 || f.Arch != "arm64" || len(f.Stats) != 1 || f.Stats["/a"] != "12 34 56" {
		t.Errorf("bare host: %+v, %v", f, err)
	}
	if _, _, err := parseFacts([]byte("\nM sysctl\nhw.machine: arm64\n"), "M"); err == nil {
		t.Error("output cut before the files section was accepted")
	}
}

// The files' bytes are cut by the sizes stat printed in the same run; a
// file that changed between the stat and the cat fails the read.
func TestParseReadFiles(t *testing.T) {
	files := []string{"/a", "/gone", "/c d"}
	stats := map[string]string{"/a": "5 1 2", "/c d": "0 1 3"}
	got, err := parseReadFiles(files, []byte("present 0 2\nhello"), stats)
	if err != nil || string(got["/a"]) != "hello" || got["/c d"] == nil || len(got["/c d"]) != 0 || len(got) != 2 {
		t.Errorf("read %q, %v", got, err)
	}
	for name, c := range map[string]struct {
		out   string
		stats map[string]string
	}{
		"shorter than stat said": {"present 0 2\nhell", stats},
		"longer than stat said":  {"present 0 2\nhello!", stats},
		"no stat for a file":     {"present 0 2\nhello", map[string]string{"/a": "5 1 2"}},
		"index out of range":     {"present 3\n", stats},
		"no present line":        {"hello", stats},
	} {
		if got, err := parseReadFiles(files, []byte(c.out), c.stats); err == nil {
			t.Errorf("%s: accepted, read %q", name, got)
		}
	}
}

// Not a Mac, or one too old for the sysctl names: uname and sw_vers.
func TestParseLegacyFacts(t *testing.T) {
	f := newFacts()
	f.parseLegacy("mini-09 arm64\nProductName:\tmacOS\nProductVersion:\t11.7.10\nBuildVersion:\t20G1427\n")
	if f.Hostname != "mini-09" || f.Arch != "arm64" || f.MacOSVersion != "11.7.10" || f.MacOSBuild != "20G1427" {
		t.Errorf("facts = %+v", f)
	}
	f = newFacts()
	f.parseLegacy("ci-linux x86_64\n")
	if f.Arch != "x86_64" || f.MacOSVersion != "" {
		t.Errorf("facts = %+v", f)
	}
}

func FuzzParseFacts(f *testing.F) {
	f.Add([]byte(factsOutput))
	f.Add([]byte("\nM stat\n1 2 3\n\nM files\n"))
	f.Add([]byte("\nM stat\n3 1 1 /a\n\nM files\npresent 0\nabc"))
	f.Add([]byte("\nM df\nFilesystem\nx 1 2 99999999999999999999 4 5\n\nM files\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		facts, files, err := parseFacts(out, "M")
		if err != nil {
			return
		}
		if facts.FreeDiskBytes < -1 {
			t.Errorf("free disk %d", facts.FreeDiskBytes)
		}
		if !bytes.HasSuffix(out, files) {
			t.Errorf("files section %q is not the output's end", files)
		}
		for p, st := range facts.Stats {
			if len(strings.Fields(st)) != 3 || p == "" {
				t.Errorf("stat %q: %q", p, st)
			}
		}
		read, err := parseReadFiles([]string{"/a", "/b"}, files, facts.Stats)
		if err != nil {
			return
		}
		for p, b := range read {
			if size, _, _ := strings.Cut(facts.Stats[p], " "); size != strconv.Itoa(len(b)) {
				t.Errorf("%s: read %d bytes, stat said %s", p, len(b), size)
			}
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
