// Package vznode runs the real vz-node binary (sim driver) against a
// harness control plane, for end-to-end tests and benchmarks: built once per
// process, with a serving certificate from the cluster CA, client
// certificates verified against it, a node credential of its own, and
// guests that accept admin/admin over SSH (the password read from a 0600
// file, as fleetctl apply installs it).
package vznode

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vzfleet/vzfleet/node"
	"github.com/vzfleet/vzfleet/node/supervisor"
	"github.com/vzfleet/vzfleet/test/harness"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// Build builds cmd/vz-node once per process and returns the binary.
func Build() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vz-node-build-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "vz-node")
		buildErr = harness.GoBuild(context.Background(), builtBin, "./cmd/vz-node")
	})
	return builtBin, buildErr
}

// Options choose how a Node runs.
type Options struct {
	// Name is the node name.
	Name string
	// IP is the kubelet API's address and the node's InternalIP
	// (default 127.0.0.1).
	IP net.IP
	// BootDelay is how long a simulated guest takes to boot (default
	// 300ms).
	BootDelay time.Duration
	// Args are extra vz-node flags, after the defaults (so they win).
	Args []string
	// Env are extra NAME=value variables for vz-node (e.g. DOCKER_HOST).
	Env []string
}

// Node is one vz-node process registered with a control plane.
type Node struct {
	Name     string
	IP       net.IP
	Port     int
	Bin      string
	LogPath  string
	StateDir string
	CacheDir string
	Proc     *harness.Process

	args []string
	env  []string
}

// Start runs vz-node in dir (which the caller removes) and returns once the
// process is started; the node registers shortly after.
func Start(cp *harness.ControlPlane, dir string, opts Options) (*Node, error) {
	bin, err := Build()
	if err != nil {
		return nil, err
	}
	if opts.IP == nil {
		opts.IP = net.ParseIP("127.0.0.1")
	}
	if opts.BootDelay == 0 {
		opts.BootDelay = 300 * time.Millisecond
	}
	kubeconfig, _, err := cp.NodeKubeconfig(opts.Name)
	if err != nil {
		return nil, err
	}
	serving, err := cp.KubeletServingCert(opts.Name, opts.IP)
	if err != nil {
		return nil, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	passwordFile := filepath.Join(dir, "guest-ssh-password")
	if err := os.WriteFile(passwordFile, []byte("admin\n"), 0o600); err != nil {
		return nil, err
	}
	n := &Node{
		Name: opts.Name, IP: opts.IP, Port: port, Bin: bin,
		StateDir: filepath.Join(dir, "state"), CacheDir: filepath.Join(dir, "cache"),
		LogPath: filepath.Join(dir, "vz-node.log"),
	}
	n.args = append([]string{
		"--nodename", opts.Name,
		"--driver", "sim",
		"--listen-address", net.JoinHostPort(opts.IP.String(), strconv.Itoa(port)),
		"--state-dir", n.StateDir,
		"--cache-dir", n.CacheDir,
		"--leases-file", filepath.Join(dir, "dhcpd_leases"),
		"--sim-boot-delay", opts.BootDelay.String(),
		"--reserve-cpu", "0",
		"--reserve-memory", "512Mi",
		"--startup-timeout", "60",
		"--condition-check-interval", "2s",
		"--log-level", "debug",
		"--sandbox-image", harness.PauseImage,
	}, opts.Args...)
	n.env = []string{
		"KUBECONFIG=" + kubeconfig,
		"APISERVER_CERT_LOCATION=" + serving.CertPath,
		"APISERVER_KEY_LOCATION=" + serving.KeyPath,
		"APISERVER_CA_CERT_LOCATION=" + cp.CA.CertPath,
		"VKUBELET_POD_IP=" + opts.IP.String(),
		"VZ_SSH_USER=admin",
		"VZ_SSH_PASSWORD_FILE=" + passwordFile,
	}
	n.env = append(n.env, opts.Env...)
	if err := n.AddImage(TestImage); err != nil {
		return nil, err
	}
	return n, n.Restart()
}

// TestImage is the VM image every Node has in its cache from the start.
const TestImage = "registry.local/macos-sim:15"

// AddImage puts a small VM image directory for ref into the node's cache
// (the sim boots any disk file).
func (n *Node) AddImage(ref string) error { return WriteImage(n.CacheDir, ref) }

// WriteImage writes a small VM image directory for ref under a vz-node
// cache directory.
func WriteImage(cacheDir, ref string) error {
	dir := node.LocalImageDir(cacheDir, ref)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	disk, err := os.Create(filepath.Join(dir, node.ImageDiskFile))
	if err != nil {
		return err
	}
	if err := disk.Truncate(64 << 20); err != nil {
		disk.Close()
		return err
	}
	if err := disk.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, node.ImageNVRAMFile), []byte("nvram"), 0o644); err != nil {
		return err
	}
	cfg := `{"version":1,"os":"darwin","arch":"arm64","cpuCount":1,"memorySize":2147483648,` +
		`"hardwareModel":"c2ltLWhhcmR3YXJlLW1vZGVs","ecid":"MTIzNDU2Nzg=","macAddress":"02:00:00:00:00:01","diskFormat":"raw"}`
	return os.WriteFile(filepath.Join(dir, node.ImageConfigFile), []byte(cfg), 0o644)
}

// Restart starts the vz-node process (again, after Kill9 or Stop).
func (n *Node) Restart() error {
	p, err := harness.StartProcess("vz-node-"+n.Name, n.LogPath, n.Bin, n.args, n.env)
	if err != nil {
		return err
	}
	n.Proc = p
	return nil
}

// Kill9 kills vz-node as a crash would: its VM supervisors live on.
func (n *Node) Kill9() error {
	if err := syscall.Kill(n.Proc.Pid(), syscall.SIGKILL); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if done, _ := n.Proc.Exited(); done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vz-node %s did not die on SIGKILL", n.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops vz-node and every VM supervisor it started (they run in their
// own sessions, outside the harness's process group).
func (n *Node) Stop() {
	n.Proc.Stop()
	ids, _ := supervisor.List(n.StateDir)
	for _, id := range ids {
		st, err := supervisor.ReadState(supervisor.Dir(n.StateDir, id))
		if err != nil || !supervisor.Alive(st.PID) {
			continue
		}
		_ = syscall.Kill(st.PID, syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for supervisor.Alive(st.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(st.PID, syscall.SIGKILL)
	}
}
