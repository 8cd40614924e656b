package main

import (
	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/fleet"
)

func newDoctorCommand() *cobra.Command {
	var flags fleetFlags
	cmd := &cobra.Command{
		Use:   "doctor [INVENTORY]",
		Short: "Check that each host can run vz-node, and explain what is wrong",
		Long: `doctor connects to each selected host and runs apply's preflight checks
alone: Apple silicon (arm64), the macOS version, free disk for the VM image
cache, codesign (to sign vz-node with the virtualization entitlement) and the
hypervisor Virtualization.framework needs (kern.hv_support; a Mac that is
itself a VM is flagged). Each failure comes with what to do about it.`,
		Example: `  fleetctl doctor inventory.yaml`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, hosts, err := flags.load(args)
			if err != nil {
				return err
			}
			rep := fleet.Run(cmd.Context(), fleet.ModeDoctor, inv, hosts, flags.options(cmd))
			rep.WriteDoctor(cmd.OutOrStdout())
			if err := rep.WriteSummary(cmd.OutOrStdout()); err != nil {
				return err
			}
			return rep.Err()
		},
	}
	flags.bind(cmd.Flags(), false)
	return cmd
}
