// Command lab brings up vzfleet's local lab — a real etcd, kube-apiserver,
// kube-scheduler, kube-controller-manager and metrics-server, an OCI
// registry, and three simulated Mac minis (OpenSSH servers in network
// namespaces) — applies examples/lab/inventory.yaml to them with fleetctl,
// shows the resulting nodes, and keeps everything running until interrupted.
// `make demo` runs it after building the binaries.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/machost"
)

// The hosts' addresses are fixed so examples/lab/inventory.yaml can name them.
const labSubnet = "10.213.100.0/24"

var hostNames = []string{"mac-mini-01", "mac-mini-02", "mac-mini-03"}

func main() {
	dir := flag.String("dir", ".cache/lab", "directory for the lab's state, logs, keys and kubeconfig (recreated on each run)")
	bin := flag.String("bin", "bin/linux-amd64", "directory holding the built fleetctl and vz-node")
	inv := flag.String("inventory", "examples/lab/inventory.yaml", "inventory to apply to the simulated hosts")
	flag.Parse()
	if err := run(*dir, *bin, *inv); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func run(dir, bin, inv string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	if err := machost.RemoveLeftovers(logf); err != nil {
		return fmt.Errorf("removing a previous lab's hosts: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing the previous lab in %s: %w", dir, err)
	}
	sshDir := filepath.Join(dir, "ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cp, err := harness.StartControlPlane(ctx, filepath.Join(dir, "cluster"), harness.ControlPlaneOptions{
		Scheduler: true, ControllerManager: true, MetricsServer: true, Log: logf,
	})
	if err != nil {
		return err
	}
	defer cp.Stop()
	logf("harness: starting the OCI registry")
	reg, err := harness.StartRegistry(ctx, filepath.Join(dir, "registry"))
	if err != nil {
		return err
	}
	defer reg.Stop()

	logf("harness: starting %d simulated Mac hosts on %s", len(hostNames), labSubnet)
	var hosts []machost.HostOptions
	for _, n := range hostNames {
		hosts = append(hosts, machost.HostOptions{Name: n})
	}
	lab, err := machost.StartLab(ctx, machost.LabOptions{Hosts: hosts, Dir: filepath.Join(dir, "hosts"), Subnet: labSubnet, Log: logf})
	if err != nil {
		return err
	}
	defer lab.Stop()
	// Ctrl-C ends the program from the harness's signal handler, before
	// deferred calls run: the hosts' namespaces must go too.
	harness.OnInterrupt(func() { _ = lab.Stop() })
	// Inside each host, 127.0.0.1:<port> reaches the apiserver and registry,
	// so their loopback certificates and URLs hold there too.
	if err := lab.ForwardLoopback(port(cp.URL), port("http://"+reg.Addr)); err != nil {
		return err
	}
	if err := writeCredentials(dir, sshDir, cp, lab); err != nil {
		return err
	}

	fleetctl := filepath.Join(bin, "fleetctl")
	logf("\n$ fleetctl apply -f %s", inv)
	apply := exec.CommandContext(ctx, fleetctl, "apply", "-f", inv, "--vz-node", filepath.Join(bin, "vz-node"),
		"--ssh-config", "none", "--min-free-disk", "1")
	apply.Stdout, apply.Stderr = os.Stdout, os.Stderr
	if err := apply.Run(); err != nil {
		return fmt.Errorf("fleetctl apply: %w (logs under %s)", err, dir)
	}
	kubectl, err := harness.Tool("kubectl")
	if err != nil {
		return err
	}
	logf("\n$ kubectl get nodes -o wide")
	out, err := cp.Kubectl(ctx, "get", "nodes", "-o", "wide")
	fmt.Print(string(out))
	if err != nil {
		return err
	}

	fmt.Printf(`
The vzfleet lab is up.

  Kubernetes API   %s
  OCI registry     http://%s (plain HTTP, loopback only)
  Mac hosts        %s (ssh -i %s root@<address>)
  Logs and state   %s

Use it from another terminal:

  export KUBECONFIG=%s
  %s get nodes -o wide
  %s status %s
  %s apply -f %s --vz-node %s --min-free-disk 1   # again: no changes

Press Ctrl-C to stop the lab.
`, cp.URL, reg.Addr, labSubnet, filepath.Join(sshDir, "id_ed25519"), dir,
		cp.AdminKubeconfig, kubectl, fleetctl, inv, fleetctl, inv, filepath.Join(bin, "vz-node"))
	<-ctx.Done()
	fmt.Println("\nlab: stopping")
	return nil
}

// writeCredentials puts the files examples/lab/inventory.yaml names where it
// expects them: the hosts' SSH client key and known_hosts, the operator
// kubeconfig, and a fresh guest SSH key.
func writeCredentials(dir, sshDir string, cp *harness.ControlPlane, lab *machost.Lab) error {
	if err := lab.WriteKnownHosts(filepath.Join(sshDir, "known_hosts")); err != nil {
		return err
	}
	if err := os.Symlink(lab.ClientKeyFile, filepath.Join(sshDir, "id_ed25519")); err != nil {
		return err
	}
	if err := os.Symlink(cp.AdminKubeconfig, filepath.Join(dir, "admin.kubeconfig")); err != nil {
		return err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(key, "vzfleet lab guest")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(sshDir, "guest_ed25519"), pem.EncodeToMemory(block), 0o600)
}

func port(rawURL string) int {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}
