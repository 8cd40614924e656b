package node

import (
	"fmt"
	"regexp"
	"runtime"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vzfleet/vzfleet/internal/version"
)

// Node labels and taint.
const (
	LabelCPUModel     = "vzfleet.dev/cpu-model"
	LabelMacOSVersion = "vzfleet.dev/macos-version"
	LabelDriver       = "vzfleet.dev/vm-driver"
	TaintKey          = "virtual-kubelet.io/provider"
	TaintValue        = "vz"
)

// nodeInputs is what the node object is built from.
type nodeInputs struct {
	Name         string
	InternalIP   string
	Hostname     string
	KubeletPort  int32
	Facts        hostFacts
	DriverName   string
	MaxVMs       int
	Allocatable  allocatable
	DisableTaint bool
}

// buildNode returns the node object vz-node registers.
func buildNode(in nodeInputs) *corev1.Node {
	labels := map[string]string{
		// NodeRestriction lets a node set only its own kubernetes.io
		// labels from a fixed list (so no kubernetes.io/role).
		"type":                   "virtual-kubelet",
		"kubernetes.io/hostname": in.Name,
		corev1.LabelOSStable:     "darwin",
		corev1.LabelArchStable:   runtime.GOARCH,
		LabelDriver:              in.DriverName,
	}
	if v := labelValue(in.Facts.CPUModel); v != "" {
		labels[LabelCPUModel] = v
	}
	if v := labelValue(in.Facts.MacOSVersion); v != "" {
		labels[LabelMacOSVersion] = v
	}
	n := &corev1.Node{}
	n.Name = in.Name
	n.Labels = labels
	if !in.DisableTaint {
		n.Spec.Taints = []corev1.Taint{{Key: TaintKey, Value: TaintValue, Effect: corev1.TaintEffectNoSchedule}}
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(in.Facts.CPUs), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(int64(in.Facts.MemoryBytes), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(int64(in.MaxVMs), resource.DecimalSI),
	}
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(in.Allocatable.CPUs), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(int64(in.Allocatable.MemoryBytes), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(int64(in.MaxVMs), resource.DecimalSI),
	}
	n.Status = corev1.NodeStatus{
		Phase:       corev1.NodePending,
		Capacity:    capacity,
		Allocatable: alloc,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: in.InternalIP},
			{Type: corev1.NodeHostName, Address: in.Hostname},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: in.KubeletPort}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               in.Facts.MachineID,
			SystemUUID:              in.Facts.MachineID,
			BootID:                  "",
			KernelVersion:           in.Facts.KernelVersion,
			OSImage:                 in.Facts.OSImage,
			ContainerRuntimeVersion: "vz://" + version.Version,
			KubeletVersion:          kubeletVersion(),
			OperatingSystem:         "darwin",
			Architecture:            runtime.GOARCH,
		},
	}
	return n
}

// kubeletVersion is what the node reports as its kubelet: the vz-node
// version with the Kubernetes API it speaks.
func kubeletVersion() string {
	v := version.Version
	if !strings.HasPrefix(v, "v") {
		v = "v0.0.0-" + v
	}
	return fmt.Sprintf("%s-vz-node", v)
}

var labelUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// labelValue makes s a valid label value (63 chars, alphanumeric ends).
func labelValue(s string) string {
	v := labelUnsafe.ReplaceAllString(strings.TrimSpace(s), "-")
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-._")
}
