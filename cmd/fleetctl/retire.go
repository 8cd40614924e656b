package main

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/fleet"
)

func newRetireCommand() *cobra.Command {
	var (
		flags       fleetFlags
		drain       time.Duration
		purge       bool
		all         bool
		dryRun      bool
		unreachable bool
		nodes       []string
	)
	cmd := &cobra.Command{
		Use:   "retire [INVENTORY] --limit HOSTS | --all | --unreachable --node NODE",
		Short: "Take hosts out of the fleet: drain their nodes, remove vz-node, delete the nodes",
		Long: `retire takes the selected hosts out of the fleet, for a Mac that is
going for repair, a reinstall or another team, without losing work:

  1. drain: the host's node is cordoned, and its pods are evicted as with
     kubectl drain (PodDisruptionBudgets and grace periods are honoured;
     DaemonSet pods are left to go with the node). retire waits, up to
     --drain-timeout, until vz-node has stopped their VMs and the pods are
     gone.
  2. stop: vz-node's launchd job is booted out.
  3. remove: everything apply installed (binary, entitlements, plist,
     configuration, credentials, guest SSH secrets, rollback copies) and
     vz-node's state directory are deleted; with --purge also the VM image
     cache and vz-node's log.
  4. deregister: the Node object is deleted.

A host whose pods do not leave in time fails at the drain and is left as
it was, but cordoned: nothing is stopped or removed (kubectl uncordon NODE
puts it back in service). A host that fails in a later step is finished by
running retire again. Hosts run in parallel and one host's failure never
stops the others. To bring a retired host back,
apply the inventory to it again. Remove it from the inventory to keep a
later apply from doing so.

A Mac that is gone for good (dead, wiped) cannot be drained: its VMs went
with it, and no vz-node will ever confirm their pods stopped. --unreachable
retires such hosts without contacting them: it cordons each node,
force-deletes its pods and deletes the node. It refuses a node whose lease
vz-node still renews (a host that just went away counts as gone once its
lease runs out, 40 s after the last renewal). With --node it retires a
node that no host in the inventory names (fleetctl status lists such nodes
as not in the inventory), in the cluster the inventory's hosts share.

Because it removes capacity, retire wants the hosts named: --limit,
--all for every host in the inventory, or --node with --unreachable.`,
		Example: `  fleetctl retire inventory.yaml --limit mini-07 --dry-run
  fleetctl retire inventory.yaml --limit mini-07
  fleetctl retire inventory.yaml --limit 'rack=b' --drain-timeout 2h --purge
  fleetctl retire inventory.yaml --limit mini-04 --unreachable
  fleetctl retire inventory.yaml --unreachable --node mini-09`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if flags.limit == "" && !all && len(nodes) == 0 {
				return errors.New("which hosts? retire takes hosts out of the fleet, so name them with --limit (e.g. --limit mini-07), pass --all to retire every host in the inventory, or name a dead Mac's node that the inventory no longer names with --unreachable --node NAME")
			}
			if len(nodes) > 0 && !unreachable {
				return errors.New("--node retires a node whose host the inventory does not name, so fleetctl cannot reach its Mac: it needs --unreachable. To retire a Mac that still runs, add it back to the inventory and use --limit")
			}
			if flags.limit != "" && all {
				return errors.New("give either --limit or --all, not both")
			}
			if drain <= 0 {
				return errors.New("--drain-timeout must be positive: it bounds the wait for the pods, which retire never skips")
			}
			inv, hosts, err := flags.load(args)
			if err != nil {
				return err
			}
			if flags.limit == "" && !all {
				hosts = nil // only the --node ones
			}
			slices.Sort(nodes)
			for _, n := range slices.Compact(nodes) {
				h, err := inv.Stray(n)
				if err != nil {
					return fmt.Errorf("--node: %w", err)
				}
				hosts = append(hosts, h)
			}
			opts := flags.options(cmd)
			opts.DrainTimeout, opts.Purge, opts.DryRun, opts.Unreachable = drain, purge, dryRun, unreachable
			rep := fleet.Run(cmd.Context(), fleet.ModeRetire, inv, hosts, opts)
			if err := rep.WriteSummary(cmd.OutOrStdout()); err != nil {
				return err
			}
			return rep.Err()
		},
	}
	flags.bind(cmd.Flags(), false)
	cmd.Flags().DurationVar(&drain, "drain-timeout", fleet.DefaultDrainTimeout, "how long to wait for a node's pods to leave before failing that host (it stays cordoned, vz-node installed)")
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the VM image cache and vz-node's log")
	cmd.Flags().BoolVar(&all, "all", false, "retire every host in the inventory")
	cmd.Flags().BoolVar(&unreachable, "unreachable", false, "the hosts are gone for good (dead, wiped): do not contact them; force-delete their nodes' pods and delete the nodes (refused while a node's lease is being renewed)")
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "with --unreachable: a node that no host in the inventory names, to retire (repeat, or separate with commas)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show the pods each host would have evicted, its launchd job and the paths that would be removed, and change nothing")
	return cmd
}
