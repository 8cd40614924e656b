package v1alpha1

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Default values of the inventory format. The JSON Schema's default
// keywords (struct tags in types.go) state the same values for editors.
const (
	DefaultSSHPort         = 22
	DefaultKnownHostsFile  = "~/.ssh/known_hosts"
	DefaultConnectTimeout  = 10 * time.Second
	DefaultMaxVMs          = 2
	DefaultReserveCPU      = "1"
	DefaultReserveMemory   = "2Gi"
	DefaultDriver          = "vz"
	DefaultLogLevel        = "info"
	DefaultGuestUser       = "admin"
	DefaultBinary          = "/usr/local/bin/vz-node"
	DefaultLaunchdLabel    = "dev.vzfleet.vz-node"
	DefaultLaunchDaemonDir = "/Library/LaunchDaemons"
	// DefaultConfigDir follows the macOS convention for system-wide daemon
	// configuration. /etc/vzfleet would work too, but /Library is where the
	// other managed paths live (and what the lab's simulated hosts give each
	// host its own copy of).
	DefaultConfigDir      = "/Library/Application Support/vzfleet"
	DefaultStateDir       = "/var/db/vzfleet"
	DefaultCacheDir       = "/Library/Caches/vzfleet"
	DefaultLog            = "/Library/Logs/vz-node.log"
	DefaultConcurrency    = 10
	DefaultMaxUnavailable = 1
	DefaultReadyTimeout   = 5 * time.Minute
)

// SetDefaultsHost fills every unset field of a host's merged settings. name
// is the host's name, the default node name (empty for the defaults block,
// which has no name).
func SetDefaultsHost(name string, h *HostSpec) {
	if h.SSH == nil {
		h.SSH = &SSH{}
	}
	setDefaultsSSH(h.SSH)
	if h.Node == nil {
		h.Node = &Node{}
	}
	setDefaultsNode(name, h.Node)
	if h.Cluster == nil {
		h.Cluster = &Cluster{}
	}
	if h.Cluster.NodeCredentials == nil {
		h.Cluster.NodeCredentials = &NodeCredentials{CSR: ptr(true)}
	}
	if h.GuestSSH == nil {
		h.GuestSSH = &GuestSSH{}
	}
	setDefault(&h.GuestSSH.User, DefaultGuestUser)
	if h.Paths == nil {
		h.Paths = &Paths{}
	}
	setDefaultsPaths(h.Paths)
}

func setDefaultsSSH(s *SSH) {
	setDefault(&s.Port, DefaultSSHPort)
	setDefault(&s.KnownHostsFile, DefaultKnownHostsFile)
	setDefault(&s.Agent, s.IdentityFile == nil || *s.IdentityFile == "")
	setDefault(&s.Sudo, s.User == nil || *s.User != "root")
	setDefault(&s.ConnectTimeout, Duration{DefaultConnectTimeout})
	if j := s.JumpHost; j != nil {
		setDefault(&j.Port, DefaultSSHPort)
		if s.User != nil {
			setDefault(&j.User, *s.User)
		}
	}
}

func setDefaultsNode(name string, n *Node) {
	if name != "" {
		setDefault(&n.Name, name)
	}
	setDefault(&n.MaxVMs, DefaultMaxVMs)
	if n.Reserve == nil {
		n.Reserve = &Reserve{}
	}
	setDefault(&n.Reserve.CPU, Quantity{resource.MustParse(DefaultReserveCPU)})
	setDefault(&n.Reserve.Memory, Quantity{resource.MustParse(DefaultReserveMemory)})
	setDefault(&n.Driver, DefaultDriver)
	setDefault(&n.LogLevel, DefaultLogLevel)
}

func setDefaultsPaths(p *Paths) {
	setDefault(&p.Binary, DefaultBinary)
	setDefault(&p.LaunchdLabel, DefaultLaunchdLabel)
	setDefault(&p.Plist, DefaultLaunchDaemonDir+"/"+*p.LaunchdLabel+".plist")
	setDefault(&p.ConfigDir, DefaultConfigDir)
	setDefault(&p.StateDir, DefaultStateDir)
	setDefault(&p.CacheDir, DefaultCacheDir)
	setDefault(&p.Log, DefaultLog)
}

// SetDefaultsRollout fills every unset rollout field.
func SetDefaultsRollout(r *Rollout) {
	setDefault(&r.Concurrency, DefaultConcurrency)
	setDefault(&r.MaxUnavailable, IntOrPercent{Value: DefaultMaxUnavailable})
	setDefault(&r.ReadyTimeout, Duration{DefaultReadyTimeout})
}

func setDefault[T any](p **T, v T) {
	if *p == nil {
		*p = &v
	}
}

func ptr[T any](v T) *T { return &v }
