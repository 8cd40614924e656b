package main

import (
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
60s) after a run, so the next apply, plan, status or prepull reuses it
instead of connecting and logging in again, as OpenSSH's ControlPersist does.
A background fleetctl ssh-mux process, started when first needed, holds the
connections; it exits once it has held none for a few seconds.

It listens on a Unix socket in $VZFLEET_SSH_MUX_DIR (default
$XDG_RUNTIME_DIR/vzfleet/ssh, else vzfleet/ssh in your cache directory), a
directory only you can enter, and serves only your user. It dials hosts as
fleetctl would, verifying host keys strictly; when it cannot, fleetctl
connects directly and reports why. A connection is lent to one fleetctl run
at a time. Its log is mux.log in that directory.

A connection, once open, is not checked against known_hosts again: after
changing known_hosts or a host's key, run fleetctl ssh-mux stop.`,
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
		Short: "Close the kept connections and stop the mux",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return remote.StopMux(cmd.Context(), dir)
		},
	}
	cmd.AddCommand(serve, stop)
	return cmd
}
