package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/kubernetes"

	"github.com/vzfleet/vzfleet/fleet"
	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/fleet/status"
	"github.com/vzfleet/vzfleet/fleet/tui"
	"github.com/vzfleet/vzfleet/internal/version"
	"github.com/vzfleet/vzfleet/inventory"
)

type statusFlags struct {
	file, limit, kubeconfig, output, sortBy, filter string
	wantVersion, sshConfig, vzNode                  string
	watch                                           bool
	interval, timeout, staleAfter, sshPersist       time.Duration
	offlineAfter, concurrency                       int
}

func newStatusCommand() *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status [inventory.yaml]",
		Short: "Show the fleet live: reachability, node readiness, agent drift, VMs, disk",
		Long: `status shows one row per host: SSH reachability, the node's Ready condition,
the vz-node version and its drift from the wanted one, the launchd job, VM
slots and pods, free disk, cached images, pull progress and the last error,
each row marked LIVE, STALE or OFFLINE.

On a terminal it is an interactive screen (? for its keys). Otherwise, or with
--output, it prints once and exits; --watch streams changes instead.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd, args, &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.file, "filename", "f", "", "inventory file (instead of the argument)")
	fs.StringVarP(&f.limit, "limit", "l", "", "only these hosts: name globs (mini-0*,studio-1) or a label selector (rack=a)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "operator kubeconfig (default: the inventory's cluster.operatorKubeconfig, $KUBECONFIG, ~/.kube/config)")
	fs.StringVarP(&f.output, "output", "o", "", "print once as table, json or yaml instead of the interactive screen")
	fs.BoolVarP(&f.watch, "watch", "w", false, "keep running and print changes (with -o json: a snapshot per line each interval; -o yaml: a document each interval)")
	fs.DurationVar(&f.interval, "interval", 5*time.Second, "time between SSH polls (and --watch prints)")
	fs.DurationVar(&f.timeout, "timeout", 0, "bound on one host's SSH poll (default: the interval, at least 2s)")
	fs.DurationVar(&f.staleAfter, "stale-after", 0, "mark a row STALE when its data is older than this (default: 3 intervals, at least 20s)")
	fs.IntVar(&f.offlineAfter, "offline-after", 1, "mark a host OFFLINE after this many failed SSH polls in a row")
	fs.IntVar(&f.concurrency, "concurrency", 16, "SSH polls running at once")
	fs.StringVar(&f.sortBy, "sort", "problems", "row order: problems, name, disk, vms or version")
	fs.StringVar(&f.filter, "filter", "", "show only rows matching a substring or a label selector")
	fs.StringVar(&f.wantVersion, "want-version", wantedVersion(), "the vz-node version hosts should run (drift is shown against it; empty: no drift check)")
	fs.StringVar(&f.sshConfig, "ssh-config", "", "ssh_config file to honour (default ~/.ssh/config; \"none\" for none)")
	bindPersist(fs, &f.sshPersist)
	fs.StringVar(&f.vzNode, "vz-node", "", "the vz-node binary the `a` key's apply installs (default: fleetctl apply's default)")
	return cmd
}

// wantedVersion: fleetctl and vz-node are released together, so a release
// build of fleetctl wants its own version; a dev build wants none.
func wantedVersion() string {
	if version.Version == "dev" {
		return ""
	}
	return version.Version
}

func runStatus(cmd *cobra.Command, args []string, f *statusFlags) error {
	if len(args) == 1 {
		if f.file != "" {
			return errors.New("give the inventory either as an argument or with -f, not both")
		}
		f.file = args[0]
	}
	if f.file == "" {
		return errors.New("which inventory? e.g. fleetctl status inventory.yaml")
	}
	sortKey, err := status.ParseSortKey(f.sortBy)
	if err != nil {
		return fmt.Errorf("--sort: %w", err)
	}
	switch f.output {
	case "", status.OutputTable, status.OutputJSON, status.OutputYAML:
	default:
		return fmt.Errorf("--output %q: want table, json or yaml", f.output)
	}
	if f.interval <= 0 {
		return fmt.Errorf("--interval %s: want a positive duration", f.interval)
	}
	inv, err := inventory.Load(f.file)
	if err != nil {
		return err
	}
	hosts, err := inv.Select(f.limit)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()

	th := status.Thresholds{StaleAfter: f.staleAfter, OfflineAfter: f.offlineAfter}
	if th.StaleAfter <= 0 {
		th.StaleAfter = status.DefaultThresholds.StaleAfter
	}
	th = th.ForInterval(f.interval)
	var kube *status.Informers
	var kubeView status.KubeView
	if client, err := kubeClient(f.kubeconfig, hosts); err != nil {
		fmt.Fprintf(stderr, "fleetctl status: no Kubernetes data (%v); showing SSH facts only\n", err)
	} else {
		kube = status.NewInformers(client, nil)
		kubeView = kube
	}
	var known []string
	for _, h := range inv.Hosts {
		known = append(known, h.Node.Name)
	}
	store := status.NewStore(hosts, status.StoreOptions{DesiredVersion: f.wantVersion, Thresholds: th, Kube: kubeView, InventoryNodes: known})
	gatherer := &status.SSHGatherer{Dial: status.DialInventoryHost(status.DialOptions{SSHConfigFile: f.sshConfig, ConnectTimeout: f.interval, Mux: sshMux(f.sshPersist)})}
	defer gatherer.Close()
	poller := &status.Poller{Store: store, Gatherer: gatherer, Interval: f.interval, Timeout: f.timeout, Concurrency: f.concurrency}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if kube != nil {
		syncCtx, done := context.WithTimeout(ctx, 15*time.Second)
		err := kube.Start(ctx, syncCtx)
		done()
		if err != nil {
			fmt.Fprintf(stderr, "fleetctl status: %v; Kubernetes columns may be empty\n", err)
		}
	}

	out := cmd.OutOrStdout()
	interactive := f.output == "" && !f.watch && isTerminal(out)
	switch {
	case interactive:
		go poller.Run(ctx)
		return tui.Run(ctx, tui.Options{
			Snapshot: store.Snapshot,
			Refresh:  poller.Refresh,
			Detail:   detailFunc(hosts, gatherer, kube),
			Apply:    applyFunc(f),
			Prepull:  prepullFunc(hosts, gatherer),
			Image:    firstImage(hosts),
			Sort:     sortKey,
			Filter:   f.filter,
		})
	case f.watch:
		go poller.Run(ctx)
		return watchStatus(ctx, out, store, f, sortKey)
	default:
		poller.PollOnce(ctx)
		snap, err := view(store.Snapshot(), sortKey, f.filter)
		if err != nil {
			return err
		}
		return status.Render(out, snap, f.output, 0)
	}
}

// view sorts and filters a snapshot, recounting the totals over the rows
// shown.
func view(snap status.Snapshot, key status.SortKey, filter string) (status.Snapshot, error) {
	rows, err := status.Filter(snap.Rows, filter)
	if err != nil {
		return snap, fmt.Errorf("--filter: %w", err)
	}
	status.Sort(rows, key)
	snap.Rows, snap.Totals = rows, status.TotalsOf(rows)
	return snap, nil
}

func watchStatus(ctx context.Context, w io.Writer, store *status.Store, f *statusFlags, key status.SortKey) error {
	stream := &status.Stream{W: w}
	t := time.NewTicker(f.interval)
	defer t.Stop()
	// The first print waits for the first round of polls (bounded by the
	// poll timeout) so it does not show every host as STALE.
	first := time.NewTimer(min(f.interval, 2*time.Second))
	defer first.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-first.C:
		case <-t.C:
		}
		snap, err := view(store.Snapshot(), key, f.filter)
		if err != nil {
			return err
		}
		switch f.output {
		case status.OutputJSON:
			// One snapshot per line (JSON Lines) for line-oriented tools.
			err = json.NewEncoder(w).Encode(snap)
		case status.OutputYAML:
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
			err = status.Render(w, snap, f.output, 0)
		default:
			err = stream.Write(snap)
		}
		if err != nil {
			return fmt.Errorf("writing status: %w", err)
		}
	}
}

func isTerminal(w io.Writer) bool {
	file, ok := w.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// kubeClient builds the operator's client: --kubeconfig, else the
// inventory's operatorKubeconfig, else client-go's default rules.
func kubeClient(explicit string, hosts []inventory.Host) (kubernetes.Interface, error) {
	path := explicit
	if path == "" && len(hosts) > 0 {
		path = hosts[0].Cluster.OperatorKubeconfig
	}
	rc, err := fleet.OperatorConfig(path)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 20, 40
	return kubernetes.NewForConfig(rc)
}

func hostByName(hosts []inventory.Host, name string) (inventory.Host, error) {
	for _, h := range hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return inventory.Host{}, fmt.Errorf("host %s is not in the inventory", name)
}

func detailFunc(hosts []inventory.Host, g *status.SSHGatherer, kube *status.Informers) func(context.Context, string) (tui.Detail, error) {
	return func(ctx context.Context, name string) (tui.Detail, error) {
		h, err := hostByName(hosts, name)
		if err != nil {
			return tui.Detail{}, err
		}
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		var d tui.Detail
		var errs []error
		if d.HostDetail, err = g.Detail(ctx, h); err != nil {
			errs = append(errs, err)
		}
		if kube != nil {
			node := h.Node.Name
			if node == "" {
				node = h.Name
			}
			if d.Events, err = kube.Events(ctx, node, 15); err != nil {
				errs = append(errs, err)
			}
		}
		return d, errors.Join(errs...)
	}
}

// applyFunc runs `fleetctl apply` for one host as a child process (so the
// screen keeps running and apply's own output stays out of it); the error
// carries the end of its output.
func applyFunc(f *statusFlags) tui.ApplyFunc {
	return func(ctx context.Context, host string) error {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding fleetctl: %w", err)
		}
		args := []string{"apply", "-f", f.file, "--limit", host}
		if f.vzNode != "" {
			args = append(args, "--vz-node", f.vzNode)
		}
		if f.sshConfig != "" {
			args = append(args, "--ssh-config", f.sshConfig)
		}
		var out bytes.Buffer
		c := exec.CommandContext(ctx, exe, args...)
		c.Stdout, c.Stderr = &out, &out
		if err := c.Run(); err != nil {
			return fmt.Errorf("%w: %s", err, lastLine(out.String()))
		}
		return nil
	}
}

// prepullFunc runs `vz-node pull IMAGE` on the host, which fills its
// image cache.
func prepullFunc(hosts []inventory.Host, g *status.SSHGatherer) tui.PrepullFunc {
	return func(ctx context.Context, name, image string) error {
		h, err := hostByName(hosts, name)
		if err != nil {
			return err
		}
		conn, err := g.Dial(ctx, h)
		if err != nil {
			return err
		}
		defer conn.Close()
		res, err := conn.Run(ctx, remote.Cmd{Args: []string{h.Paths.Binary, "pull", image}, Sudo: true})
		if err != nil {
			return fmt.Errorf("%w: %s", err, lastLine(string(res.Stderr)))
		}
		return nil
	}
}

func firstImage(hosts []inventory.Host) func(string) string {
	return func(name string) string {
		h, err := hostByName(hosts, name)
		if err != nil || len(h.Images) == 0 {
			return ""
		}
		return h.Images[0]
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
