package fleet

import (
	"fmt"
	"strconv"
	"strings"
)

// Check is one preflight check's outcome.
type Check struct {
	Name   string
	OK     bool
	Detail string // what was found
	// Fix explains a failure and what to do about it.
	Fix string
	// Warning checks do not block an apply.
	Warning bool
}

// Requirements are what a host must offer.
type Requirements struct {
	// MinMacOS is the oldest macOS release vz-node supports ("13.0").
	MinMacOS string
	// MinFreeDisk is the free space the image cache volume needs.
	MinFreeDisk int64
}

// DefaultRequirements: macOS 13 (Ventura: Virtualization.framework's macOS
// guests with the features vz-node uses) and room for one VM image.
var DefaultRequirements = Requirements{MinMacOS: "13.0", MinFreeDisk: 20 << 30}

// preflight checks the facts against the requirements.
func preflight(f Facts, req Requirements) []Check {
	var checks []Check
	add := func(name string, ok bool, detail, fix string) {
		c := Check{Name: name, OK: ok, Detail: detail}
		if !ok {
			c.Fix = fix
		}
		checks = append(checks, c)
	}
	add("arch", f.Arch == "arm64", "uname -m: "+orUnknown(f.Arch),
		"vz-node runs macOS VMs with Virtualization.framework, which needs Apple silicon (arm64); an Intel Mac cannot host them")

	ok := f.MacOSVersion != "" && versionAtLeast(f.MacOSVersion, req.MinMacOS)
	add("macos", ok, "sw_vers: macOS "+orUnknown(f.MacOSVersion),
		fmt.Sprintf("macOS %s or newer is needed (for Virtualization.framework's macOS guest support); update the host with Software Update", req.MinMacOS))

	add("disk", f.FreeDiskBytes >= req.MinFreeDisk, "free: "+humanBytes(f.FreeDiskBytes),
		fmt.Sprintf("the VM image cache needs %s free; remove old images (fleetctl prepull --prune) or other files", humanBytes(req.MinFreeDisk)))

	add("codesign", f.Codesign, map[bool]string{true: "codesign found", false: "codesign not found"}[f.Codesign],
		"vz-node must be signed with the com.apple.security.virtualization entitlement; install the Xcode command line tools (xcode-select --install) so codesign is available")

	switch f.HVSupport {
	case "1":
		add("hypervisor", true, "kern.hv_support: 1", "")
	case "":
		checks = append(checks, Check{Name: "hypervisor", OK: true, Warning: true, Detail: "kern.hv_support: unknown"})
	default:
		add("hypervisor", false, "kern.hv_support: "+f.HVSupport,
			"this Mac does not offer the hypervisor; if it is itself a virtual machine, nested virtualization needs an M3 or newer host and macOS 15; otherwise check that no MDM profile disables virtualization")
	}
	if f.InVM == "1" {
		checks = append(checks, Check{Name: "nested", OK: true, Warning: true, Detail: "kern.hv_vmm_present: 1 (this Mac is a VM)",
			Fix: "macOS guests inside a macOS VM need an M3 or newer host with macOS 15; expect VM starts to fail otherwise"})
	}
	return checks
}

// failedChecks returns the blocking failures.
func failedChecks(checks []Check) []Check {
	var out []Check
	for _, c := range checks {
		if !c.OK && !c.Warning {
			out = append(out, c)
		}
	}
	return out
}

// versionAtLeast compares dotted numeric versions ("14.6.1" >= "13.0").
func versionAtLeast(have, want string) bool {
	h := strings.Split(have, ".")
	w := strings.Split(want, ".")
	for i := 0; i < max(len(h), len(w)); i++ {
		hv, wv := part(h, i), part(w, i)
		if hv < 0 {
			return false
		}
		if hv != wv {
			return hv > wv
		}
	}
	return true
}

func part(p []string, i int) int {
	if i >= len(p) {
		return 0
	}
	n, err := strconv.Atoi(p[i])
	if err != nil {
		return -1
	}
	return n
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func humanBytes(n int64) string {
	if n < 0 {
		return "unknown"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
