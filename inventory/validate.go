package inventory

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"oras.land/oras-go/v2/registry"
)

// Validate checks a whole inventory and returns every problem joined, each
// an *Error. Load has already called it; call it again after changing an
// Inventory in code.
func (inv *Inventory) Validate() error {
	l := newErrorList(inv.File, inv.pos)
	inv.validate(l)
	return l.err()
}

func (inv *Inventory) validate(l *errorList) {
	if inv.defaults != nil {
		validateHost(l, inv.defaults, true)
	}
	if len(inv.Hosts) == 0 {
		l.at("hosts", "required: list at least one host (name and ssh.address)")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	nodes := map[string]int{}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.src == nil { // built in code: name fields by list index
			named := *h
			named.src = &source{prefix: fmt.Sprintf("hosts[%d]", i)}
			h = &named
		}
		validateHost(l, h, false)
		unique := func(seen map[string]int, key, rel, what string) {
			if key == "" {
				return
			}
			if j, dup := seen[key]; dup {
				l.host(h, rel, "%s is already used by host %q (hosts[%d]); each host needs its own", what, inv.Hosts[j].Name, j)
				return
			}
			seen[key] = i
		}
		_, dupName := names[h.Name]
		unique(names, h.Name, "name", fmt.Sprintf("name %q", h.Name))
		if h.SSH.Address != "" {
			unique(addrs, addressKey(h.SSH), "ssh.address", "SSH address "+h.SSH.Addr())
		}
		if !dupName || h.Node.Name != h.Name { // else reported as the duplicate host name
			unique(nodes, h.Node.Name, "node.name", fmt.Sprintf("node name %q", h.Node.Name))
		}
	}
	validateRollout(l, inv.Rollout)
}

// addressKey identifies the machine an SSH address reaches: the same
// private address behind two different jump hosts is two machines.
func addressKey(s SSH) string {
	norm := func(addr string, port int) string {
		if ip := net.ParseIP(addr); ip != nil {
			addr = ip.String()
		}
		return net.JoinHostPort(strings.ToLower(addr), fmt.Sprint(port))
	}
	key := norm(s.Address, s.Port)
	if j := s.JumpHost; j != nil {
		key = norm(j.Address, j.Port) + " -> " + key
	}
	return key
}

var (
	hostNameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	launchdLabelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	interfaceRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,14}$`)
	envNameRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// imageRE is a Docker image reference: [host[:port]/]path[:tag][@digest].
	imageRE = regexp.MustCompile(`^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$`)
)

// validateHost checks one host. partial is for the defaults block: values
// are checked, but nothing is required.
func validateHost(l *errorList, h *Host, partial bool) {
	switch {
	case partial:
	case h.Name == "":
		l.host(h, "name", "required: a name of letters, digits, '.', '_' and '-' (e.g. mini-01)")
	case !hostNameRE.MatchString(h.Name):
		l.host(h, "name", "%q is not a valid host name; use letters, digits, '.', '_' and '-' (e.g. mini-01)", clip(h.Name))
	}
	validateSSH(l, h, partial)
	validateNode(l, h)
	validateCluster(l, h, partial)
	validateGuestSSH(l, h, partial)
	seen := map[string]bool{}
	for i, ref := range h.Images {
		rel := fmt.Sprintf("images[%d]", i)
		if _, err := registry.ParseReference(ref); err != nil {
			l.host(h, rel, "%q is not an OCI reference; write registry/repository:tag or @sha256:digest, e.g. ghcr.io/cirruslabs/macos-sequoia-base:latest", clip(ref))
		} else if seen[ref] {
			l.host(h, rel, "%q is listed twice; remove one", ref)
		}
		seen[ref] = true
	}
	validatePaths(l, h)
}

func validateSSH(l *errorList, h *Host, partial bool) {
	s := h.SSH
	switch {
	case s.Address == "" && !partial:
		l.host(h, "ssh.address", "required: set the host name, IP address or ~/.ssh/config alias of this Mac")
	case s.Address != "":
		if msg := checkAddress(s.Address); msg != "" {
			l.host(h, "ssh.address", "%s", msg)
		}
	}
	checkPort(l, h, "ssh.port", s.Port)
	switch {
	case s.User == "" && !partial:
		l.host(h, "ssh.user", "required: set the SSH login user (usually in defaults.ssh.user)")
	case s.User != "":
		if msg := checkUser(s.User); msg != "" {
			l.host(h, "ssh.user", "%s", msg)
		}
	}
	if looksInline(s.IdentityFile) {
		l.host(h, "ssh.identityFile", "this looks like a private key, not a path; save the key in a file (chmod 600) and give its path here")
	}
	if !s.Agent && s.IdentityFile == "" && !partial {
		l.host(h, "ssh.agent", "no way to log in: set ssh.identityFile to a private key file, or ssh.agent: true to use ssh-agent")
	}
	if s.KnownHostsFile == "" {
		l.host(h, "ssh.knownHostsFile", "required: host keys are always verified; name a known_hosts file (default ~/.ssh/known_hosts)")
	}
	checkDuration(l, h, "ssh.connectTimeout", s.ConnectTimeout, time.Second, 5*time.Minute)
	if j := s.JumpHost; j != nil {
		switch {
		case j.Address == "":
			l.host(h, "ssh.jumpHost.address", "required: set the bastion's host name or IP address, or remove jumpHost")
		default:
			if msg := checkAddress(j.Address); msg != "" {
				l.host(h, "ssh.jumpHost.address", "%s", msg)
			}
		}
		checkPort(l, h, "ssh.jumpHost.port", j.Port)
		if j.User != "" {
			if msg := checkUser(j.User); msg != "" {
				l.host(h, "ssh.jumpHost.user", "%s", msg)
			}
		} else if !partial {
			l.host(h, "ssh.jumpHost.user", "required: set the bastion's login user (defaults to ssh.user)")
		}
	}
}

func checkAddress(a string) string {
	switch {
	case strings.Contains(a, "://"):
		return fmt.Sprintf("%q is a URL; give only the host name or IP address (port goes in ssh.port)", clip(a))
	case strings.Contains(a, "@"):
		return fmt.Sprintf("%q contains a user; put the user in ssh.user and only the host here", clip(a))
	case strings.HasPrefix(a, "["):
		return fmt.Sprintf("%q: write IPv6 addresses without brackets; the port goes in ssh.port", clip(a))
	case strings.ContainsAny(a, " \t\r\n/\\"):
		return fmt.Sprintf("%q is not a host name or IP address", clip(a))
	case net.ParseIP(a) == nil && strings.Contains(a, ":"):
		return fmt.Sprintf("%q includes a port; put the port in ssh.port and only the host here", clip(a))
	case strings.HasPrefix(a, "-"):
		return fmt.Sprintf("%q must not start with '-'", clip(a))
	}
	return ""
}

func checkUser(u string) string {
	switch {
	case strings.HasPrefix(u, "-"):
		return fmt.Sprintf("user %q must not start with '-'", clip(u))
	case strings.Contains(u, "@"):
		return fmt.Sprintf("user %q contains '@'; give the user name only, the host goes in address", clip(u))
	case strings.ContainsFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Sprintf("user %q contains spaces or control characters", clip(u))
	}
	return ""
}

func checkPort(l *errorList, h *Host, rel string, port int) {
	if port < 1 || port > 65535 {
		l.host(h, rel, "port %d is out of range; use 1 to 65535 (SSH is usually 22)", port)
	}
}

func checkDuration(l *errorList, h *Host, rel string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		l.host(h, rel, "%s is out of range; use %s to %s", d, lo, hi)
	}
}

// Label prefixes a node may set on itself under the NodeRestriction
// admission plugin; any other kubernetes.io or k8s.io label is refused by the
// API server when vz-node registers.
var nodeSelfLabels = []string{
	"kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
	"beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
	"failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
	"topology.kubernetes.io/region", "topology.kubernetes.io/zone",
}

func nodeMaySetLabel(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	for _, allowed := range nodeSelfLabels {
		if key == allowed {
			return true
		}
	}
	if strings.HasSuffix(prefix, "kubelet.kubernetes.io") || strings.HasSuffix(prefix, "node.kubernetes.io") {
		return true
	}
	restricted := func(domain string) bool { return prefix == domain || strings.HasSuffix(prefix, "."+domain) }
	return !restricted("kubernetes.io") && !restricted("k8s.io")
}

func validateNode(l *errorList, h *Host) {
	n := h.Node
	// An empty or bad host name has been reported already; do not report
	// it again as the node name derived from it.
	derivedFromBadName := n.Name == h.Name && !hostNameRE.MatchString(h.Name)
	if n.Name != "" && !derivedFromBadName && len(validation.IsDNS1123Subdomain(n.Name)) > 0 {
		l.host(h, "node.name", "%q is not a valid Kubernetes node name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); set node.name, or rename the host", clip(n.Name))
	}
	for k, v := range n.Labels {
		rel := "node.labels[" + k + "]"
		for _, msg := range validation.IsQualifiedName(k) {
			l.host(h, rel, "label key %q is invalid: %s", clip(k), msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			l.host(h, rel, "label value %q is invalid: %s", clip(v), msg)
		}
		if !nodeMaySetLabel(k) {
			l.host(h, rel, "label %q is in a Kubernetes-reserved namespace that nodes may not set (the NodeRestriction admission plugin refuses it); use your own prefix, e.g. vzfleet.dev/%s", k, k[strings.Index(k, "/")+1:])
		}
	}
	taints := map[string]int{}
	for i, t := range n.Taints {
		rel := fmt.Sprintf("node.taints[%d]", i)
		for _, msg := range validation.IsQualifiedName(t.Key) {
			l.host(h, rel, "taint key %q is invalid: %s", clip(t.Key), msg)
		}
		for _, msg := range validation.IsValidLabelValue(t.Value) {
			l.host(h, rel, "taint value %q is invalid: %s", clip(t.Value), msg)
		}
		switch t.Effect {
		case NoSchedule, PreferNoSchedule, NoExecute:
		default:
			l.host(h, rel, "taint effect %q is not supported; use NoSchedule, PreferNoSchedule or NoExecute", clip(string(t.Effect)))
		}
		id := t.Key + ":" + string(t.Effect)
		if j, dup := taints[id]; dup {
			l.host(h, rel, "taint %s repeats taints[%d] (same key and effect); keep one", t.Key+":"+string(t.Effect), j)
		}
		taints[id] = i
	}
	if n.MaxVMs < 1 || n.MaxVMs > 2 {
		l.host(h, "node.maxVMs", "%d is out of range; use 1 or 2 (Virtualization.framework runs at most 2 macOS VMs per host)", n.MaxVMs)
	}
	if n.Reserve.CPU.Sign() < 0 {
		l.host(h, "node.reserve.cpu", "must not be negative")
	}
	if n.Reserve.Memory.Sign() < 0 {
		l.host(h, "node.reserve.memory", "must not be negative")
	}
	if n.BridgeInterface != "" && !interfaceRE.MatchString(n.BridgeInterface) {
		l.host(h, "node.bridgeInterface", "%q is not a network interface name; use a name like en0 (ifconfig -l lists them), or leave it empty for NAT", clip(n.BridgeInterface))
	}
	if n.DockerHost != "" {
		if err := checkDockerHost(n.DockerHost); err != "" {
			l.host(h, "node.dockerHost", "%q %s; use unix:///var/run/docker.sock (or your engine's socket) or tcp://host:port", clip(n.DockerHost), err)
		}
	}
	if n.SandboxImage != "" && !imageRE.MatchString(n.SandboxImage) {
		l.host(h, "node.sandboxImage", "%q is not an image reference; use a name like registry.k8s.io/pause:3.10.1, or leave it empty for that default", clip(n.SandboxImage))
	}
	switch n.Driver {
	case DriverVZ, DriverSim:
	default:
		l.host(h, "node.driver", "%q is not a driver; use vz (Virtualization.framework) or sim (simulator)", clip(string(n.Driver)))
	}
	switch n.LogLevel {
	case LogDebug, LogInfo, LogWarn, LogError:
	default:
		l.host(h, "node.logLevel", "%q is not a log level; use debug, info, warn or error", clip(string(n.LogLevel)))
	}
}

// checkDockerHost says what is wrong with a DOCKER_HOST value, if anything.
func checkDockerHost(v string) string {
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme == "unix" && u.Path != "" && u.Host == "":
		return ""
	case u.Scheme == "tcp" && u.Host != "" && (u.Path == "" || u.Path == "/"):
		return ""
	case u.Scheme == "unix":
		return "names no socket path (write three slashes: unix:///path)"
	case u.Scheme == "tcp":
		return "names no host:port"
	}
	return "is neither a unix:// socket nor a tcp:// address"
}

func validateCluster(l *errorList, h *Host, partial bool) {
	c := h.Cluster
	if c.APIServer != "" {
		u, err := url.Parse(c.APIServer)
		switch {
		case err != nil || u.Host == "" || u.Opaque != "":
			l.host(h, "cluster.apiServer", "%q is not a URL; write https://host:port", clip(c.APIServer))
		case u.Scheme != "https":
			l.host(h, "cluster.apiServer", "the API server URL must use https:// (got %s://)", clip(u.Scheme))
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			l.host(h, "cluster.apiServer", "the API server URL must not carry credentials, a query or a fragment; write https://host:port")
		}
	}
	nc := c.NodeCredentials
	switch {
	case nc.Kubeconfig != nil && nc.CSR:
		l.host(h, "cluster.nodeCredentials", "set either kubeconfig or csr: true, not both")
	case nc.Kubeconfig == nil && !nc.CSR && !partial:
		l.host(h, "cluster.nodeCredentials", "no node credentials: set csr: true (fleetctl mints a certificate for the node) or kubeconfig: {file: ...}")
	case nc.Kubeconfig != nil:
		validateSecretRef(l, h, "cluster.nodeCredentials.kubeconfig", *nc.Kubeconfig)
	}
}

func validateGuestSSH(l *errorList, h *Host, partial bool) {
	g := h.GuestSSH
	if msg := checkUser(g.User); g.User == "" || msg != "" {
		if msg == "" {
			msg = "required: the login user inside the VMs (tart's images use admin)"
		}
		l.host(h, "guestSSH.user", "%s", msg)
	}
	if g.PrivateKey == nil && g.Password == nil && !partial {
		l.host(h, "guestSSH", "no guest credentials: set privateKey or password to {file: path} or {env: VARIABLE} (vz-node logs in to the VMs with them)")
	}
	if g.PrivateKey != nil {
		validateSecretRef(l, h, "guestSSH.privateKey", *g.PrivateKey)
	}
	if g.Password != nil {
		validateSecretRef(l, h, "guestSSH.password", *g.Password)
	}
}

// validateSecretRef never echoes the value: a user who pasted a secret into
// the wrong field must not see it again in CI logs.
func validateSecretRef(l *errorList, h *Host, rel string, r SecretRef) {
	switch {
	case r.File != "" && r.Env != "":
		l.host(h, rel, "set either file or env, not both")
	case r.File == "" && r.Env == "":
		l.host(h, rel, "empty reference: set file: path/to/secret or env: VARIABLE_NAME")
	case looksInline(r.File):
		l.host(h, rel+".file", "this looks like the secret itself, not a path; secrets are never written inline: save it in a file (chmod 600) and give its path")
	case r.Env != "" && !envNameRE.MatchString(r.Env):
		l.host(h, rel+".env", "env takes the NAME of an environment variable (letters, digits and _), not its value; export the secret as e.g. GUEST_SSH_KEY and write env: GUEST_SSH_KEY")
	}
}

func validatePaths(l *errorList, h *Host) {
	p := h.Paths
	for _, f := range []struct{ rel, value string }{
		{"paths.binary", p.Binary}, {"paths.plist", p.Plist}, {"paths.configDir", p.ConfigDir},
		{"paths.stateDir", p.StateDir}, {"paths.cacheDir", p.CacheDir}, {"paths.log", p.Log},
	} {
		if msg := checkRemotePath(f.value); msg != "" {
			l.host(h, f.rel, "%s", msg)
		}
	}
	if !launchdLabelRE.MatchString(p.LaunchdLabel) {
		l.host(h, "paths.launchdLabel", "%q is not a launchd label; use reverse-DNS letters, digits, '.', '_' and '-' (e.g. dev.vzfleet.vz-node)", clip(p.LaunchdLabel))
	}
	if !strings.HasSuffix(p.Plist, ".plist") {
		l.host(h, "paths.plist", "a launchd plist file name ends in .plist")
	}
}

// checkRemotePath checks a path on the Mac. ~ is refused because it would
// have to expand on the Mac, for the SSH user, not for root running vz-node.
func checkRemotePath(p string) string {
	switch {
	case p == "":
		return "required: an absolute path on the host"
	case strings.HasPrefix(p, "~"):
		return fmt.Sprintf("%q: paths on the host must be absolute; ~ is not expanded there", clip(p))
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q: paths on the host must be absolute (start with /)", clip(p))
	case strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "path contains control characters"
	case path.Clean(p) != p:
		return fmt.Sprintf("%q is not in clean form; write %q", clip(p), path.Clean(p))
	case p == "/":
		return "the root directory is not a valid location"
	}
	return ""
}

func validateRollout(l *errorList, r Rollout) {
	if r.Concurrency < 1 || r.Concurrency > 1000 {
		l.at("rollout.concurrency", "%d is out of range; use 1 to 1000 hosts at a time", r.Concurrency)
	}
	mu := r.MaxUnavailable
	switch {
	case mu.Percent && (mu.Value < 1 || mu.Value > 100):
		l.at("rollout.maxUnavailable", "%s is out of range; use 1%% to 100%%", mu)
	case !mu.Percent && mu.Value < 1:
		l.at("rollout.maxUnavailable", "%s is out of range; at least 1 host must be allowed to restart", mu)
	}
	if r.ReadyTimeout < 10*time.Second || r.ReadyTimeout > time.Hour {
		l.at("rollout.readyTimeout", "%s is out of range; use 10s to 1h", r.ReadyTimeout)
	}
}
