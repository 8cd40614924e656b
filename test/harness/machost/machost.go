package machost

import (
	"context"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultPrivateDirs are the directories every simulated host has its own
// copy of: where fleetctl installs (the inventory's macOS defaults), where
// vz-node keeps state when run with Linux defaults, and macsim's own state.
var DefaultPrivateDirs = []string{
	"/usr/local/bin",
	"/Library",
	"/var/db",
	"/var/root",
	"/etc/vzfleet",
	"/var/lib/vz-node",
	"/var/cache/vz-node",
	MacsimDir,
}

// MacsimDir holds a host's macsim state: host.json (what sw_vers, sysctl
// and uname answer), launchd.sock, launchd's overrides and log.
const MacsimDir = "/var/macsim"

// LabOptions configure a lab of simulated hosts.
type LabOptions struct {
	// Hosts to start; at least one.
	Hosts []HostOptions
	// Dir holds the lab's keys, logs and each host's files; it must not lie
	// under one of the private directories.
	Dir string
	// Subnet is the hosts' /24 (e.g. "10.213.7.0/24"): the bridge takes .1,
	// hosts .11, .12, ... Empty picks the first free one of 10.213.0.0/24
	// to 10.213.63.0/24, so labs of parallel tests do not collide.
	Subnet string
	// MacsimBinary is a prebuilt hack/macsim; empty builds it from the
	// checkout (cached under .cache/macsim).
	MacsimBinary string
	// LaunchdThrottle is the minimum time between launches of a KeepAlive job
	// (launchd's default is 10 s; the lab's is 1 s). LaunchdExitTimeout is
	// how long a stopping job gets before SIGKILL (launchd's 20 s; the lab's
	// 5 s). Plists can still set ThrottleInterval and ExitTimeOut.
	LaunchdThrottle    time.Duration
	LaunchdExitTimeout time.Duration
	// PrivateDirs are added to DefaultPrivateDirs.
	PrivateDirs []string
	// Log receives progress messages; nil is quiet.
	Log func(format string, args ...any)
}

// HostOptions describe one simulated Mac. Zero fields take the defaults of
// a Mac mini with an M2 Pro (10 CPUs, 16 GiB) running macOS 15.3.
type HostOptions struct {
	// Name is the host name and part of its namespace's name: lower-case
	// letters, digits and dashes.
	Name string
	// MacOSVersion is what sw_vers reports, e.g. "15.3"; BuildVersion
	// defaults to the real build of that version.
	MacOSVersion string
	BuildVersion string
	CPUs         int
	MemoryBytes  int64
	CPUBrand     string
	Model        string
	// NoHVSupport makes kern.hv_support 0 (no Virtualization.framework).
	NoHVSupport bool
	// VMMPresent makes kern.hv_vmm_present 1 (the Mac is itself a VM).
	VMMPresent bool
}

// Lab is a set of running simulated hosts.
type Lab struct {
	Hosts []*Host
	// Dir is LabOptions.Dir.
	Dir string
	// Subnet of the hosts, Gateway the bridge's address in it (the test
	// machine as the hosts see it), Bridge the bridge's name.
	Subnet, Gateway, Bridge string
	// User is the account the client key logs in as on every host.
	User string
	// ClientKeyFile is an unencrypted OpenSSH private key (0600) authorized
	// on every host; ClientSigner is the same key.
	ClientKeyFile string
	ClientSigner  ssh.Signer
	// KnownHostsFile lists every host's key as it was at start (0600).
	// RotateHostKey does not update it, so a rotated host fails the check.
	KnownHostsFile string

	impl *labImpl
}

// Host is one simulated Mac.
type Host struct {
	Name string
	// IP is the host's address; Address is IP:22, where sshd listens.
	IP, Address string
	// Namespace is the network namespace (`ip netns exec <Namespace> ...`).
	Namespace string
	// Root is the directory on the test machine holding the host's private
	// directories: Root+"/usr/local/bin" is the host's /usr/local/bin.
	Root string
	// Dir holds the host's sshd configuration, keys and logs.
	Dir     string
	Options HostOptions

	lab         *Lab
	privateDirs []string
	impl        *hostImpl
}

// Host returns the host named name, or nil.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Path maps a path on the simulated host to the test machine: under one of
// the host's private directories it is the host's own copy below Root;
// anything else the host shares with the machine, and Path returns it as is.
func (h *Host) Path(p string) string {
	p = path.Clean("/" + p)
	for _, d := range h.privateDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return filepath.Join(h.Root, p)
		}
	}
	return p
}

// PrivateDirs lists the directories the host has its own copy of.
func (h *Host) PrivateDirs() []string { return append([]string(nil), h.privateDirs...) }

// KnownHostsLine is the known_hosts line for the host's current key.
func (h *Host) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(h.Address)}, h.HostKey())
}

// ClientConfig is an SSH client configuration that logs in with the lab's
// key and checks host keys against knownHostsFile (Lab.KnownHostsFile when
// empty).
func (l *Lab) ClientConfig(knownHostsFile string) (*ssh.ClientConfig, error) {
	if knownHostsFile == "" {
		knownHostsFile = l.KnownHostsFile
	}
	cb, err := knownhosts.New(knownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", knownHostsFile, err)
	}
	return &ssh.ClientConfig{
		User:              l.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(l.ClientSigner)},
		HostKeyCallback:   cb,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	}, nil
}

// Dial opens an SSH connection to the host with the lab's key and known_hosts.
func (h *Host) Dial(ctx context.Context) (*ssh.Client, error) {
	cfg, err := h.lab.ClientConfig("")
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", h.Address)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Name, err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, h.Address, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", h.Name, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}
