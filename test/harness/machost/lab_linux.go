package machost

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vzfleet/vzfleet/test/harness"
)

// Paths of Debian's OpenSSH server.
const (
	sshdPath       = "/usr/sbin/sshd"
	sftpServerPath = "/usr/lib/openssh/sftp-server"
)

// libraryDirs are created inside each host's /Library, as on a Mac.
var libraryDirs = []string{"LaunchDaemons", "LaunchAgents", "Logs", "Application Support", "Caches", "Preferences"}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// macPATH is what a non-interactive SSH session on a Mac gets.
const macPATH = "/usr/bin:/bin:/usr/sbin:/sbin"

type labImpl struct {
	opts       LabOptions
	net        *network
	macsim     string
	overlays   []bootMount
	forwardsMu sync.Mutex
	forwards   []net.Listener
	stopOnce   sync.Once
	stopErr    error
}

type hostImpl struct {
	mu      sync.Mutex
	octet   int
	veth    string
	boot    *harness.Process
	sshd    *harness.Process
	hostKey ssh.PublicKey
}

// StartLab starts the hosts of opts. On error nothing is left running.
func StartLab(ctx context.Context, opts LabOptions) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("machost: simulated hosts need root (network namespaces, mounts, sshd); run the tests as root")
	}
	if len(opts.Hosts) == 0 {
		return nil, errors.New("machost: LabOptions.Hosts is empty")
	}
	if len(opts.Hosts) > 200 {
		return nil, fmt.Errorf("machost: %d hosts do not fit in a /24 (at most 200)", len(opts.Hosts))
	}
	if opts.Dir == "" {
		return nil, errors.New("machost: LabOptions.Dir is empty")
	}
	if opts.LaunchdThrottle == 0 {
		opts.LaunchdThrottle = time.Second
	}
	if opts.LaunchdExitTimeout == 0 {
		opts.LaunchdExitTimeout = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	// sshd refuses a world-writable path to its keys only with StrictModes;
	// the host directories must still be reachable from every namespace.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("machost: lab directory: %w", err)
	}
	private := append(append([]string(nil), DefaultPrivateDirs...), opts.PrivateDirs...)
	for _, p := range private {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("machost: private directory %q is not absolute", p)
		}
		if dir == p || strings.HasPrefix(dir, p+"/") {
			return nil, fmt.Errorf("machost: the lab directory %s lies under %s, which every host replaces with its own copy; choose another Dir", dir, p)
		}
	}
	seen := map[string]bool{}
	for _, h := range opts.Hosts {
		if !nameRE.MatchString(h.Name) {
			return nil, fmt.Errorf("machost: host name %q: use 1-32 lower-case letters, digits and dashes", h.Name)
		}
		if seen[h.Name] {
			return nil, fmt.Errorf("machost: host name %q appears twice", h.Name)
		}
		seen[h.Name] = true
	}
	for _, tool := range []string{"ip", "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("machost: %s not found (install iproute2 and util-linux): %w", tool, err)
		}
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return nil, fmt.Errorf("machost: %s not found (install Debian's openssh-server, e.g. `make deps`): %w", sshdPath, err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("machost: sshd's privilege separation directory /run/sshd: %w", err)
	}

	lab := &Lab{Dir: dir, User: "root", impl: &labImpl{opts: opts}}
	ok := false
	defer func() {
		if !ok {
			_ = lab.Stop()
		}
	}()

	if lab.impl.macsim, err = prepareMacsim(ctx, opts.MacsimBinary, dir); err != nil {
		return nil, err
	}
	if lab.impl.overlays, err = commandOverlays(lab.impl.macsim); err != nil {
		return nil, err
	}
	if err := lab.writeClientKey(); err != nil {
		return nil, err
	}
	n, err := setupNetwork(opts.Subnet, opts.Log)
	if err != nil {
		return nil, err
	}
	lab.impl.net = n
	lab.Subnet, lab.Gateway, lab.Bridge = n.subnet, n.gateway, n.bridge

	for i, ho := range opts.Hosts {
		octet := 11 + i
		h := &Host{
			Name:        ho.Name,
			IP:          n.ip(octet),
			Namespace:   n.namespace(ho.Name),
			Dir:         filepath.Join(dir, "hosts", ho.Name),
			Options:     ho,
			lab:         lab,
			privateDirs: private,
			impl:        &hostImpl{octet: octet, veth: n.veth(octet)},
		}
		h.Address = net.JoinHostPort(h.IP, "22")
		h.Root = filepath.Join(h.Dir, "root")
		lab.Hosts = append(lab.Hosts, h)
	}
	var links []hostLink
	for _, h := range lab.Hosts {
		if err := h.prepare(); err != nil {
			return nil, err
		}
		links = append(links, hostLink{ns: h.Namespace, veth: h.impl.veth, ip: h.IP})
	}
	if err := n.addHosts(links); err != nil {
		return nil, fmt.Errorf("machost: host network: %w", err)
	}
	if err := lab.writeKnownHosts(lab.KnownHostsFile); err != nil {
		return nil, err
	}
	// Boot the hosts in parallel: each is a few process starts.
	errs := make(chan error, len(lab.Hosts))
	sem := make(chan struct{}, 16)
	for _, h := range lab.Hosts {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := h.boot(ctx); err != nil {
				errs <- err
				return
			}
			errs <- h.Start()
		}()
	}
	var all []error
	for range lab.Hosts {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if err := errors.Join(all...); err != nil {
		return nil, err
	}
	opts.Log("machost: %d simulated Mac hosts up on %s (bridge %s)", len(lab.Hosts), lab.Subnet, lab.Bridge)
	ok = true
	return lab, nil
}

func (l *Lab) writeClientKey() error {
	pemBytes, signer, err := newKey("vzfleet lab client")
	if err != nil {
		return err
	}
	l.ClientSigner = signer
	l.ClientKeyFile = filepath.Join(l.Dir, "client_ed25519")
	l.KnownHostsFile = filepath.Join(l.Dir, "known_hosts")
	if err := writeFile(l.ClientKeyFile, pemBytes, 0o600); err != nil {
		return err
	}
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	if err := writeFile(l.ClientKeyFile+".pub", pub, 0o644); err != nil {
		return err
	}
	return writeFile(filepath.Join(l.Dir, "authorized_keys"), pub, 0o600)
}

// WriteKnownHosts writes a known_hosts file (0600) with every host's
// current key.
func (l *Lab) WriteKnownHosts(path string) error { return l.writeKnownHosts(path) }

func (l *Lab) writeKnownHosts(path string) error {
	var b strings.Builder
	for _, h := range l.Hosts {
		b.WriteString(h.KnownHostsLine() + "\n")
	}
	return writeFile(path, []byte(b.String()), 0o600)
}

// Stop stops every host and removes the namespaces, the bridge and the
// firewall rule. The hosts' files stay in Dir. Stopping twice is harmless.
func (l *Lab) Stop() error {
	if l == nil || l.impl == nil {
		return nil
	}
	l.impl.stopOnce.Do(func() {
		l.impl.forwardsMu.Lock()
		for _, ln := range l.impl.forwards {
			ln.Close()
		}
		l.impl.forwards = nil
		l.impl.forwardsMu.Unlock()
		var wg sync.WaitGroup
		for _, h := range l.Hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.Stop()
				h.impl.mu.Lock()
				if h.impl.boot != nil {
					h.impl.boot.Stop()
					h.impl.boot = nil
				}
				h.impl.mu.Unlock()
			}()
		}
		wg.Wait()
		if l.impl.net != nil {
			l.impl.stopErr = l.impl.net.teardown()
		}
	})
	return l.impl.stopErr
}

// prepare creates the host's directories, keys and configuration files.
func (h *Host) prepare() error {
	for _, d := range h.privateDirs {
		if err := os.MkdirAll(filepath.Join(h.Root, d), 0o755); err != nil {
			return err
		}
		// The mount points must exist on the machine; an empty /Library on a
		// Linux test machine is harmless.
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("machost: creating the mount point %s: %w", d, err)
		}
	}
	for _, d := range libraryDirs {
		if err := os.MkdirAll(filepath.Join(h.Root, "Library", d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(h.Dir, "etc"), 0o755); err != nil {
		return err
	}
	if err := h.newHostKey(); err != nil {
		return err
	}
	hv := !h.Options.NoHVSupport
	info := map[string]any{
		"name": h.Name, "productVersion": h.Options.MacOSVersion, "buildVersion": h.Options.BuildVersion,
		"cpus": h.Options.CPUs, "memoryBytes": h.Options.MemoryBytes, "cpuBrand": h.Options.CPUBrand,
		"model": h.Options.Model, "hvSupport": hv, "vmmPresent": h.Options.VMMPresent,
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFile(filepath.Join(h.Root, MacsimDir, "host.json"), b, 0o644); err != nil {
		return err
	}
	// macOS's group 0 is wheel; fleetctl chowns root:wheel.
	group, err := os.ReadFile("/etc/group")
	if err != nil {
		return err
	}
	if !bytes.Contains(append([]byte("\n"), group...), []byte("\nwheel:")) {
		group = append(bytes.TrimRight(group, "\n"), []byte("\nwheel:x:0:root\n")...)
	}
	if err := writeFile(filepath.Join(h.Dir, "etc", "group"), group, 0o644); err != nil {
		return err
	}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
	for _, o := range h.lab.Hosts {
		fmt.Fprintf(&hosts, "%s\t%s\n", o.IP, o.Name)
	}
	if err := writeFile(filepath.Join(h.Dir, "etc", "hosts"), []byte(hosts.String()), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(h.Dir, "etc", "pam-sshd"), []byte(pamSSHD), 0o644); err != nil {
		return err
	}
	return h.writeSSHDConfig()
}

func (h *Host) newHostKey() error {
	pemBytes, signer, err := newKey("vzfleet simulated host " + h.Name)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(h.Dir, "ssh_host_ed25519_key"), pemBytes, 0o600); err != nil {
		return err
	}
	h.impl.mu.Lock()
	h.impl.hostKey = signer.PublicKey()
	h.impl.mu.Unlock()
	return nil
}

// HostKey is the host's current public host key.
func (h *Host) HostKey() ssh.PublicKey {
	h.impl.mu.Lock()
	defer h.impl.mu.Unlock()
	return h.impl.hostKey
}

func (h *Host) writeSSHDConfig() error {
	lines := []string{
		"Port 22",
		"ListenAddress " + h.IP,
		"HostKey " + filepath.Join(h.Dir, "ssh_host_ed25519_key"),
		"AuthorizedKeysFile " + filepath.Join(h.lab.Dir, "authorized_keys"),
		"PidFile none",
		// Root's password is locked on these machines; key login as root
		// then needs PAM's account handling.
		"UsePAM yes",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		// The keys live under the test's temp directory, below /tmp.
		"StrictModes no",
		"LogLevel VERBOSE",
		"Subsystem sftp " + sftpServerPath,
		"MaxStartups 200",
		"MaxSessions 50",
		"UseDNS no",
		// A Mac's non-interactive SSH sessions get this PATH. SHLVL keeps
		// bash from sourcing root's ~/.bashrc for every command.
		"SetEnv PATH=" + macPATH + " SHLVL=1",
	}
	return writeFile(filepath.Join(h.Dir, "sshd_config"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// pamSSHD replaces Debian's PAM stack for sshd inside a host: key logins
// need PAM only for the account check of root's locked password, and
// Debian's session modules (motd scripts, systemd, limits) cost a few process
// starts per SSH command and have no counterpart on a Mac.
const pamSSHD = `# vzfleet simulated Mac host (test/harness/machost)
auth     required pam_deny.so
account  required pam_nologin.so
account  required pam_unix.so
password required pam_deny.so
session  required pam_unix.so
`

// bootConfig is hack/macsim/internal/boot.Config.
type bootConfig struct {
	Hostname           string        `json:"hostname"`
	Mounts             []bootMount   `json:"mounts"`
	LaunchdSocket      string        `json:"launchdSocket"`
	LaunchdStateDir    string        `json:"launchdStateDir"`
	LaunchdLog         string        `json:"launchdLog"`
	LaunchdThrottle    time.Duration `json:"launchdThrottle"`
	LaunchdExitTimeout time.Duration `json:"launchdExitTimeout"`
	LaunchdLoadDirs    []string      `json:"launchdLoadDirs,omitempty"`
}

type bootMount struct {
	Kind   string   `json:"kind"`
	Source string   `json:"source,omitempty"`
	Target string   `json:"target"`
	Lower  []string `json:"lower,omitempty"`
}

// boot starts the host's `macsim boot` (mounts, host name, launchd) in its
// namespaces and waits for launchd to answer.
func (h *Host) boot(ctx context.Context) error {
	impl := h.lab.impl
	cfg := bootConfig{
		Hostname:           h.Name,
		LaunchdSocket:      MacsimDir + "/launchd.sock",
		LaunchdStateDir:    MacsimDir + "/launchd",
		LaunchdLog:         MacsimDir + "/launchd.log",
		LaunchdThrottle:    impl.opts.LaunchdThrottle,
		LaunchdExitTimeout: impl.opts.LaunchdExitTimeout,
		LaunchdLoadDirs:    []string{"/Library/LaunchDaemons"},
	}
	for _, d := range h.privateDirs {
		cfg.Mounts = append(cfg.Mounts, bootMount{Kind: "bind", Source: filepath.Join(h.Root, d), Target: d})
	}
	cfg.Mounts = append(cfg.Mounts, impl.overlays...)
	cfg.Mounts = append(cfg.Mounts,
		bootMount{Kind: "bind", Source: filepath.Join(h.Dir, "etc", "group"), Target: "/etc/group"},
		bootMount{Kind: "bind", Source: filepath.Join(h.Dir, "etc", "hosts"), Target: "/etc/hosts"},
		bootMount{Kind: "bind", Source: filepath.Join(h.Dir, "etc", "pam-sshd"), Target: "/etc/pam.d/sshd"})
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(h.Dir, "boot.json")
	if err := writeFile(cfgPath, b, 0o644); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(h.Root, MacsimDir, "launchd.sock"))
	p, err := harness.StartProcess("macsim-boot-"+h.Name, filepath.Join(h.Dir, "boot.log"), "ip",
		[]string{"netns", "exec", h.Namespace, "unshare", "--mount", "--uts", "--propagation", "private",
			impl.macsim, "boot", "--config", cfgPath}, nil)
	if err != nil {
		return fmt.Errorf("machost: %s: %w", h.Name, err)
	}
	h.impl.mu.Lock()
	h.impl.boot = p
	h.impl.mu.Unlock()
	sock := launchdSocket(p.Pid())
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := launchdCall(sock, []string{"version"}); err == nil {
			return nil
		}
		if exited, werr := p.Exited(); exited {
			return fmt.Errorf("machost: %s: macsim boot exited (%v); log %s:\n%s", h.Name, werr, p.LogPath, p.Tail(20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("machost: %s: launchd did not answer on %s; log %s:\n%s", h.Name, sock, p.LogPath, p.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// commandOverlays lays the macsim stand-ins over the directories where macOS
// keeps them (/usr/bin/sw_vers, /bin/launchctl, /usr/sbin/sysctl, ...) with
// read-only overlay mounts: the machine's own commands stay visible below.
func commandOverlays(macsim string) ([]bootMount, error) {
	layerRoot := filepath.Join(filepath.Dir(macsim), "layers")
	byDir := map[string]bool{}
	var mounts []bootMount
	for name, dir := range macsimCommands {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return nil, fmt.Errorf("machost: %s: %w", dir, err)
		}
		layer := filepath.Join(layerRoot, real)
		if err := os.MkdirAll(layer, 0o755); err != nil {
			return nil, err
		}
		link := filepath.Join(layer, name)
		if target, err := os.Readlink(link); err != nil || target != macsim {
			_ = os.Remove(link)
			if err := os.Symlink(macsim, link); err != nil {
				return nil, err
			}
		}
		if !byDir[real] {
			byDir[real] = true
			mounts = append(mounts, bootMount{Kind: "overlay", Target: real, Lower: []string{layer, real}})
		}
	}
	return mounts, nil
}

// macsimCommands mirrors hack/macsim's Commands: each stand-in and the
// directory it lives in on a Mac.
var macsimCommands = map[string]string{
	"sw_vers": "/usr/bin", "uname": "/usr/bin", "codesign": "/usr/bin", "plutil": "/usr/bin",
	"sysctl": "/usr/sbin", "scutil": "/usr/sbin", "launchctl": "/bin",
}

func (h *Host) bootPID() (int, error) {
	h.impl.mu.Lock()
	defer h.impl.mu.Unlock()
	if h.impl.boot == nil {
		return 0, fmt.Errorf("machost: %s is not booted", h.Name)
	}
	if exited, err := h.impl.boot.Exited(); exited {
		return 0, fmt.Errorf("machost: %s: its launchd exited (%v); log %s", h.Name, err, h.impl.boot.LogPath)
	}
	return h.impl.boot.Pid(), nil
}

// Start starts the host's sshd (again, after Stop) and waits until it
// answers.
func (h *Host) Start() error {
	pid, err := h.bootPID()
	if err != nil {
		return err
	}
	h.impl.mu.Lock()
	running := h.impl.sshd != nil
	h.impl.mu.Unlock()
	if running {
		return nil
	}
	p, err := harness.StartProcess("sshd-"+h.Name, filepath.Join(h.Dir, "sshd.log"), "nsenter",
		[]string{"-t", strconv.Itoa(pid), "-m", "-u", "-n", "--", sshdPath, "-D", "-e", "-f", filepath.Join(h.Dir, "sshd_config")}, nil)
	if err != nil {
		return fmt.Errorf("machost: %s: %w", h.Name, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !sshReady(h.Address) {
		if exited, werr := p.Exited(); exited {
			return fmt.Errorf("machost: %s: sshd exited (%v); log %s:\n%s", h.Name, werr, p.LogPath, p.Tail(20))
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("machost: %s: sshd did not answer on %s within 15s; log %s:\n%s", h.Name, h.Address, p.LogPath, p.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.impl.mu.Lock()
	h.impl.sshd = p
	h.impl.mu.Unlock()
	return nil
}

// Stop kills the host's sshd and every SSH connection it serves, as if the
// host went down; services under its launchd keep running. Stopping a
// stopped host does nothing.
func (h *Host) Stop() {
	h.impl.mu.Lock()
	p := h.impl.sshd
	h.impl.sshd = nil
	h.impl.mu.Unlock()
	if p == nil {
		return
	}
	pid := p.Pid()
	// Freeze the listener so it accepts nothing new, then kill its
	// descendants: each connection runs in its own session, out of reach
	// of a process-group kill.
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	for _, c := range harness.Descendants(pid) {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	p.Stop()
}

// Reboot restarts the whole host: sshd and launchd stop (launchd stops its
// jobs with SIGTERM, then SIGKILL after their exit timeout), then the host
// boots again, launchd loads /Library/LaunchDaemons as a Mac does at boot,
// and sshd starts. The host keeps its files and address.
func (h *Host) Reboot(ctx context.Context) error {
	h.Stop()
	h.impl.mu.Lock()
	p := h.impl.boot
	h.impl.boot = nil
	h.impl.mu.Unlock()
	if p != nil {
		p.Stop()
	}
	// Whatever the host's programs left behind (a process that made itself
	// a session leader escapes launchd's group kill) goes down with it.
	if out, err := exec.Command("ip", "netns", "pids", h.Namespace).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := h.boot(ctx); err != nil {
		return err
	}
	return h.Start()
}

// Running reports whether the host's sshd is running.
func (h *Host) Running() bool {
	h.impl.mu.Lock()
	defer h.impl.mu.Unlock()
	return h.impl.sshd != nil
}

// RotateHostKey gives the host a new SSH host key and restarts its sshd, as
// a reinstalled host (or a man in the middle) would present.
func (h *Host) RotateHostKey() error {
	h.Stop()
	if err := h.newHostKey(); err != nil {
		return err
	}
	return h.Start()
}

// CutConnections kills every SSH connection the host serves (the processes
// of each session, including sftp-server) while sshd keeps accepting new
// ones. It returns how many processes it killed.
func (h *Host) CutConnections() int {
	h.impl.mu.Lock()
	p := h.impl.sshd
	h.impl.mu.Unlock()
	if p == nil {
		return 0
	}
	kids := harness.Descendants(p.Pid())
	for _, c := range kids {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	return len(kids)
}

// SetLinkDown takes the host's network link down (true) or up again, as a
// pulled cable: connections hang instead of being refused.
func (h *Host) SetLinkDown(down bool) error {
	state := "up"
	if down {
		state = "down"
	}
	return run("ip", "link", "set", h.impl.veth, state)
}

// LimitBandwidth caps traffic towards the host (uploads) at kbit kilobits
// per second, so a test can act in the middle of a transfer; 0 removes the
// cap. It needs tc (iproute2).
func (h *Host) LimitBandwidth(kbit int) error {
	if kbit <= 0 {
		err := run("tc", "qdisc", "del", "dev", h.impl.veth, "root")
		if err != nil && strings.Contains(err.Error(), "No such file") {
			return nil
		}
		return err
	}
	return run("tc", "qdisc", "replace", "dev", h.impl.veth, "root", "tbf",
		"rate", fmt.Sprintf("%dkbit", kbit), "burst", "16kb", "latency", "500ms")
}

// Command prepares a command that runs inside the host — its network, mount
// view and host name — without SSH, with a Mac's PATH.
func (h *Host) Command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	pid, err := h.bootPID()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(pid), "-m", "-u", "-n", "--", name}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/bin:" + macPATH, "HOME=/var/root", "LANG=C"}
	return cmd, nil
}

// Launchctl runs a launchctl command on the host (through its launchd's
// socket, without SSH) and returns what it printed and its exit code.
func (h *Host) Launchctl(args ...string) (stdout, stderr string, code int, err error) {
	pid, err := h.bootPID()
	if err != nil {
		return "", "", 0, err
	}
	r, err := launchdCall(launchdSocket(pid), args)
	if err != nil {
		return "", "", 0, fmt.Errorf("machost: %s: %w", h.Name, err)
	}
	return r.Stdout, r.Stderr, r.Exit, nil
}

// SSHLog returns what the host's sshd logged (all runs).
func (h *Host) SSHLog() string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, "sshd.log"))
	return string(b)
}

// LaunchdLog returns what the host's launchd logged: jobs spawned, exits,
// and why a bootstrap failed.
func (h *Host) LaunchdLog() string {
	b, _ := os.ReadFile(h.Path(MacsimDir + "/launchd.log"))
	return string(b)
}

// launchdRequest and launchdResponse are the wire format of macsim's
// launchd (hack/macsim/internal/launchd): one JSON request, one answer.
type launchdRequest struct {
	Args []string `json:"args"`
	Cwd  string   `json:"cwd"`
}

type launchdResponse struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Exit   int    `json:"exit"`
}

// launchdSocket reaches a host's launchd socket through its boot process's
// view of the filesystem: short enough for a unix socket address (108
// bytes) however deep the lab directory is.
func launchdSocket(bootPID int) string {
	return fmt.Sprintf("/proc/%d/root%s/launchd.sock", bootPID, MacsimDir)
}

func launchdCall(sock string, args []string) (launchdResponse, error) {
	var r launchdResponse
	conn, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return r, err
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(launchdRequest{Args: args, Cwd: "/"}); err != nil {
		return r, err
	}
	err = json.NewDecoder(conn).Decode(&r)
	return r, err
}

func sshReady(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 8)
	n, _ := conn.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("SSH-"))
}

func newKey(comment string) ([]byte, ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(block), signer, nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// run runs a setup command and returns its output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
