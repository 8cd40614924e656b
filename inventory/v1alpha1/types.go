// Package v1alpha1 is the vzfleet.dev/v1alpha1 inventory file format: the
// types exactly as an operator writes them in YAML. Every optional field is
// a pointer (or a nil map or slice) so "not set" is distinguishable from a
// zero value; that is what lets a host override only part of the defaults.
//
// The loader in package inventory decodes these types strictly, merges
// defaults into each host, applies SetDefaults, converts the result to its
// own internal types and validates those. The struct tags drive the decoder
// (yaml), the merge (merge:"replace" replaces a value as a whole,
// merge:"group=x" replaces all fields of group x together) and the JSON
// Schema (doc, default, enum, minimum, maximum, minItems, pattern, required).
package v1alpha1

// APIVersion and Kind identify this version of the inventory format.
const (
	APIVersion = "vzfleet.dev/v1alpha1"
	Kind       = "Inventory"
)

// Inventory is the whole inventory file.
type Inventory struct {
	APIVersion string    `yaml:"apiVersion" required:"true" enum:"vzfleet.dev/v1alpha1" doc:"Version of the inventory format. Always vzfleet.dev/v1alpha1."`
	Kind       string    `yaml:"kind" required:"true" enum:"Inventory" doc:"Always Inventory."`
	Defaults   *HostSpec `yaml:"defaults" doc:"Settings every host inherits. A host's own settings are merged over these: mappings field by field (labels key by key), lists and secret references replaced as a whole."`
	Hosts      []Host    `yaml:"hosts" required:"true" minItems:"1" doc:"The Mac hosts to manage, at least one. Host names and SSH address:port pairs must be unique."`
	Rollout    *Rollout  `yaml:"rollout" doc:"How fleetctl apply pages through the fleet."`
}

// YAMLExtensionPrefix lets the top level hold x- fields, which are ignored:
// a place for YAML anchors shared by several hosts.
func (*Inventory) YAMLExtensionPrefix() string { return "x-" }

// Host is one Mac: a unique name plus settings that override the defaults.
type Host struct {
	Name     string `yaml:"name" required:"true" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"Unique name of the host in this inventory, used by --limit and in reports. Also the default Kubernetes node name, so a lowercase DNS name is the easy choice."`
	HostSpec `yaml:",inline"`
}

// HostSpec is everything that can be set in defaults or on a host.
type HostSpec struct {
	SSH      *SSH      `yaml:"ssh" doc:"How fleetctl reaches the host over SSH."`
	Node     *Node     `yaml:"node" doc:"The Kubernetes node vz-node registers for this host."`
	Cluster  *Cluster  `yaml:"cluster" doc:"The Kubernetes cluster the node joins and the credentials it uses."`
	GuestSSH *GuestSSH `yaml:"guestSSH" doc:"Credentials vz-node uses to reach the macOS guests over SSH (exec, logs, probes, shutdown). Installed on the host with mode 0600."`
	Images   []string  `yaml:"images" doc:"OCI references of VM images to pre-pull on the host (by fleetctl apply once the node is Ready, and by fleetctl prepull), fully qualified, e.g. ghcr.io/cirruslabs/macos-sequoia-base:latest. Replaces the defaults' list."`
	Paths    *Paths    `yaml:"paths" doc:"Where vz-node is installed on the host. The macOS defaults rarely need changing."`
}

// SSH is the connection from fleetctl to a host.
type SSH struct {
	Address        *string   `yaml:"address" doc:"Host name, IP address or ~/.ssh/config alias of the Mac. Required for every host."`
	Port           *int      `yaml:"port" default:"22" minimum:"1" maximum:"65535" doc:"SSH port of the host."`
	User           *string   `yaml:"user" doc:"SSH login user. Required (usually set in defaults)."`
	IdentityFile   *string   `yaml:"identityFile" doc:"Private key file for SSH login, on the machine running fleetctl. ~ and paths relative to the inventory file are expanded."`
	Agent          *bool     `yaml:"agent" doc:"Use the ssh-agent at $SSH_AUTH_SOCK. Defaults to true when no identityFile is set; with both, the agent is tried first."`
	JumpHost       *JumpHost `yaml:"jumpHost" doc:"Bastion to connect through (like ssh -J). It authenticates with the same key or agent."`
	KnownHostsFile *string   `yaml:"knownHostsFile" default:"~/.ssh/known_hosts" doc:"known_hosts file that host keys are verified against."`
	Sudo           *bool     `yaml:"sudo" doc:"Run privileged steps with sudo -n (passwordless sudo needed). Defaults to true unless user is root."`
	ConnectTimeout *Duration `yaml:"connectTimeout" default:"10s" doc:"Timeout for establishing the SSH connection, e.g. 10s (1s to 5m)."`
}

// JumpHost is a bastion between fleetctl and the host.
type JumpHost struct {
	Address *string `yaml:"address" doc:"Host name or IP address of the bastion. An empty string on a host connects it directly, ignoring the defaults' jump host."`
	Port    *int    `yaml:"port" default:"22" minimum:"1" maximum:"65535" doc:"SSH port of the bastion."`
	User    *string `yaml:"user" doc:"Login user on the bastion. Defaults to ssh.user."`
}

// Node is the Kubernetes node that vz-node registers for a host.
type Node struct {
	Name            *string           `yaml:"name" doc:"Kubernetes node name (a DNS subdomain). Defaults to the host's name."`
	Labels          map[string]string `yaml:"labels" doc:"Labels on the node. Merged key by key with the defaults' labels. Labels under kubernetes.io and k8s.io that the NodeRestriction admission plugin forbids nodes to set are rejected."`
	Taints          []Taint           `yaml:"taints" doc:"Taints on the node, each key=value:Effect or key:Effect with Effect one of NoSchedule, PreferNoSchedule, NoExecute. Replaces the defaults' list."`
	MaxVMs          *int              `yaml:"maxVMs" default:"2" minimum:"1" maximum:"2" doc:"How many macOS VMs (pods) the node runs at once. Virtualization.framework allows at most 2."`
	Reserve         *Reserve          `yaml:"reserve" doc:"Host resources held back from pods for macOS and vz-node itself."`
	BridgeInterface *string           `yaml:"bridgeInterface" doc:"Host network interface (e.g. en0) for bridged VM networking. Empty means NAT."`
	DockerHost      *string           `yaml:"dockerHost" doc:"Docker engine that runs pods' sidecar containers (every container after the VM), as a DOCKER_HOST value: unix:///path/to/docker.sock (Docker Desktop, colima) or tcp://host:port. Empty means pods with sidecars fail on this node."`
	SandboxImage    *string           `yaml:"sandboxImage" doc:"Pause image of each pod's sandbox container, whose network namespace the pod's Docker containers share. Empty means vz-node's default, registry.k8s.io/pause:3.10.1; name a mirror the Docker engine can pull from, or an image loaded into it, where that registry is out of reach."`
	Driver          *string           `yaml:"driver" default:"vz" enum:"vz,sim" doc:"VM driver: vz (Apple Virtualization.framework) or sim (the simulator used for tests and the lab)."`
	LogLevel        *string           `yaml:"logLevel" default:"info" enum:"debug,info,warn,error" doc:"vz-node log level."`
}

// Reserve is held back from the node's allocatable resources.
type Reserve struct {
	CPU    *Quantity `yaml:"cpu" default:"1" doc:"CPU to reserve, as a Kubernetes quantity (1, 500m)."`
	Memory *Quantity `yaml:"memory" default:"2Gi" doc:"Memory to reserve, as a Kubernetes quantity (2Gi, 512Mi)."`
}

// Cluster is the Kubernetes side of a host.
type Cluster struct {
	OperatorKubeconfig *string          `yaml:"operatorKubeconfig" doc:"Kubeconfig fleetctl uses as the operator (wait for nodes to be Ready, approve certificate requests), on the machine running fleetctl. Empty means $KUBECONFIG or ~/.kube/config."`
	APIServer          *string          `yaml:"apiServer" pattern:"^https://" doc:"https:// URL of the API server the node should use, when it differs from the operator kubeconfig's (e.g. a load balancer the Macs reach)."`
	NodeCredentials    *NodeCredentials `yaml:"nodeCredentials" merge:"replace" doc:"Where the node's own Kubernetes credentials come from: a kubeconfig, or csr: true (the default) to have fleetctl mint a client certificate for system:node:<name> through the CertificateSigningRequest API. Replaced as a whole by a host's setting."`
}

// NodeCredentials selects the node's identity. Exactly one field is set.
type NodeCredentials struct {
	Kubeconfig *SecretRef `yaml:"kubeconfig" doc:"A kubeconfig for this node (a file or an environment variable holding it)."`
	CSR        *bool      `yaml:"csr" doc:"true: fleetctl creates a CertificateSigningRequest for system:node:<name>, approves it with the operator kubeconfig and installs the resulting kubeconfig."`
}

// SecretRef points at a secret; it never contains one. Exactly one field is set.
type SecretRef struct {
	File *string `yaml:"file" doc:"Path of a file holding the secret, on the machine running fleetctl. ~ and paths relative to the inventory file are expanded."`
	Env  *string `yaml:"env" pattern:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"Name of an environment variable holding the secret when fleetctl runs."`
}

// YAMLHint tells a user who pasted a secret inline how to reference it.
func (*SecretRef) YAMLHint() string {
	return "secrets are never written inline: use {file: path/to/secret} or {env: VARIABLE_NAME}"
}

// GuestSSH is how vz-node logs in to the macOS guests.
type GuestSSH struct {
	User       *string    `yaml:"user" default:"admin" doc:"Login user inside the VMs (tart's images use admin)."`
	PrivateKey *SecretRef `yaml:"privateKey" merge:"group=credentials" doc:"Private key for the guest user. Preferred over password when both are set. A host that sets privateKey or password replaces both of the defaults' ones."`
	Password   *SecretRef `yaml:"password" merge:"group=credentials" doc:"Password for the guest user."`
}

// Paths is the install layout on a host.
type Paths struct {
	Binary       *string `yaml:"binary" default:"/usr/local/bin/vz-node" doc:"Absolute path of the vz-node binary on the host."`
	LaunchdLabel *string `yaml:"launchdLabel" default:"dev.vzfleet.vz-node" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"launchd label of the vz-node service."`
	Plist        *string `yaml:"plist" doc:"Absolute path of the launchd plist. Defaults to /Library/LaunchDaemons/<launchdLabel>.plist."`
	ConfigDir    *string `yaml:"configDir" default:"/Library/Application Support/vzfleet" doc:"Directory for vz-node's configuration and secrets (kubeconfig, guest SSH key, serving certificate)."`
	StateDir     *string `yaml:"stateDir" default:"/var/db/vzfleet" doc:"Directory for VM state (overlays, per-VM supervisor state)."`
	CacheDir     *string `yaml:"cacheDir" default:"/Library/Caches/vzfleet" doc:"Directory for the VM image cache."`
	Log          *string `yaml:"log" default:"/Library/Logs/vz-node.log" doc:"Log file of the vz-node service."`
}

// Rollout bounds how apply works through the fleet.
type Rollout struct {
	Concurrency    *int          `yaml:"concurrency" default:"10" minimum:"1" maximum:"1000" doc:"Hosts worked on in parallel (connect, facts, upload)."`
	MaxUnavailable *IntOrPercent `yaml:"maxUnavailable" default:"1" doc:"Hosts whose vz-node may be restarting at once: a count (1) or a percentage of the hosts being applied (25%), rounded down but at least 1."`
	ReadyTimeout   *Duration     `yaml:"readyTimeout" default:"5m" doc:"How long to wait for a restarted node to be Ready before rolling the host back, e.g. 5m (10s to 1h)."`
}

// OneOf names the fields of which exactly one must be set (for the schema).
func (*SecretRef) OneOf() []string { return []string{"file", "env"} }

// OneOf names the fields of which exactly one must be set (for the schema).
func (*NodeCredentials) OneOf() []string { return []string{"kubeconfig", "csr"} }
