package node

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/node/vm"
)

// Defaults for a VM container that asks for nothing and whose image has no
// configuration.
const (
	defaultVMCPUs   = 2
	defaultVMMemory = 4 << 30
)

// Reasons an invalid pod fails with (pod status reason and Event reason).
const (
	ReasonNoVMImage          = "NoVMImage"
	ReasonInvalidInit        = "InvalidInitContainer"
	ReasonInvalidSidecar     = "InvalidSidecar"
	ReasonDockerUnavailable  = "DockerUnavailable"
	ReasonRequestsExceedHost = "RequestsExceedHost"
	ReasonInvalidResources   = "InvalidResources"
)

// invalidPodError is a pod that can never run here; it fails with Reason.
type invalidPodError struct {
	Reason  string
	Message string
}

func (e *invalidPodError) Error() string { return e.Reason + ": " + e.Message }

func invalid(reason, format string, args ...any) error {
	return &invalidPodError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// vmRequest is what a pod asks of its VM container (container[0]).
type vmRequest struct {
	Container   string
	Image       string
	PullPolicy  corev1.PullPolicy
	CPUs        uint
	MemoryBytes uint64
	// cpuSet/memSet: the pod asked explicitly (else the image's config or
	// the defaults apply).
	cpuSet, memSet bool
}

// allocatable is what the node offers to pods: the host minus the reserve.
type allocatable struct {
	CPUs        uint
	MemoryBytes uint64
}

// parseVMRequest reads the VM container of pod and checks it against what
// the host can give. Errors are *invalidPodError.
func parseVMRequest(pod *corev1.Pod, host vm.HostInfo, alloc allocatable) (vmRequest, error) {
	cs := pod.Spec.Containers
	if len(cs) == 0 {
		return vmRequest{}, invalid(ReasonNoVMImage, "the pod has no containers; container[0] must name a VM image")
	}
	c := cs[0]
	if c.Image == "" {
		return vmRequest{}, invalid(ReasonNoVMImage, "container %q (the VM) has no image; set it to an OCI VM image reference", c.Name)
	}
	req := vmRequest{Container: c.Name, Image: c.Image, PullPolicy: c.ImagePullPolicy, CPUs: defaultVMCPUs, MemoryBytes: defaultVMMemory}

	if q, ok := pick(c.Resources, corev1.ResourceCPU); ok {
		if q.Sign() <= 0 {
			return vmRequest{}, invalid(ReasonInvalidResources, "container %q asks for %s CPU; want more than 0", c.Name, q.String())
		}
		// A VM gets whole cores: 1500m becomes 2.
		req.CPUs = uint((q.MilliValue() + 999) / 1000)
		req.cpuSet = true
	}
	if q, ok := pick(c.Resources, corev1.ResourceMemory); ok {
		if q.Sign() <= 0 {
			return vmRequest{}, invalid(ReasonInvalidResources, "container %q asks for %s memory; want more than 0", c.Name, q.String())
		}
		req.MemoryBytes = uint64(q.Value())
		req.memSet = true
	}
	return req, checkFits(req, host, alloc)
}

// checkSidecars validates the pod's containers after the VM, which run as
// Docker sidecars. Errors are *invalidPodError.
func checkSidecars(pod *corev1.Pod, docker bool) error {
	cs := afterVM(pod)
	if len(cs) == 0 {
		return nil
	}
	if !docker {
		names := make([]string, len(cs))
		for i, c := range cs {
			names[i] = c.Name
		}
		return invalid(ReasonDockerUnavailable, "containers %v after the VM run as Docker sidecars, and this node has no Docker engine configured (set DOCKER_HOST or dockerHost in vz-node's config); or run the VM alone", names)
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, sidecar.Validate(c))
	}
	if err := errors.Join(errs...); err != nil {
		return invalid(ReasonInvalidSidecar, "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

// checkInitContainers validates the pod's init containers, which run in
// Docker, one after the other, before the VM and the sidecars start: to
// completion, or for a native sidecar until it has started. Errors are
// *invalidPodError.
func checkInitContainers(pod *corev1.Pod, docker bool) error {
	cs := pod.Spec.InitContainers
	if len(cs) == 0 {
		return nil
	}
	if !docker {
		return invalid(ReasonDockerUnavailable, "init containers run in Docker, and this node has no Docker engine configured (set DOCKER_HOST or dockerHost in vz-node's config); or run setup steps in a postStart hook of the VM container")
	}
	var errs []error
	for _, c := range cs {
		switch {
		case isNativeSidecar(c):
			errs = append(errs, sidecar.Validate(c))
		case c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil || c.Lifecycle != nil:
			errs = append(errs, fmt.Errorf("container %q: probes and lifecycle hooks do not apply to an init container, which runs to completion", c.Name))
		default:
			errs = append(errs, sidecar.Validate(c))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return invalid(ReasonInvalidInit, "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

// withImageDefaults fills what the pod left open from the image's config.
func (r vmRequest) withImageDefaults(cfg ImageConfig, host vm.HostInfo, alloc allocatable) (vmRequest, error) {
	if !r.cpuSet && cfg.CPUCount > 0 {
		r.CPUs = cfg.CPUCount
	}
	if !r.memSet && cfg.MemorySize > 0 {
		r.MemoryBytes = cfg.MemorySize
	}
	return r, checkFits(r, host, alloc)
}

func checkFits(r vmRequest, host vm.HostInfo, alloc allocatable) error {
	if r.CPUs > alloc.CPUs || host.MaxCPUs > 0 && r.CPUs > host.MaxCPUs {
		return invalid(ReasonRequestsExceedHost, "the VM needs %d CPUs (requests are rounded up to whole cores); this node offers %d", r.CPUs, min(alloc.CPUs, nonzero(host.MaxCPUs, alloc.CPUs)))
	}
	if host.MinCPUs > 0 && r.CPUs < host.MinCPUs {
		return invalid(ReasonInvalidResources, "the VM needs at least %d CPUs on this host, the pod asks for %d", host.MinCPUs, r.CPUs)
	}
	if r.MemoryBytes > alloc.MemoryBytes || host.MaxMemoryBytes > 0 && r.MemoryBytes > host.MaxMemoryBytes {
		return invalid(ReasonRequestsExceedHost, "the VM needs %s memory; this node offers %s", bytesQ(r.MemoryBytes), bytesQ(min(alloc.MemoryBytes, nonzero(host.MaxMemoryBytes, alloc.MemoryBytes))))
	}
	if host.MinMemoryBytes > 0 && r.MemoryBytes < host.MinMemoryBytes {
		return invalid(ReasonInvalidResources, "the VM needs at least %s memory, the pod asks for %s", bytesQ(host.MinMemoryBytes), bytesQ(r.MemoryBytes))
	}
	return nil
}

// pick returns the request for name, else its limit.
func pick(r corev1.ResourceRequirements, name corev1.ResourceName) (resource.Quantity, bool) {
	if q, ok := r.Requests[name]; ok {
		return q, true
	}
	q, ok := r.Limits[name]
	return q, ok
}

func nonzero[T uint | uint64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func bytesQ(b uint64) string { return resource.NewQuantity(int64(b), resource.BinarySI).String() }
