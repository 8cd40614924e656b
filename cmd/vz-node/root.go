package main

import (
	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/internal/version"
	"github.com/vzfleet/vzfleet/node"
)

func newRootCommand() *cobra.Command {
	var configPath string
	flagCfg := node.DefaultConfig()
	root := &cobra.Command{
		Use:   "vz-node",
		Short: "Virtual Kubelet provider that runs pods as macOS virtual machines",
		Long: `vz-node registers this Mac as a Kubernetes node. Each pod's first container
is a macOS VM started from an OCI VM image on a copy-on-write overlay; further
containers run as Docker sidecars in the engine DOCKER_HOST names.

Configuration comes from defaults, then --config (YAML), then the environment
(KUBECONFIG, APISERVER_CERT_LOCATION, APISERVER_KEY_LOCATION,
APISERVER_CA_CERT_LOCATION, VKUBELET_POD_IP, VZ_BRIDGE_INTERFACE, VZ_SSH_USER,
VZ_SSH_PASSWORD or VZ_SSH_PASSWORD_FILE, VZ_SSH_KEY_FILE, DOCKER_HOST, OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_INSECURE, OTEL_SERVICE_NAME), then flags.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), configPath)
			if err != nil {
				return err
			}
			return node.Run(cmd.Context(), cfg, node.NewLogger(cfg.LogLevel))
		},
	}
	bindFlags(root.Flags(), &flagCfg)
	root.Flags().StringVar(&configPath, "config", "", "YAML configuration file (keys as in node.Config)")
	root.AddCommand(version.NewCommand(), newVMCommand(), newPullCommand(), newImagesCommand())
	return root
}
