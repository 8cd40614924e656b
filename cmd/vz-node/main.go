// Command vz-node is the agent that runs on each Mac under launchd: a Virtual
// Kubelet provider whose pods are macOS virtual machines. The command layer
// only parses flags and environment; the work lives in node/ and image/.
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
		fmt.Fprintln(os.Stderr, "vz-node:", err)
		os.Exit(1)
	}
}
