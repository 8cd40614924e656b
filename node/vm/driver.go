// Package vm defines the portable VM model that vz-node drives: a Spec that
// says what to boot, a Driver that validates and creates machines, and a
// Machine with the lifecycle Apple's Virtualization.framework offers. The
// Apple driver (node/vm/vz) and the Linux simulator (node/vm/sim) implement
// it and register themselves by name.
package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"
)

// Errors a driver returns, wrapped with %w so callers classify with errors.Is.
var (
	// ErrLimitExceeded: the host already runs its maximum number of VMs
	// (Virtualization.framework allows 2 macOS guests per host). Retry later.
	ErrLimitExceeded = errors.New("virtual machine limit exceeded")
	// ErrInvalidSpec: the spec can never boot on this host (CPU, memory,
	// disk or network out of the supported range). Do not retry.
	ErrInvalidSpec = errors.New("invalid virtual machine configuration")
	// ErrInvalidState: the operation is not allowed in the machine's state.
	ErrInvalidState = errors.New("operation not allowed in the current state")
	// ErrDriverUnavailable: the driver cannot run on this platform or build.
	ErrDriverUnavailable = errors.New("vm driver unavailable")
)

// NetworkMode selects how the guest reaches the network.
type NetworkMode string

const (
	// NAT shares the host's connection; the guest gets an address from the
	// host's DHCP server (recorded in /var/db/dhcpd_leases on macOS).
	NAT NetworkMode = "nat"
	// Bridged attaches the guest to a host interface (Spec.Network.Interface).
	Bridged NetworkMode = "bridged"
)

// Network is the guest's single network device.
type Network struct {
	Mode      NetworkMode
	Interface string // host interface name; only for Bridged
	MAC       net.HardwareAddr
}

// Share is a host directory exposed to the guest over virtio-fs.
type Share struct {
	Tag      string
	HostPath string
	ReadOnly bool
}

// Spec is everything needed to boot one macOS guest.
type Spec struct {
	// ID names the machine; vz-node uses the pod UID so state survives restarts.
	ID          string
	CPUs        uint
	MemoryBytes uint64
	// DiskPath is the guest's (overlay) disk image; AuxPath its NVRAM /
	// auxiliary storage. Both belong to this machine alone.
	DiskPath string
	AuxPath  string
	// HardwareModel and MachineIdentifier are the opaque macOS platform
	// blobs (VZMacHardwareModel / VZMacMachineIdentifier data representation).
	HardwareModel     []byte
	MachineIdentifier []byte
	Network           Network
	Shares            []Share
	// ConsoleLogPath receives the guest's serial console output, if set.
	ConsoleLogPath string
}

// State is a machine's lifecycle state, mirroring VZVirtualMachineState.
type State int

// The states, in Virtualization.framework's order.
const (
	StateStopped State = iota
	StateRunning
	StatePaused
	StateError
	StateStarting
	StatePausing
	StateResuming
	StateStopping
)

var stateNames = [...]string{"Stopped", "Running", "Paused", "Error", "Starting", "Pausing", "Resuming", "Stopping"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// HostInfo describes what the host can give to guests.
type HostInfo struct {
	CPUs        uint
	MemoryBytes uint64
	// Per-guest bounds, as VZVirtualMachineConfiguration reports them.
	MinCPUs, MaxCPUs               uint
	MinMemoryBytes, MaxMemoryBytes uint64
	// MaxRunning is the number of guests that may run at once.
	MaxRunning int
}

// Driver validates specs and creates machines.
type Driver interface {
	// Name is the driver's registered name ("vz", "sim").
	Name() string
	Host() HostInfo
	// Validate reports, wrapping ErrInvalidSpec, why spec can never boot here.
	Validate(spec Spec) error
	// Create prepares a stopped machine for spec. It does not start it.
	Create(ctx context.Context, spec Spec) (Machine, error)
}

// Machine is one guest.
type Machine interface {
	ID() string
	// Start boots the guest and returns once it is Running. It wraps
	// ErrLimitExceeded when the host runs its maximum number of guests.
	Start(ctx context.Context) error
	// RequestStop asks the guest to shut down (like pressing the power
	// button); the guest decides when. The machine reaches Stopped later.
	RequestStop(ctx context.Context) error
	// Stop powers the guest off at once.
	Stop(ctx context.Context) error
	State() State
	// Changes delivers every state transition until the machine is released.
	// The channel is closed by Release.
	Changes() <-chan State
	// Release frees the machine's resources; it must be Stopped or Error.
	Release() error
}

// Factory builds a driver from its options.
type Factory func(Options) (Driver, error)

// Options configure a driver.
type Options struct {
	// StateDir is where the driver keeps per-machine runtime files.
	StateDir string
	// LeasesPath is the DHCP leases file guests' addresses are recorded in.
	LeasesPath string
	// BootDelay is how long a simulated guest takes to boot (sim only).
	BootDelay time.Duration
	// MaxRunning overrides the per-host running limit (tests); 0 keeps the
	// platform's own.
	MaxRunning int
	// GuestLogin is what simulated guests accept over SSH: the credentials
	// fleetctl installs into real guest images (sim only; a real guest's
	// accounts live in its disk image).
	GuestLogin GuestLogin
	// GuestSSHPort is the port simulated guests serve SSH on; 0 means 22
	// (sim only; real guests always use 22).
	GuestSSHPort int
}

// GuestLogin holds the credentials a guest's SSH server accepts.
type GuestLogin struct {
	User string
	// Password, if not empty, is accepted for User. Never log it.
	Password string
	// AuthorizedKeys holds public keys in authorized_keys format.
	AuthorizedKeys []byte
}

var (
	mu       sync.Mutex
	registry = map[string]Factory{}
)

// Register makes a driver available by name. Drivers call it from init.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("vm: driver registered twice: " + name)
	}
	registry[name] = f
}

// New builds the named driver.
func New(name string, opts Options) (Driver, error) {
	mu.Lock()
	f, ok := registry[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("vm driver %q: %w (compiled in: %v)", name, ErrDriverUnavailable, Drivers())
	}
	return f(opts)
}

// Drivers lists the registered driver names.
func Drivers() []string {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
