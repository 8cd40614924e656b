package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/vzfleet/vzfleet/fleet"
	"github.com/vzfleet/vzfleet/inventory"
)

// fleetFlags are the flags apply, plan and doctor share.
type fleetFlags struct {
	file, limit, binary, sshConfig string
	concurrency, maxUnavailable    int
	readyTimeout, phaseTimeout     time.Duration
	maxPulls                       int
	pullPolicy                     string
	insecure                       []string
	acceptNew                      bool
	minMacOS                       string
	minFreeDiskGiB                 int
	sshPersist                     time.Duration
}

func (f *fleetFlags) bind(fs *pflag.FlagSet, withRollout bool) {
	fs.StringVarP(&f.file, "filename", "f", "", "inventory file (instead of the argument)")
	fs.StringVarP(&f.limit, "limit", "l", "", "only these hosts: name globs (mini-0*,studio-1) or a label selector (rack=a)")
	fs.StringVar(&f.sshConfig, "ssh-config", "", "ssh_config file to honour (default ~/.ssh/config; \"none\" for none)")
	bindPersist(fs, &f.sshPersist)
	fs.BoolVar(&f.acceptNew, "accept-new-host-keys", false, "record the keys of hosts not yet in known_hosts (trust on first use); changed keys are refused regardless")
	fs.StringVar(&f.minMacOS, "min-macos", fleet.DefaultRequirements.MinMacOS, "oldest macOS release a host may run")
	fs.IntVar(&f.minFreeDiskGiB, "min-free-disk", int(fleet.DefaultRequirements.MinFreeDisk>>30), "free GiB the VM image cache volume needs")
	fs.IntVar(&f.concurrency, "concurrency", 0, "hosts worked on at once (default: the inventory's rollout.concurrency)")
	fs.DurationVar(&f.phaseTimeout, "phase-timeout", fleet.DefaultPhaseTimeout, "bound on each phase on a host (connect, facts, plan, upload, service) and on a pre-pull without progress (0: none): a host that hangs fails alone")
	if withRollout {
		fs.StringVar(&f.binary, "vz-node", defaultBinary(), "the vz-node binary to install (a darwin/arm64 build)")
		fs.IntVar(&f.maxUnavailable, "max-unavailable", 0, "vz-nodes restarting at once (default: the inventory's rollout.maxUnavailable)")
		fs.DurationVar(&f.readyTimeout, "ready-timeout", 0, "how long a restarted node has to become Ready before it is rolled back (default: the inventory's rollout.readyTimeout)")
		fs.IntVar(&f.maxPulls, "max-pulls", 4, "hosts pre-pulling the inventory's images at once")
		fs.StringVar(&f.pullPolicy, "pull-policy", "IfNotPresent", "pre-pull policy for the inventory's images: IfNotPresent (hosts that have an image skip it) or Always (re-resolve tags, fetch changed chunks)")
		fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host[:port] the hosts reach over plain HTTP when pre-pulling (loopback always is)")
	}
}

// defaultBinary is vz-node next to fleetctl, as `make build` lays it out.
func defaultBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	for _, p := range []string{
		filepath.Join(filepath.Dir(exe), "vz-node"),
		filepath.Join(filepath.Dir(exe), "..", "darwin-arm64", "vz-node"),
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// load reads the inventory and selects the hosts.
func (f *fleetFlags) load(args []string) (*inventory.Inventory, []inventory.Host, error) {
	if len(args) == 1 {
		if f.file != "" {
			return nil, nil, errors.New("give the inventory either as an argument or with -f, not both")
		}
		f.file = args[0]
	}
	if f.file == "" {
		return nil, nil, errors.New("which inventory? e.g. fleetctl apply inventory.yaml")
	}
	inv, err := inventory.Load(f.file)
	if err != nil {
		return nil, nil, err
	}
	hosts, err := inv.Select(f.limit)
	if err != nil {
		return nil, nil, err
	}
	return inv, hosts, nil
}

func (f *fleetFlags) options(cmd *cobra.Command) fleet.Options {
	// client-go's own logging (watch retries and the like) would interleave
	// with the progress lines; fleet reports what matters itself.
	klog.SetOutput(io.Discard)
	klog.LogToStderr(false)
	return fleet.Options{
		PhaseTimeout:       cmp.Or(f.phaseTimeout, -1), // the flag's 0: no bound
		Binary:             f.binary,
		Concurrency:        f.concurrency,
		MaxUnavailable:     f.maxUnavailable,
		ReadyTimeout:       f.readyTimeout,
		Requirements:       fleet.Requirements{MinMacOS: f.minMacOS, MinFreeDisk: int64(f.minFreeDiskGiB) << 30},
		AcceptNewHostKeys:  f.acceptNew,
		SSHConfigFile:      f.sshConfig,
		SSHMux:             sshMux(f.sshPersist),
		Out:                cmd.ErrOrStderr(),
		MaxPulls:           f.maxPulls,
		PullPolicy:         f.pullPolicy,
		InsecureRegistries: f.insecure,
	}
}

func newApplyCommand() *cobra.Command {
	var (
		flags  fleetFlags
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "apply [INVENTORY]",
		Short: "Make every host in the inventory match it",
		Long: `apply connects to each selected host over SSH and makes it match the
inventory: it installs the vz-node binary (codesigned on the host with the
virtualization entitlement), its launchd plist, configuration and
credentials, restarts vz-node only when something it reads changed (a
kickstart when only files changed, a reload when the plist did), and waits
until the host's node is Ready in Kubernetes on the expected version. A node
that does not become Ready in time is rolled back to its previous files.

Hosts run in parallel (--concurrency); --max-unavailable bounds how many
restart at once. Once a host's node is Ready, the images the inventory lists
for it are pre-pulled into its cache (vz-node pull, at most --max-pulls hosts
at once); a failed pre-pull fails that host's images step without rolling the
node back. One host's failure never stops the others; the summary names every
host that failed and why, and the exit status is non-zero. A host that hangs
fails alone: each phase on a host is bounded by --phase-timeout.
Re-applying an unchanged inventory uploads nothing and restarts nothing.
Secrets are installed 0600 and never printed.`,
		Example: `  fleetctl apply inventory.yaml --vz-node bin/darwin-arm64/vz-node
  fleetctl apply -f inventory.yaml --limit 'mini-0*' --dry-run
  fleetctl apply inventory.yaml --max-unavailable 2 --ready-timeout 3m`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, hosts, err := flags.load(args)
			if err != nil {
				return err
			}
			if flags.pullPolicy != "Always" && flags.pullPolicy != "IfNotPresent" {
				return fmt.Errorf("--pull-policy %q: want Always or IfNotPresent", flags.pullPolicy)
			}
			if flags.maxPulls < 1 {
				return fmt.Errorf("--max-pulls %d: want at least 1", flags.maxPulls)
			}
			mode := fleet.ModeApply
			if dryRun {
				mode = fleet.ModePlan
			}
			rep := fleet.Run(cmd.Context(), mode, inv, hosts, flags.options(cmd))
			if err := rep.WriteSummary(cmd.OutOrStdout()); err != nil {
				return err
			}
			return rep.Err()
		},
	}
	flags.bind(cmd.Flags(), true)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would change (as fleetctl plan) and change nothing")
	return cmd
}
