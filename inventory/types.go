package inventory

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Inventory is a loaded, merged, defaulted and validated inventory: one
// complete Host per entry of the file's hosts list, in file order.
type Inventory struct {
	// File is the inventory's path as given to Load (or the name given to
	// Parse); error messages use it.
	File    string
	Hosts   []Host
	Rollout Rollout

	// pos maps field paths of the file (hosts[1].ssh.port) to positions.
	pos map[string]position
	// defaults is the converted defaults block, validated on its own so a
	// bad default is reported even when every host overrides it.
	defaults *Host
}

// Host is one Mac with every setting resolved: the defaults merged in, local
// paths absolute, defaults applied.
type Host struct {
	Name     string
	SSH      SSH
	Node     Node
	Cluster  Cluster
	GuestSSH GuestSSH
	Images   []string
	Paths    Paths

	// src says where each value came from, for error positions.
	src *source
}

// SSH is how fleetctl connects to the host.
type SSH struct {
	Address        string
	Port           int
	User           string
	IdentityFile   string // absolute local path, or empty
	Agent          bool
	JumpHost       *JumpHost // nil: connect directly
	KnownHostsFile string    // absolute local path
	Sudo           bool
	ConnectTimeout time.Duration
}

// Addr is address:port for net.Dial.
func (s SSH) Addr() string { return net.JoinHostPort(s.Address, strconv.Itoa(s.Port)) }

// JumpHost is a bastion fleetctl connects through.
type JumpHost struct {
	Address string
	Port    int
	User    string
}

// Addr is address:port for net.Dial.
func (j JumpHost) Addr() string { return net.JoinHostPort(j.Address, strconv.Itoa(j.Port)) }

// Driver names a vz-node VM driver.
type Driver string

// The VM drivers vz-node offers.
const (
	DriverVZ  Driver = "vz"  // Apple Virtualization.framework
	DriverSim Driver = "sim" // the simulator for tests and the lab
)

// LogLevel is vz-node's log level.
type LogLevel string

// The log levels vz-node accepts.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// Slog converts the level for log/slog.
func (l LogLevel) Slog() slog.Level {
	switch l {
	case LogDebug:
		return slog.LevelDebug
	case LogWarn:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Node is the Kubernetes node vz-node registers.
type Node struct {
	Name            string
	Labels          map[string]string
	Taints          []Taint
	MaxVMs          int
	Reserve         Reserve
	BridgeInterface string // empty: NAT
	DockerHost      string // empty: no sidecars
	SandboxImage    string // empty: vz-node's default
	Driver          Driver
	LogLevel        LogLevel
}

// TaintEffect is a Kubernetes taint effect.
type TaintEffect string

// The taint effects Kubernetes knows.
const (
	NoSchedule       TaintEffect = "NoSchedule"
	PreferNoSchedule TaintEffect = "PreferNoSchedule"
	NoExecute        TaintEffect = "NoExecute"
)

// Taint is a node taint.
type Taint struct {
	Key    string
	Value  string
	Effect TaintEffect
}

// String formats the taint as key=value:Effect (key:Effect without a value),
// the form kubectl taint and vz-node's --taint flag take.
func (t Taint) String() string {
	if t.Value == "" {
		return t.Key + ":" + string(t.Effect)
	}
	return t.Key + "=" + t.Value + ":" + string(t.Effect)
}

// Reserve is held back from pods.
type Reserve struct {
	CPU    resource.Quantity
	Memory resource.Quantity
}

// Cluster is the Kubernetes cluster a host's node joins.
type Cluster struct {
	OperatorKubeconfig string // absolute local path; empty: $KUBECONFIG or ~/.kube/config
	APIServer          string // https URL override; empty: the operator kubeconfig's server
	NodeCredentials    NodeCredentials
}

// NodeCredentials is where the node's identity comes from: exactly one of
// Kubeconfig and CSR is set.
type NodeCredentials struct {
	Kubeconfig *SecretRef
	CSR        bool
}

// SecretRef names where a secret is read from when fleetctl runs: exactly
// one of File and Env is set. It never holds the secret itself.
type SecretRef struct {
	File string // absolute local path
	Env  string // environment variable name
}

// String describes the reference (never the secret).
func (r SecretRef) String() string {
	if r.Env != "" {
		return "$" + r.Env
	}
	return r.File
}

// Read returns the secret. lookupEnv is os.LookupEnv when nil.
func (r SecretRef) Read(lookupEnv func(string) (string, bool)) ([]byte, error) {
	if r.Env != "" {
		if lookupEnv == nil {
			lookupEnv = os.LookupEnv
		}
		v, ok := lookupEnv(r.Env)
		if !ok || v == "" {
			return nil, fmt.Errorf("secret from environment variable %s: it is not set; export it before running fleetctl", r.Env)
		}
		return []byte(v), nil
	}
	b, err := os.ReadFile(r.File)
	if err != nil {
		return nil, fmt.Errorf("secret from file: %w", err)
	}
	return b, nil
}

// GuestSSH is how vz-node reaches its VMs; at least one of PrivateKey and
// Password is set.
type GuestSSH struct {
	User       string
	PrivateKey *SecretRef
	Password   *SecretRef
}

// Paths is the install layout on the host; every path is absolute.
type Paths struct {
	Binary       string
	LaunchdLabel string
	Plist        string
	ConfigDir    string
	StateDir     string
	CacheDir     string
	Log          string
}

// The files below live in ConfigDir: fleetctl installs them and the launchd
// plist points vz-node at them, so both sides take the names from here.

// Kubeconfig is the node's kubeconfig (mode 0600).
func (p Paths) Kubeconfig() string { return path.Join(p.ConfigDir, "kubeconfig") }

// Entitlements is the plist of entitlements vz-node is signed with.
func (p Paths) Entitlements() string { return path.Join(p.ConfigDir, "vz-node.entitlements") }

// GuestSSHKey is the private key for the guests (mode 0600).
func (p Paths) GuestSSHKey() string { return path.Join(p.ConfigDir, "guest-ssh-key") }

// GuestSSHPassword is the password for the guests (mode 0600).
func (p Paths) GuestSSHPassword() string { return path.Join(p.ConfigDir, "guest-ssh-password") }

// ServingCert is the kubelet serving certificate (exec, logs, stats).
func (p Paths) ServingCert() string { return path.Join(p.ConfigDir, "kubelet-serving.crt") }

// ServingKey is the kubelet serving certificate's key (mode 0600).
func (p Paths) ServingKey() string { return path.Join(p.ConfigDir, "kubelet-serving.key") }

// Rollout bounds how apply works through the fleet.
type Rollout struct {
	Concurrency    int
	MaxUnavailable IntOrPercent
	ReadyTimeout   time.Duration
}

// IntOrPercent is a count or a percentage of a total.
type IntOrPercent struct {
	Value   int
	Percent bool
}

// Of resolves the value against total hosts: a percentage rounds down, and
// the result is at least 1 and at most total (when total > 0).
func (v IntOrPercent) Of(total int) int {
	n := v.Value
	if v.Percent {
		n = total * v.Value / 100
	}
	if total > 0 && n > total {
		n = total
	}
	return max(n, 1)
}

// String formats the value as written: 3 or 25%.
func (v IntOrPercent) String() string {
	if v.Percent {
		return strconv.Itoa(v.Value) + "%"
	}
	return strconv.Itoa(v.Value)
}

// Host returns the host with the given name.
func (inv *Inventory) Host(name string) (*Host, bool) {
	for i := range inv.Hosts {
		if inv.Hosts[i].Name == name {
			return &inv.Hosts[i], true
		}
	}
	return nil, false
}
