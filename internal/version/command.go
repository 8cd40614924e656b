package version

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

// NewCommand returns the `version` subcommand shared by fleetctl and vz-node.
func NewCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printVersion(cmd, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printVersion(cmd *cobra.Command, output string) error {
	info := Get()
	switch output {
	case "text":
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", cmd.Root().Name(), info)
		return err
	case "json":
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	default:
		return fmt.Errorf("--output %q: want text or json", output)
	}
}
