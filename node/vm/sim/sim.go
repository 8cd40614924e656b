// Package sim is a stand-in for Apple's Virtualization.framework that runs
// on Linux (and any Unix), registered as the "sim" VM driver. It keeps the
// framework's rules so vz-node meets them in tests: per-guest CPU/memory
// bounds checked against the real host, at most two running guests per host
// (counted across processes, since each VM runs under its own supervisor),
// the disk opened and locked at start, a boot delay, an IP address handed
// out through a macOS-format DHCP lease file, and a guest that answers SSH.
//
// A simulated guest is a directory (<StateDir>/<id>/guest) whose SSH server
// runs commands with /bin/sh -c inside it. Like macOS it has
// `shutdown -h now` (powers the VM off), `sudo`, `logger`, and
// `log show` / `log stream` (--style syslog|compact|default) over the
// guest's unified log, and shows virtio-fs shares under
// "Volumes/My Shared Files/<tag>". One command is the sim's own:
// `vzsim-panic` crashes the guest, leaving the machine in the Error state.
//
// Files under Options.StateDir:
//
//	.vm-slots/slot-N      flock'ed while a guest runs (the 2-VM limit)
//	<id>/guest/           the guest's filesystem (its home directory)
//	<id>/guest.log        the guest's log (log show / log stream)
//	<id>/ssh_host_ed25519_key  the guest's persistent host key (0600)
//	<id>/sim/             shims on the guest's PATH and power-off requests
//	dhcpd_leases          leases, unless Options.LeasesPath says otherwise
package sim

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vzfleet/vzfleet/node/vm"
)

// Per-guest bounds. Virtualization.framework takes the CPU bounds from the
// host (1 to the host's cores) and caps memory at what the host has; its
// absolute memory floor is tiny, but macOS guests do not boot below about
// 2 GiB, so that is the floor here. VZ also wants memory in whole MiB.
const (
	minCPUs        = 1
	minMemoryBytes = 2 << 30
	memoryQuantum  = 1 << 20
	// maxRunning is Virtualization.framework's limit of macOS guests per host.
	maxRunning = 2
	// defaultBootDelay is how long a guest takes to boot when Options
	// leaves BootDelay zero.
	defaultBootDelay = 2 * time.Second
	// requestStopDelay is how long the guest takes to shut down after
	// RequestStop (the power button).
	requestStopDelay = 500 * time.Millisecond
	// shutdownGrace is how long the guest takes to go down after
	// `shutdown -h now`.
	shutdownGrace = 200 * time.Millisecond
	// slotsDir holds the running-slot lock files.
	slotsDir = ".vm-slots"
)

// limitText is Virtualization.framework's message for
// VZErrorVirtualMachineLimitExceeded.
const limitText = "The number of virtual machines exceeds the limit. The maximum supported number of active virtual machines has been reached."

func init() {
	vm.Register("sim", func(o vm.Options) (vm.Driver, error) { return New(o) })
}

// Driver is the simulated Virtualization.framework.
type Driver struct {
	opts vm.Options
	host vm.HostInfo
}

// New builds a sim driver keeping its files in opts.StateDir.
func New(opts vm.Options) (*Driver, error) {
	if opts.StateDir == "" {
		return nil, fmt.Errorf("sim driver: no state directory configured")
	}
	if err := os.MkdirAll(filepath.Join(opts.StateDir, slotsDir), 0o755); err != nil {
		return nil, fmt.Errorf("sim driver: %w", err)
	}
	if opts.LeasesPath == "" {
		opts.LeasesPath = filepath.Join(opts.StateDir, "dhcpd_leases")
	}
	if opts.BootDelay == 0 {
		opts.BootDelay = defaultBootDelay
	}
	if opts.GuestSSHPort == 0 {
		opts.GuestSSHPort = 22
	}
	mem, err := hostMemory()
	if err != nil {
		return nil, fmt.Errorf("sim driver: host memory: %w", err)
	}
	cpus := uint(runtime.NumCPU())
	h := vm.HostInfo{
		CPUs: cpus, MemoryBytes: mem,
		MinCPUs: minCPUs, MaxCPUs: cpus,
		MinMemoryBytes: minMemoryBytes, MaxMemoryBytes: mem &^ (memoryQuantum - 1),
		MaxRunning: maxRunning,
	}
	if opts.MaxRunning > 0 {
		h.MaxRunning = opts.MaxRunning
	}
	return &Driver{opts: opts, host: h}, nil
}

// Name is "sim".
func (d *Driver) Name() string { return "sim" }

// Host describes the real host with Virtualization.framework's bounds.
func (d *Driver) Host() vm.HostInfo { return d.host }

// LeasesPath is the lease file guests' addresses are written to.
func (d *Driver) LeasesPath() string { return d.opts.LeasesPath }

// Validate reports why spec can never boot here, wrapping vm.ErrInvalidSpec.
func (d *Driver) Validate(spec vm.Spec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("vm %s: %w: %s", spec.ID, vm.ErrInvalidSpec, fmt.Sprintf(format, args...))
	}
	h := d.host
	if err := checkID(spec.ID); err != nil {
		return fmt.Errorf("%w: %w", vm.ErrInvalidSpec, err)
	}
	if spec.CPUs < h.MinCPUs || spec.CPUs > h.MaxCPUs {
		return bad("%d CPUs is outside this host's range %d-%d", spec.CPUs, h.MinCPUs, h.MaxCPUs)
	}
	if spec.MemoryBytes < h.MinMemoryBytes || spec.MemoryBytes > h.MaxMemoryBytes {
		return bad("memory %d MiB is outside this host's range %d-%d MiB", spec.MemoryBytes>>20, h.MinMemoryBytes>>20, h.MaxMemoryBytes>>20)
	}
	if spec.MemoryBytes%memoryQuantum != 0 {
		return bad("memory %d bytes is not a multiple of 1 MiB", spec.MemoryBytes)
	}
	if spec.DiskPath == "" {
		return bad("no disk image")
	}
	if err := checkImage(spec.DiskPath, true); err != nil {
		return bad("disk: %v", err)
	}
	if spec.AuxPath != "" {
		if err := checkImage(spec.AuxPath, false); err != nil {
			return bad("auxiliary storage: %v", err)
		}
	}
	switch spec.Network.Mode {
	case vm.NAT, "":
	case vm.Bridged:
		if spec.Network.Interface == "" {
			return bad("bridged network without an interface name")
		}
		if _, err := net.InterfaceByName(spec.Network.Interface); err != nil {
			return bad("bridged network: host interface %q: %v", spec.Network.Interface, err)
		}
	default:
		return bad("unknown network mode %q", spec.Network.Mode)
	}
	if mac := spec.Network.MAC; mac != nil && (len(mac) != 6 || mac[0]&1 != 0) {
		return bad("MAC address %s is not a unicast Ethernet address", mac)
	}
	tags := map[string]bool{}
	for _, s := range spec.Shares {
		if s.Tag == "" || strings.ContainsAny(s.Tag, "/\x00") || s.Tag == "." || s.Tag == ".." || tags[s.Tag] {
			return bad("share tag %q must be a unique, non-empty file name", s.Tag)
		}
		tags[s.Tag] = true
		if !filepath.IsAbs(s.HostPath) {
			return bad("share %q: host path %q is not absolute", s.Tag, s.HostPath)
		}
	}
	return nil
}

func checkID(id string) error {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return fmt.Errorf("vm id %q must be a non-empty name without '/' that does not start with '.'", id)
	}
	return nil
}

// checkImage wants a regular file, of non-zero size if nonEmpty.
func checkImage(path string, nonEmpty bool) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if nonEmpty && info.Size() == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	return nil
}

// Create prepares a stopped machine for spec: its state directory and
// persistent host key.
func (d *Driver) Create(ctx context.Context, spec vm.Spec) (vm.Machine, error) {
	if err := d.Validate(spec); err != nil {
		return nil, err
	}
	return newMachine(d, spec)
}
