package main

import (
	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/inventory"
)

func newSchemaCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the inventory file format",
		Long: `schema prints a JSON Schema (draft-07) describing every field of the
inventory format, with its meaning, default and allowed values. Editors use it
for completion, hover docs and early errors while you write an inventory.

The schema helps editors; fleetctl validate stays the authority (it also
checks what a schema cannot, such as unique host names and addresses).`,
		Example: `  # Save the schema next to the inventory
  fleetctl schema > inventory.schema.json

  # VS Code (YAML extension), Neovim/Helix (yaml-language-server): make this the
  # first line of inventory.yaml
  # yaml-language-server: $schema=inventory.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(inventory.JSONSchema())
			return err
		},
	}
}
