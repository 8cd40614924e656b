// Command fleetctl turns a YAML inventory of Mac hosts into Kubernetes
// capacity: it installs and keeps vz-node current on each host over SSH.
// The command layer only parses flags; the work lives in fleet/, inventory/
// and image/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetctl:", err)
		os.Exit(1)
	}
}
