package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/inventory"
)

func newValidateCommand() *cobra.Command {
	var (
		file, output, limit string
		checkRefs           bool
	)
	cmd := &cobra.Command{
		Use:   "validate [INVENTORY]",
		Short: "Check an inventory file and show what each host resolves to",
		Long: `validate loads an inventory the way apply does (strict YAML, defaults merged
into every host, every value checked) without connecting to any host.

A valid inventory prints one line per host: its name, SSH address, Kubernetes
node name and VM driver. An invalid one prints every problem found as
file:line:col: field.path: what is wrong and what to do, and exits non-zero.

With --check-refs it also checks that the files and environment variables the
inventory refers to (SSH identity, kubeconfigs, secrets) exist on this machine.
Secret values are never printed.`,
		Example: `  # Check an inventory
  fleetctl validate inventory.yaml

  # The same, for scripts and CI
  fleetctl validate -f inventory.yaml -o json

  # Show which hosts a --limit expression picks (name globs or a label selector)
  fleetctl validate inventory.yaml --limit 'mini-0*'
  fleetctl validate inventory.yaml --limit 'vzfleet.dev/pool=ci'

  # Also check that keys, kubeconfigs and secret variables are in place
  fleetctl validate inventory.yaml --check-refs`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if file != "" {
					return errors.New("give the inventory either as an argument or with -f, not both")
				}
				file = args[0]
			}
			if file == "" {
				return errors.New("which inventory? e.g. fleetctl validate inventory.yaml")
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			report := validate(file, limit, checkRefs)
			var err error
			if output == "json" {
				err = report.WriteJSON(cmd.OutOrStdout())
			} else {
				err = report.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if !report.Valid {
				return fmt.Errorf("%s is not valid", file)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "inventory file (instead of the argument)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVarP(&limit, "limit", "l", "", "show only the hosts this expression selects: name globs (mini-0*,studio-1) or a label selector (rack=a)")
	cmd.Flags().BoolVar(&checkRefs, "check-refs", false, "also check that referenced files and environment variables exist here")
	return cmd
}

func validate(file, limit string, checkRefs bool) inventory.Report {
	inv, err := inventory.Load(file)
	if err != nil {
		return inventory.NewReport(file, nil, err)
	}
	if checkRefs {
		if err := inv.CheckReferences(nil); err != nil {
			return inventory.NewReport(file, nil, err)
		}
	}
	hosts, err := inv.Select(limit)
	return inventory.NewReport(file, hosts, err)
}
