package main

import (
	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/fleet"
)

func newPlanCommand() *cobra.Command {
	var flags fleetFlags
	cmd := &cobra.Command{
		Use:   "plan [INVENTORY]",
		Short: "Show what apply would change on each host, changing nothing",
		Long: `plan connects to each selected host, gathers its facts and shows the
difference between the host and the inventory: files that would be created
or updated (with a line diff for the plist and configuration; secrets only as
"(secret changed)"), the launchd action (kickstart or reload) and node label
and taint changes. Nothing is uploaded, restarted or minted.`,
		Example: `  fleetctl plan inventory.yaml --vz-node bin/darwin-arm64/vz-node`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, hosts, err := flags.load(args)
			if err != nil {
				return err
			}
			rep := fleet.Run(cmd.Context(), fleet.ModePlan, inv, hosts, flags.options(cmd))
			if err := rep.WriteSummary(cmd.OutOrStdout()); err != nil {
				return err
			}
			return rep.Err()
		},
	}
	flags.bind(cmd.Flags(), true)
	return cmd
}
