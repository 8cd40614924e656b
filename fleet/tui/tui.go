// Package tui is fleetctl status's terminal UI: a bubbletea program over
// the rows of package status. It draws the totals, a table whose least
// important columns go first on narrow terminals, and per-host detail;
// it filters, sorts, refreshes, and starts apply and prepull on one host
// through functions it is given, so it knows nothing about SSH or
// Kubernetes itself.
package tui

import (
	"context"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/vzfleet/vzfleet/fleet/status"
)

// ApplyFunc makes one host match the inventory (fleetctl apply --limit).
type ApplyFunc func(ctx context.Context, host string) error

// PrepullFunc pulls an image into one host's cache.
type PrepullFunc func(ctx context.Context, host, image string) error

// Detail is what the host detail screen shows beyond the row.
type Detail struct {
	status.HostDetail
	// Events are recent Kubernetes events about the node and its pods.
	Events []string
}

// Options connect the UI to its data and actions.
type Options struct {
	// Snapshot returns the fleet now (status.Store.Snapshot).
	Snapshot func() status.Snapshot
	// Refresh asks the sources for fresh data (status.Poller.Refresh);
	// may be nil.
	Refresh func()
	// Detail fetches a host's detail; may be nil.
	Detail func(ctx context.Context, host string) (Detail, error)
	// Apply and Prepull act on one host; nil disables the key.
	Apply   ApplyFunc
	Prepull PrepullFunc
	// Image proposes the image `p` pulls to a host ("" leaves the prompt
	// empty).
	Image func(host string) string
	// Sort and Filter are the initial order and filter.
	Sort   status.SortKey
	Filter string
	// Tick is how often the screen redraws from Snapshot; default 1s.
	Tick time.Duration
	// ActionTimeout bounds apply, prepull and detail; default 10m.
	ActionTimeout time.Duration
}

// Run shows the UI on the terminal until the user quits or ctx ends.
func Run(ctx context.Context, opts Options, teaOpts ...tea.ProgramOption) error {
	teaOpts = append([]tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx)}, teaOpts...)
	_, err := tea.NewProgram(New(opts), teaOpts...).Run()
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}
