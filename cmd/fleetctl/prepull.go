package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vzfleet/vzfleet/fleet"
	"github.com/vzfleet/vzfleet/fleet/status"
	"github.com/vzfleet/vzfleet/inventory"
)

func newPrepullCommand() *cobra.Command {
	var (
		file, limit, policy, sshConfig string
		insecure                       []string
		maxHosts, concurrency          int
		stallTimeout, sshPersist       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "prepull REF [inventory.yaml]",
		Short: "Pull a VM image into the cache of every selected host ahead of time",
		Long: `prepull runs vz-node pull on each selected host over SSH, so pods that use the
image start without waiting for a 30-140 GB download. Each host pulls from the
registry itself; chunks a host already has (from this image or another) are not
downloaded again, and an interrupted prepull resumes where it stopped when run
again.

On a terminal it shows a live line per host (bytes, rate, ETA); otherwise it
prints plain lines. A host that fails never stops the others; the summary names
every failed host and the exit status is non-zero if any failed.`,
		Example: `  # Every host in the inventory, four at a time
  fleetctl prepull registry.example.com/ci/macos:15 inventory.yaml

  # Only the ci pool, two hosts at once, eight chunks per host
  fleetctl prepull registry.example.com/ci/macos:15 -f inventory.yaml --limit 'vzfleet.dev/pool=ci' --max-hosts 2 --concurrency 8`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				if file != "" {
					return errors.New("give the inventory either as an argument or with -f, not both")
				}
				file = args[1]
			}
			if file == "" {
				return errors.New("which inventory? e.g. fleetctl prepull REF inventory.yaml")
			}
			if policy != "Always" && policy != "IfNotPresent" {
				return fmt.Errorf("--policy %q: want Always or IfNotPresent", policy)
			}
			if maxHosts < 1 {
				return fmt.Errorf("--max-hosts %d: want at least 1", maxHosts)
			}
			inv, err := inventory.Load(file)
			if err != nil {
				return err
			}
			hosts, err := inv.Select(limit)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			tty := false
			if f, ok := out.(*os.File); ok {
				tty = term.IsTerminal(int(f.Fd()))
			}
			printer := &fleet.PrepullPrinter{W: out, TTY: tty}
			res := fleet.Prepull(cmd.Context(), hosts, fleet.PrepullOptions{
				Ref: args[0], MaxHosts: maxHosts, Concurrency: concurrency, Policy: policy, Insecure: insecure,
				StallTimeout: cmp.Or(stallTimeout, -1), // the flag's 0: never
				Connect:      status.DialInventoryHost(status.DialOptions{SSHConfigFile: sshConfig, Mux: sshMux(sshPersist)}),
				Update:       printer.Update,
			})
			printer.Finish()
			fmt.Fprintln(out)
			if err := fleet.WritePrepullSummary(out, res); err != nil {
				return err
			}
			return fleet.PrepullErr(res)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&file, "filename", "f", "", "inventory file (instead of the argument)")
	fs.StringVarP(&limit, "limit", "l", "", "only these hosts: name globs (mini-0*,studio-1) or a label selector (rack=a)")
	fs.IntVar(&maxHosts, "max-hosts", 4, "hosts pulling at once")
	fs.IntVar(&concurrency, "concurrency", 0, "disk chunks each host fetches at once (default: vz-node's)")
	fs.StringVar(&policy, "policy", "Always", "Always (re-resolve the tag, fetch changed chunks) or IfNotPresent (skip hosts that have it)")
	fs.StringSliceVar(&insecure, "insecure-registry", nil, "registry host[:port] the hosts reach over plain HTTP (loopback always is)")
	fs.StringVar(&sshConfig, "ssh-config", "", "ssh_config file to honour (default ~/.ssh/config; \"none\" for none)")
	bindPersist(fs, &sshPersist)
	fs.DurationVar(&stallTimeout, "stall-timeout", fleet.DefaultStallTimeout, "fail a host whose pull makes no progress for this long (0: never)")
	return cmd
}
