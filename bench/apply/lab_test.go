package apply

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/inventory"
	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/machost"
)

// binaries are fleetctl and vz-node built once for every benchmark, the
// way `make build` builds them (-trimpath, stripped).
type binaries struct {
	fleetctl, vzNode string
}

var (
	binOnce sync.Once
	bins    binaries
	binErr  error
)

const benchVersion = "v0.1.0-bench"

func buildBinaries(b *testing.B) binaries {
	b.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vzfleet-bench-apply-bin-")
		if err != nil {
			binErr = err
			return
		}
		build := func(name, pkg string) string {
			out := filepath.Join(dir, name)
			err := harness.GoBuild(context.Background(), out, pkg, "-trimpath", "-ldflags",
				"-s -w -X github.com/vzfleet/vzfleet/internal/version.Version="+benchVersion)
			binErr = errors.Join(binErr, err)
			return out
		}
		bins = binaries{fleetctl: build("fleetctl", "./cmd/fleetctl"), vzNode: build("vz-node", "./cmd/vz-node")}
	})
	if binErr != nil {
		b.Fatal(binErr)
	}
	return bins
}

// fixture is a control plane, N simulated Macs and an inventory naming
// them, every host applied with the whole fleet at once (concurrency and
// maxUnavailable N).
type fixture struct {
	b         *testing.B
	dir       string
	bins      binaries
	cp        *harness.ControlPlane
	lab       *machost.Lab
	inventory string
	hosts     []inventory.Host
	// installed holds, per host, the files a cold apply installed (the
	// binary as sent, before it was signed on the host): the bytes every
	// reference uploads too.
	installed map[string][]hostFile
	// lastCPU is the CPU time the last fleetctl run used.
	lastCPU time.Duration
	// muxDir is where fleetctl's SSH mux keeps its socket.
	muxDir string
}

// hostFile is one file as fleetctl installs it.
type hostFile struct {
	Path    string
	Content []byte
	Mode    os.FileMode
}

func startFixture(b *testing.B, n int) *fixture {
	b.Helper()
	harness.RequireRoot(b)
	f := &fixture{b: b, dir: b.TempDir(), bins: buildBinaries(b)}
	muxBase, err := os.MkdirTemp("", "vzb") // short: the socket's path must fit
	if err != nil {
		b.Fatal(err)
	}
	f.muxDir = filepath.Join(muxBase, "ssh")
	b.Cleanup(func() {
		f.stopMux()
		os.RemoveAll(muxBase)
	})
	f.cp = harness.ControlPlaneT(b, harness.ControlPlaneOptions{ControllerManager: true})
	var hosts []machost.HostOptions
	for i := range n {
		hosts = append(hosts, machost.HostOptions{Name: fmt.Sprintf("mac-%02d", i+1)})
	}
	f.lab = machost.LabT(b, machost.LabOptions{Hosts: hosts, Log: func(string, ...any) {}})
	u, err := url.Parse(f.cp.URL)
	if err != nil {
		b.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	if err := f.lab.ForwardLoopback(port); err != nil {
		b.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "guest")
	if err != nil {
		b.Fatal(err)
	}
	guestKey := filepath.Join(f.dir, "guest_ed25519")
	if err := os.WriteFile(guestKey, pem.EncodeToMemory(block), 0o600); err != nil {
		b.Fatal(err)
	}
	var inv strings.Builder
	fmt.Fprintf(&inv, `apiVersion: vzfleet.dev/v1alpha1
kind: Inventory
defaults:
  ssh:
    user: %s
    identityFile: %s
    knownHostsFile: %s
    sudo: false
    connectTimeout: 10s
  node:
    driver: sim
    labels:
      vzfleet.dev/pool: bench
  cluster:
    operatorKubeconfig: %s
    nodeCredentials:
      csr: true
  guestSSH:
    user: admin
    privateKey: {file: %s}
rollout:
  concurrency: %d
  maxUnavailable: %d
  readyTimeout: 3m
hosts:
`, f.lab.User, f.lab.ClientKeyFile, f.lab.KnownHostsFile, f.cp.AdminKubeconfig, guestKey, n, n)
	for _, h := range f.lab.Hosts {
		fmt.Fprintf(&inv, "  - name: %s\n    ssh:\n      address: %s\n", h.Name, h.IP)
	}
	f.inventory = filepath.Join(f.dir, "inventory.yaml")
	if err := os.WriteFile(f.inventory, []byte(inv.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	loaded, err := inventory.Load(f.inventory)
	if err != nil {
		b.Fatal(err)
	}
	f.hosts = loaded.Hosts
	return f
}

// fleetctl runs fleetctl and returns its output; a non-zero exit fails
// the benchmark. fleetctl's CPU time is kept in lastCPU.
func (f *fixture) fleetctl(args ...string) string {
	f.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bins.fleetctl, append(args, "--ssh-config", "none", "--min-free-disk", "1")...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "VZFLEET_SSH_MUX_DIR="+f.muxDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		f.b.Fatalf("fleetctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	f.lastCPU = processCPU(cmd.ProcessState)
	return string(out)
}

// processCPU is the user and system time a finished process and the
// children it waited for used.
func processCPU(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
}

func (f *fixture) apply(args ...string) string {
	return f.fleetctl(append([]string{"apply", "-f", f.inventory, "--vz-node", f.bins.vzNode}, args...)...)
}

// stopMux stops fleetctl's SSH mux (fleetctl ssh-mux stop), closing the
// connections it keeps, and waits until it has exited.
func (f *fixture) stopMux() {
	cmd := exec.Command(f.bins.fleetctl, "ssh-mux", "stop")
	cmd.Env = append(os.Environ(), "VZFLEET_SSH_MUX_DIR="+f.muxDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		f.b.Fatalf("fleetctl ssh-mux stop: %v\n%s", err, out)
	}
	for len(f.muxPids()) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) muxPids() []int {
	return harness.ProcessesRunning("ssh-mux", "serve", "--dir", f.muxDir)
}

// muxCPU is the CPU time fleetctl's SSH mux has used so far: the part of
// the client side fleetctl's own figures leave out.
func (f *fixture) muxCPU() time.Duration {
	var cpu time.Duration
	for _, pid := range f.muxPids() {
		cpu += harness.ProcessCPU(pid)
	}
	return cpu
}

// managed lists the files fleetctl installs on h (fleet's layout).
func managed(h inventory.Host) []hostFile {
	p := h.Paths
	return []hostFile{
		{Path: p.Entitlements(), Mode: 0o644},
		{Path: path.Join(p.ConfigDir, "vz-node.yaml"), Mode: 0o644},
		{Path: path.Join(p.ConfigDir, "ca.crt"), Mode: 0o644},
		{Path: p.Kubeconfig(), Mode: 0o600},
		{Path: p.ServingCert(), Mode: 0o644},
		{Path: p.ServingKey(), Mode: 0o600},
		{Path: p.GuestSSHKey(), Mode: 0o600},
		{Path: p.Binary, Mode: 0o755},
		{Path: p.Plist, Mode: 0o644},
	}
}

// capture records what the cold apply installed on every host, with the
// local (unsigned) binary in place of the host's signed copy.
func (f *fixture) capture() {
	f.b.Helper()
	binary, err := os.ReadFile(f.bins.vzNode)
	if err != nil {
		f.b.Fatal(err)
	}
	f.installed = map[string][]hostFile{}
	for i, h := range f.hosts {
		lh := f.lab.Hosts[i]
		for _, mf := range managed(h) {
			if mf.Path == h.Paths.Binary {
				mf.Content = binary
			} else if mf.Content, err = os.ReadFile(lh.Path(mf.Path)); err != nil {
				f.b.Fatalf("%s: %v", h.Name, err)
			}
			f.installed[h.Name] = append(f.installed[h.Name], mf)
		}
	}
}

// bytesPerHost is what every reference uploads to one host.
func (f *fixture) bytesPerHost() int64 {
	var n int64
	for _, mf := range f.installed[f.hosts[0].Name] {
		n += int64(len(mf.Content))
	}
	return n
}

// reset stops vz-node on every host, removes everything an apply (or a
// reference) installed and deletes the nodes, so the next run is cold.
func (f *fixture) reset() {
	f.b.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(f.hosts))
	for i, h := range f.hosts {
		lh := f.lab.Hosts[i]
		wg.Go(func() {
			_, _, _, _ = lh.Launchctl("bootout", "system/"+h.Paths.LaunchdLabel)
			p := h.Paths
			for _, dir := range []string{path.Dir(p.Binary), path.Dir(p.Plist)} {
				entries, _ := os.ReadDir(lh.Path(dir))
				for _, e := range entries {
					errs[i] = errors.Join(errs[i], os.RemoveAll(filepath.Join(lh.Path(dir), e.Name())))
				}
			}
			for _, dir := range []string{p.ConfigDir, p.StateDir, path.Dir(p.Log)} {
				errs[i] = errors.Join(errs[i], os.RemoveAll(lh.Path(dir)))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.b.Fatal(err)
	}
	f.stopMux() // a cold apply connects anew
	ctx := context.Background()
	if err := f.cp.Client.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		f.b.Fatal(err)
	}
	if err := f.cp.Client.CertificatesV1().CertificateSigningRequests().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		f.b.Fatal(err)
	}
}
