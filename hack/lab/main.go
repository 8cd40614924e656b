// Command lab brings up vzfleet's local lab — a real etcd, kube-apiserver,
// kube-scheduler and kube-controller-manager plus an OCI registry, all on
// loopback — prints how to reach it with kubectl, and keeps it running until
// interrupted. `make demo` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/vzfleet/vzfleet/test/harness"
)

func main() {
	dir := flag.String("dir", ".cache/lab", "directory for the lab's state, logs and kubeconfig (recreated on each run)")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing the previous lab in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	cp, err := harness.StartControlPlane(ctx, filepath.Join(dir, "cluster"), harness.ControlPlaneOptions{
		Scheduler: true, ControllerManager: true, Log: logf,
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
	kubectl, err := harness.Tool("kubectl")
	if err != nil {
		return err
	}

	fmt.Printf(`
The vzfleet lab is up.

  Kubernetes API   %s
  OCI registry     http://%s (plain HTTP, loopback only)
  Logs             %s

Use it from another terminal:

  export KUBECONFIG=%s
  %s get nodes -o wide
  %s get --raw /readyz

Press Ctrl-C to stop the lab; it removes nothing until the next run.
`, cp.URL, reg.Addr, dir, cp.AdminKubeconfig, kubectl, kubectl)
	<-ctx.Done()
	fmt.Println("\nlab: stopping")
	return nil
}
