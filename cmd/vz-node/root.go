package main

import (
	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/internal/version"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "vz-node",
		Short: "Virtual Kubelet provider that runs pods as macOS virtual machines",
		Long: `vz-node registers this Mac as a Kubernetes node. Each pod's first container
is a macOS VM started from an OCI VM image on a copy-on-write overlay; further
containers run as Docker sidecars.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(version.NewCommand())
	return root
}
