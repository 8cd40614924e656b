package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/node"
	"github.com/vzfleet/vzfleet/node/supervisor"
)

// newVMCommand is the VM supervisor vz-node starts once per VM; it is not
// meant to be run by hand.
func newVMCommand() *cobra.Command {
	vmCmd := &cobra.Command{Use: "vm", Short: "VM supervisor (started by vz-node)", Hidden: true}
	var stateDir, id, spareLog, logLevel string
	run := &cobra.Command{
		Use:   "run",
		Short: "Run one VM until it stops",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case stateDir == "" || id == "" && spareLog == "":
				return fmt.Errorf("--state-dir and one of --id or --spare-log are required")
			case spareLog != "":
				return supervisor.RunSpare(cmd.Context(), stateDir, spareLog, os.Stdin, node.NewLogger(logLevel))
			}
			return supervisor.Run(cmd.Context(), supervisor.Dir(stateDir, id), node.NewLogger(logLevel))
		},
	}
	run.Flags().StringVar(&stateDir, "state-dir", "", "vz-node's state directory")
	run.Flags().StringVar(&id, "id", "", "the VM's ID (its pod's UID)")
	run.Flags().StringVar(&spareLog, "spare-log", "", "start as a spare: wait for the VM's ID on stdin, logging to this file until then")
	run.Flags().StringVar(&logLevel, "log-level", "info", "log level")
	vmCmd.AddCommand(run)
	return vmCmd
}
