package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/machost"
)

// fleetLab is a real control plane, three simulated Macs and the built
// fleetctl and vz-node binaries.
type fleetLab struct {
	t           *testing.T
	cp          *harness.ControlPlane
	lab         *machost.Lab
	dir         string
	fleetctlBin string
	vzNode      map[string]string // version -> binary
	inventory   string
	knownHosts  string
	guestKey    []byte
	// nodeCredentials is the inventory's cluster.nodeCredentials value.
	nodeCredentials string
}

const (
	configDir  = "/Library/Application Support/vzfleet"
	binaryPath = "/usr/local/bin/vz-node"
)

var fleetHosts = []string{"mini-01", "mini-02", "mini-03"}

// forward makes addr ("127.0.0.1:port"), a service on the test's
// loopback, reachable at the same address on every simulated Mac.
func (fl *fleetLab) forward(addr string) {
	fl.t.Helper()
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		fl.t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fl.t.Fatalf("port of %s: %v", addr, err)
	}
	if err := fl.lab.ForwardLoopback(port); err != nil {
		fl.t.Fatal(err)
	}
}

func startFleetLab(t *testing.T) *fleetLab {
	t.Helper()
	harness.RequireRoot(t)
	fl := &fleetLab{t: t, dir: t.TempDir(), vzNode: map[string]string{}, nodeCredentials: "csr: true"}
	fl.cp = harness.ControlPlaneT(t, harness.ControlPlaneOptions{ControllerManager: true})
	var hosts []machost.HostOptions
	for _, n := range fleetHosts {
		hosts = append(hosts, machost.HostOptions{Name: n})
	}
	fl.lab = machost.LabT(t, machost.LabOptions{Hosts: hosts})
	u, err := url.Parse(fl.cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	fl.forward(u.Host)
	fl.knownHosts = filepath.Join(fl.dir, "known_hosts")
	if err := fl.lab.WriteKnownHosts(fl.knownHosts); err != nil {
		t.Fatal(err)
	}
	fl.fleetctlBin = fl.build("fleetctl", "./cmd/fleetctl", "v0.0.0-e2e")
	for _, v := range []string{"v0.1.0-e2e", "v0.2.0-e2e"} {
		fl.vzNode[v] = fl.build("vz-node-"+v, "./cmd/vz-node", v)
	}
	// A vz-node that answers `version` but never registers its node.
	broken := filepath.Join(fl.dir, "vz-node-broken")
	script := "#!/bin/sh\nif [ \"$1\" = version ]; then echo '{\"version\": \"v0.3.0-broken\"}'; exit 0; fi\nexec sleep 100000\n"
	if err := os.WriteFile(broken, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	fl.vzNode["broken"] = broken

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "guest")
	if err != nil {
		t.Fatal(err)
	}
	fl.guestKey = pem.EncodeToMemory(block)
	if err := os.WriteFile(filepath.Join(fl.dir, "guest_ed25519"), fl.guestKey, 0o600); err != nil {
		t.Fatal(err)
	}
	fl.writeInventory(nil)
	return fl
}

// labImage is a generated VM pushed to a registry every simulated Mac
// reaches (through the forwarded loopback).
type labImage struct {
	registry string // host:port
	vm       string // the directory pushed
	ref      string
	pushed   string // what push printed: the reference by digest
}

// pushTestVM generates a VM with a disk of size bytes and pushes it to a
// new harness registry as repoTag ("e2e/name:tag").
func (fl *fleetLab) pushTestVM(repoTag string, size int64) labImage {
	t := fl.t
	t.Helper()
	reg := harness.RegistryT(t)
	fl.forward(reg.Addr)
	img := labImage{registry: reg.Addr, vm: filepath.Join(fl.dir, "vm"), ref: reg.Addr + "/" + repoTag}
	makeTestVM(t, img.vm, size)
	out, _ := mustRun(t, 2*time.Minute, fl.fleetctlBin, "image", "push", img.vm, img.ref, "--chunk-size", "8388608")
	img.pushed = strings.TrimSpace(out)
	return img
}

func (fl *fleetLab) build(name, pkg, version string) string {
	fl.t.Helper()
	out := filepath.Join(fl.dir, name)
	if err := harness.GoBuild(fl.t.Context(), out, pkg, "-ldflags", "-X github.com/vzfleet/vzfleet/internal/version.Version="+version); err != nil {
		fl.t.Fatal(err)
	}
	return out
}

// sudoHost elevates with `sudo -n`, as an admin account on a Mac does:
// root's files reach it over SFTP served by sftp-server run through sudo.
// The other lab hosts take the connecting user (root) as it is.
const sudoHost = "mini-03"

// writeInventory writes the lab's inventory; extra adds YAML to a host's
// entry (by name).
func (fl *fleetLab) writeInventory(extra map[string]string) {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: vzfleet.dev/v1alpha1
kind: Inventory
defaults:
  ssh:
    user: %s
    identityFile: %s
    knownHostsFile: %s
    sudo: false
    connectTimeout: 5s
  node:
    driver: sim
    labels:
      vzfleet.dev/pool: ci
    taints:
      - vzfleet.dev/macos=true:NoSchedule
  cluster:
    operatorKubeconfig: %s
    nodeCredentials:
      %s
  guestSSH:
    user: admin
    privateKey: {file: %s}
rollout:
  concurrency: 3
  maxUnavailable: 3
  readyTimeout: 90s
hosts:
`, fl.lab.User, fl.lab.ClientKeyFile, fl.knownHosts, fl.cp.AdminKubeconfig, fl.nodeCredentials, filepath.Join(fl.dir, "guest_ed25519"))
	for _, h := range fl.lab.Hosts {
		fmt.Fprintf(&b, "  - name: %s\n    ssh:\n      address: %s\n", h.Name, h.IP)
		if h.Name == sudoHost {
			b.WriteString("      sudo: true\n")
		}
		if e := extra[h.Name]; e != "" {
			b.WriteString(e)
		}
	}
	fl.inventory = filepath.Join(fl.dir, "inventory.yaml")
	if err := os.WriteFile(fl.inventory, []byte(b.String()), 0o644); err != nil {
		fl.t.Fatal(err)
	}
}

// fleetctl runs fleetctl and returns its combined output and exit code.
func (fl *fleetLab) fleetctl(args ...string) (string, int) {
	fl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fl.fleetctlBin, append(args, "--ssh-config", "none", "--min-free-disk", "1")...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		fl.t.Fatalf("fleetctl %v: %v", args, err)
	}
	fl.t.Logf("$ fleetctl %s (exit %d)\n%s", strings.Join(args, " "), code, out.String())
	fl.checkNoSecrets(out.String())
	return out.String(), code
}

func (fl *fleetLab) apply(binary string, extra ...string) (string, int) {
	return fl.fleetctl(append([]string{"apply", "-f", fl.inventory, "--vz-node", fl.vzNode[binary]}, extra...)...)
}

// checkNoSecrets fails when output holds key material.
func (fl *fleetLab) checkNoSecrets(out string) {
	fl.t.Helper()
	secrets := []string{"PRIVATE KEY", string(bytes.Split(fl.guestKey, []byte("\n"))[1])}
	for _, h := range fl.lab.Hosts {
		if b, err := os.ReadFile(h.Path(configDir + "/kubeconfig")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "client-key-data") {
					secrets = append(secrets, strings.TrimSpace(strings.SplitN(line, ":", 2)[1]))
				}
			}
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			fl.t.Errorf("output contains secret material %.20q...", s)
		}
	}
}

// summaryLine returns the summary table line of a host.
func summaryLine(t *testing.T, out, host string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == host && f[1] == host {
			return l
		}
	}
	t.Fatalf("no summary line for %s in:\n%s", host, out)
	return ""
}

func (fl *fleetLab) node(name string) *corev1.Node {
	fl.t.Helper()
	n, err := fl.cp.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		fl.t.Fatalf("node %s: %v", name, err)
	}
	return n
}

func (fl *fleetLab) assertNodeReady(name, version string) *corev1.Node {
	fl.t.Helper()
	n := fl.node(name)
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	}
	if !ready || n.Status.NodeInfo.ContainerRuntimeVersion != "vz://"+version {
		fl.t.Errorf("node %s: ready=%v runtime %q, want Ready on vz://%s", name, ready, n.Status.NodeInfo.ContainerRuntimeVersion, version)
	}
	return n
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return st.Mode().Perm()
}

// The whole life of a fleet, in order: every step builds on the previous
// one's hosts, as an operator's would.
func TestFleetApply(t *testing.T) {
	fl := startFleetLab(t)

	t.Run("doctor explains failed checks", func(t *testing.T) {
		out, code := fl.fleetctl("doctor", fl.inventory)
		if code != 0 || !strings.Contains(out, "all 3 hosts pass the preflight checks") {
			t.Errorf("doctor on good hosts: exit %d", code)
		}
		out, code = fl.fleetctl("doctor", fl.inventory, "--min-macos", "99.0", "--limit", "mini-01")
		if code == 0 || !strings.Contains(out, "✗ macos") || !strings.Contains(out, "macOS 99.0 or newer is needed") {
			t.Errorf("doctor with an unmet requirement: exit %d", code)
		}
	})

	t.Run("plan before anything is installed changes nothing", func(t *testing.T) {
		out, code := fl.fleetctl("plan", fl.inventory, "--vz-node", fl.vzNode["v0.1.0-e2e"])
		if code != 0 || !strings.Contains(out, "+ binary /usr/local/bin/vz-node") || !strings.Contains(out, "would change") {
			t.Fatalf("plan: exit %d", code)
		}
		if _, err := os.Stat(fl.lab.Hosts[0].Path(binaryPath)); !os.IsNotExist(err) {
			t.Errorf("plan installed the binary: %v", err)
		}
	})

	t.Run("cold apply: three Ready nodes with the inventory's labels and taints", func(t *testing.T) {
		out, code := fl.apply("v0.1.0-e2e")
		if code != 0 {
			t.Fatalf("apply exited %d", code)
		}
		for _, h := range fleetHosts {
			if l := summaryLine(t, out, h); !strings.Contains(l, "changed") {
				t.Errorf("summary: %s", l)
			}
			n := fl.assertNodeReady(h, "v0.1.0-e2e")
			if n.Labels["vzfleet.dev/pool"] != "ci" || !hasTaint(n, "vzfleet.dev/macos") {
				t.Errorf("node %s: labels %v taints %v", h, n.Labels, n.Spec.Taints)
			}
		}
	})

	t.Run("each node acts as itself: a minted system:node identity", func(t *testing.T) {
		for _, h := range fl.lab.Hosts {
			b, err := os.ReadFile(h.Path(configDir + "/kubeconfig"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := clientcmd.Load(b)
			if err != nil {
				t.Fatal(err)
			}
			for _, ai := range cfg.AuthInfos {
				block, _ := pem.Decode(ai.ClientCertificateData)
				if block == nil {
					t.Fatalf("%s: kubeconfig holds no client certificate", h.Name)
				}
				cert, err := x509.ParseCertificate(block.Bytes)
				if err != nil || cert.Subject.CommonName != "system:node:"+h.Name {
					t.Errorf("%s: node credential is %v (%v), want system:node:%s", h.Name, cert.Subject, err, h.Name)
				}
			}
		}
	})

	t.Run("secrets are 0600 on the hosts", func(t *testing.T) {
		for _, h := range fl.lab.Hosts {
			for _, f := range []string{"kubeconfig", "guest-ssh-key", "kubelet-serving.key"} {
				if m := fileMode(t, h.Path(configDir+"/"+f)); m != 0o600 {
					t.Errorf("%s: %s has mode %04o, want 0600", h.Name, f, m)
				}
			}
			if m := fileMode(t, h.Path("/Library/LaunchDaemons/dev.vzfleet.vz-node.plist")); m != 0o644 {
				t.Errorf("%s: plist mode %04o", h.Name, m)
			}
		}
	})

	t.Run("re-apply: no changes, over the connections the last run kept", func(t *testing.T) {
		logins := func() (n int) {
			for _, h := range fl.lab.Hosts {
				n += strings.Count(h.SSHLog(), "Accepted publickey")
			}
			return n
		}
		before := logins()
		start := time.Now()
		out, code := fl.apply("v0.1.0-e2e")
		if code != 0 || !strings.Contains(out, "no changes: all 3 hosts are up to date; nothing uploaded, nothing restarted") {
			t.Fatalf("re-apply: exit %d", code)
		}
		if strings.Contains(out, "installed ") || strings.Contains(out, "launchctl") {
			t.Error("re-apply installed or restarted something")
		}
		t.Logf("no-op re-apply of 3 hosts took %s", time.Since(start))
		if n := logins() - before; n != 0 {
			t.Errorf("the re-apply logged in %d times; it should have borrowed the connections the SSH mux kept", n)
		}
		list, err := exec.Command(fl.fleetctlBin, "ssh-mux", "status", "-o", "json").Output()
		if err != nil {
			t.Fatalf("fleetctl ssh-mux status: %v", err)
		}
		var conns []struct {
			Host     string
			Lent, Up bool
		}
		if err := json.Unmarshal(list, &conns); err != nil {
			t.Fatal(err)
		}
		if len(conns) != 3 || conns[0].Host != "mini-01" || conns[2].Host != "mini-03" || conns[0].Lent || !conns[0].Up {
			t.Errorf("the SSH mux holds %+v, want mini-01..03, connected and idle", conns)
		}
		out, code = fl.apply("v0.1.0-e2e", "--ssh-persist", "0")
		if code != 0 || !strings.Contains(out, "no changes") {
			t.Fatalf("re-apply with --ssh-persist 0: exit %d", code)
		}
		if n := logins() - before; n != 3 {
			t.Errorf("with --ssh-persist 0 the re-apply logged in %d times, want once per host", n)
		}
	})

	t.Run("one label changes: only that host's node", func(t *testing.T) {
		fl.writeInventory(map[string]string{"mini-02": "    node:\n      labels:\n        rack: b\n"})
		out, code := fl.apply("v0.1.0-e2e")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		if l := summaryLine(t, out, "mini-02"); !strings.Contains(l, "changed") || strings.Contains(l, "kickstart") || strings.Contains(l, "reload") {
			t.Errorf("mini-02: %s", l)
		}
		for _, h := range []string{"mini-01", "mini-03"} {
			if l := summaryLine(t, out, h); !strings.Contains(l, "unchanged") {
				t.Errorf("%s: %s", h, l)
			}
		}
		if n := fl.node("mini-02"); n.Labels["rack"] != "b" || n.Labels["vzfleet.dev/pool"] != "ci" {
			t.Errorf("mini-02 labels: %v", n.Labels)
		}
		if _, ok := fl.node("mini-01").Labels["rack"]; ok {
			t.Error("mini-01 got mini-02's label")
		}
	})

	t.Run("new binary: kickstart only", func(t *testing.T) {
		out, code := fl.apply("v0.2.0-e2e", "--limit", "mini-01")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		if !strings.Contains(out, "launchctl kickstart") || strings.Contains(out, "launchctl reload") {
			t.Error("a binary-only change must kickstart, not reload")
		}
		if strings.Contains(out, "installed plist") || strings.Contains(out, "installed config") {
			t.Error("files other than the binary were installed")
		}
		fl.assertNodeReady("mini-01", "v0.2.0-e2e")
		fl.assertNodeReady("mini-02", "v0.1.0-e2e")
	})

	t.Run("a binary that never becomes Ready is rolled back", func(t *testing.T) {
		out, code := fl.apply("broken", "--limit", "mini-01", "--ready-timeout", "20s")
		if code == 0 {
			t.Fatal("apply of a broken binary exited 0")
		}
		if l := summaryLine(t, out, "mini-01"); !strings.Contains(l, "ROLLED BACK") {
			t.Errorf("mini-01: %s", l)
		}
		fl.assertNodeReady("mini-01", "v0.2.0-e2e")
		got, err := os.ReadFile(fl.lab.Host("mini-01").Path(binaryPath))
		if err != nil || bytes.Contains(got, []byte("v0.3.0-broken")) {
			t.Errorf("the broken binary is still installed (%v)", err)
		}
	})

	t.Run("a host whose key changed fails, the others succeed", func(t *testing.T) {
		h := fl.lab.Host("mini-03")
		if err := h.RotateHostKey(); err != nil {
			t.Fatal(err)
		}
		out, code := fl.apply("v0.1.0-e2e", "--limit", "mini-02,mini-03")
		if code == 0 {
			t.Error("exit 0 with a changed host key")
		}
		if l := summaryLine(t, out, "mini-03"); !strings.Contains(l, "FAILED") || !strings.Contains(l, "HOST KEY CHANGED") {
			t.Errorf("mini-03: %s", l)
		}
		if l := summaryLine(t, out, "mini-02"); !strings.Contains(l, "unchanged") {
			t.Errorf("mini-02: %s", l)
		}
		if err := fl.lab.WriteKnownHosts(fl.knownHosts); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("one host down: the others succeed, exit non-zero", func(t *testing.T) {
		h := fl.lab.Host("mini-02")
		h.Stop()
		defer func() {
			if err := h.Start(); err != nil {
				t.Errorf("restarting mini-02: %v", err)
			}
		}()
		out, code := fl.apply("v0.1.0-e2e", "--limit", "mini-02,mini-03")
		if code == 0 {
			t.Error("exit 0 with a host down")
		}
		if l := summaryLine(t, out, "mini-02"); !strings.Contains(l, "FAILED") || !strings.Contains(l, "connect") {
			t.Errorf("mini-02: %s", l)
		}
		if l := summaryLine(t, out, "mini-03"); !strings.Contains(l, "unchanged") {
			t.Errorf("mini-03: %s", l)
		}
	})

	t.Run("a host that hangs fails alone at the phase timeout", func(t *testing.T) {
		// mini-02's vz-node now hangs when asked its version, as facts do
		// when the installed file changed; the running job is untouched.
		h := fl.lab.Host("mini-02")
		bin := h.Path(binaryPath)
		orig, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		mark := fmt.Sprintf("%d.%03d", 3000+mrand.IntN(600), mrand.IntN(1000))
		replaceFile(t, bin, []byte("#!/bin/sh\nexec sleep "+mark+"\n"))
		defer replaceFile(t, bin, orig)

		out, code := fl.apply("v0.1.0-e2e", "--limit", "mini-02,mini-03", "--phase-timeout", "3s")
		if code == 0 {
			t.Error("exit 0 with a host hung")
		}
		if l := summaryLine(t, out, "mini-02"); !strings.Contains(l, "FAILED") || !strings.Contains(l, "facts did not finish within 3s") || !strings.Contains(l, "asking the installed vz-node its version") {
			t.Errorf("mini-02: %s", l)
		}
		if l := summaryLine(t, out, "mini-03"); !strings.Contains(l, "unchanged") {
			t.Errorf("mini-03: %s", l)
		}
		// The hung command was killed on the host, not left behind.
		deadline := time.Now().Add(10 * time.Second)
		for {
			ps, _ := exec.Command("pgrep", "-f", "sleep "+mark).Output()
			if len(bytes.TrimSpace(ps)) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the hung command still runs on mini-02: pids %s", ps)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("SSH cut mid-upload: no partial file, a rerun converges", func(t *testing.T) {
		h := fl.lab.Host("mini-03")
		before, err := os.ReadFile(h.Path(binaryPath))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LimitBandwidth(8000); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(fl.fleetctlBin, "apply", "-f", fl.inventory, "--vz-node", fl.vzNode["v0.2.0-e2e"], "--limit", "mini-03", "--ssh-config", "none", "--min-free-disk", "1")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		cut := false
		for !cut && time.Now().Before(deadline) {
			if tmp, _ := filepath.Glob(h.Path("/usr/local/bin/.vz-node.vzfleet-tmp-*")); len(tmp) > 0 {
				if st, err := os.Stat(tmp[0]); err == nil && st.Size() > 0 {
					cut = h.CutConnections() > 0
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Wait()
		t.Logf("interrupted apply:\n%s", out.String())
		fl.checkNoSecrets(out.String())
		if !cut {
			t.Fatal("the upload was never seen in flight")
		}
		now, err := os.ReadFile(h.Path(binaryPath))
		if err != nil || !bytes.Equal(now, before) && !bytes.Contains(now, []byte("v0.2.0-e2e")) {
			t.Errorf("the binary at the target is neither the old nor the complete new one (%d bytes, %v)", len(now), err)
		}
		if err := h.LimitBandwidth(0); err != nil {
			t.Fatal(err)
		}
		if _, code := fl.apply("v0.2.0-e2e", "--limit", "mini-03"); code != 0 {
			t.Fatalf("rerun exited %d", code)
		}
		fl.assertNodeReady("mini-03", "v0.2.0-e2e")
		if tmp, _ := filepath.Glob(h.Path("/usr/local/bin/.vz-node.vzfleet-tmp-*")); len(tmp) > 0 {
			t.Errorf("temp files left: %v", tmp)
		}
		out2, code := fl.apply("v0.2.0-e2e", "--limit", "mini-03")
		if code != 0 || !strings.Contains(out2, "no changes") {
			t.Errorf("after the rerun the host still changes (exit %d)", code)
		}
	})
}

// replaceFile puts data at path (mode 0755) by renaming a complete temp
// file over it, as an install would.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".e2e-tmp"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
