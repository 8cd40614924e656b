package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vzfleet/vzfleet/fleet/remote"
)

// defaultPersist is how long an idle host connection stays open, as
// Ansible's ControlPersist.
const defaultPersist = 60 * time.Second

func bindPersist(fs *pflag.FlagSet, persist *time.Duration) {
	fs.DurationVar(persist, "ssh-persist", defaultPersist, "keep each host's SSH connection open this long after use, for the next fleetctl run (0: connect anew each run; see fleetctl ssh-mux)")
}

// sshMux is the mux for --ssh-persist; nil (connect directly) for 0.
func sshMux(persist time.Duration) *remote.Mux {
	if persist <= 0 {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	dir := remote.DefaultMuxDir()
	return &remote.Mux{Dir: dir, Persist: persist, Command: []string{exe, "ssh-mux", "serve", "--dir", dir}}
}

func newSSHMuxCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh-mux",
		Short: "The background process that keeps SSH connections open between runs",
		Long: `fleetctl keeps each host's SSH connection open for --ssh-persist (default
60s) after a run, so the next apply, plan, doctor, status or prepull reuses
it instead of connecting and logging in again, as OpenSSH's ControlPersist
does. A background fleetctl ssh-mux process holds the connections: when a
run closes a connection it made itself, the mux (started then if none runs)
opens one of its own to that host. A run borrows the connections the mux
holds, one run at a time, and connects directly to the other hosts; if the
mux cannot reach a host, the next run connects directly and reports why. The
mux exits once it has held no connection for a few seconds. Each build of
fleetctl has a mux of its own, so an upgraded fleetctl never borrows from
an older one; status lists this build's, stop stops them all.

It listens on a Unix socket in $VZFLEET_SSH_MUX_DIR (default
$XDG_RUNTIME_DIR/vzfleet/ssh, else vzfleet/ssh in your cache directory), a
directory only you can enter, serves only your user, verifies host keys
strictly, and logs to mux.log there.

Each time it lends a connection, the mux checks the key the host (and any
jump host) presented against known_hosts as the files are then: once you
remove or replace that key there, the mux closes the connection, and the run
connects directly and reports the host's key as it would without the mux.`,
		Example: `  fleetctl ssh-mux status          # the connections kept, and whether a run uses them
  fleetctl ssh-mux status -o json
  fleetctl ssh-mux stop            # close them all now`,
		Args: cobra.NoArgs,
	}
	dir := remote.DefaultMuxDir()
	serve := &cobra.Command{
		Use:    "serve",
		Short:  "Run the mux in the foreground (fleetctl starts it when needed)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return remote.ServeMux(cmd.Context(), dir, log)
		},
	}
	serve.Flags().StringVar(&dir, "dir", dir, "directory of the socket")
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Close the kept connections and stop the mux (every build's, in this directory)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return remote.StopMux(cmd.Context(), dir)
		},
	}
	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "List the connections the mux keeps open",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conns, err := remote.MuxConnections(cmd.Context(), dir)
			if err != nil {
				return err
			}
			return writeMuxConnections(cmd.OutOrStdout(), conns, output)
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(serve, stop, status)
	return cmd
}

func writeMuxConnections(w io.Writer, conns []remote.MuxConnection, output string) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(conns)
	case "table":
		return remote.WriteMuxTable(w, conns)
	default:
		return fmt.Errorf("--output %q: want table or json", output)
	}
}
