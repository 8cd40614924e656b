package main

import (
	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/internal/version"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "fleetctl",
		Short: "Turn a rack of Apple Silicon Macs into Kubernetes nodes for macOS CI",
		Long: `fleetctl reads a declarative inventory of Mac hosts and, over SSH, keeps
each one running a current, signed vz-node: the Virtual Kubelet provider that
makes the host a Kubernetes node whose pods are macOS virtual machines.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(version.NewCommand())
	root.AddCommand(newValidateCommand())
	root.AddCommand(newSchemaCommand())
	root.AddCommand(newApplyCommand())
	root.AddCommand(newPlanCommand())
	root.AddCommand(newDoctorCommand())
	root.AddCommand(newRetireCommand())
	root.AddCommand(newStatusCommand())
	root.AddCommand(newImageCommand())
	root.AddCommand(newPrepullCommand())
	root.AddCommand(newSSHMuxCommand())
	return root
}
