// Package status benchmarks fleetctl status with 200 synthetic hosts: how
// long the terminal UI takes to draw a frame, and how many SSH polls run at
// once under the poller's concurrency cap (reported, not asserted, as the
// max-in-flight metric next to the cap).
//
//	go test ./bench/status -run '^$' -bench . -benchtime 2s
package status

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/vzfleet/vzfleet/fleet/status"
	"github.com/vzfleet/vzfleet/fleet/status/statustest"
	"github.com/vzfleet/vzfleet/fleet/tui"
)

const hosts = 200

func fleet() *status.Store {
	now := time.Now()
	s, _ := statustest.Fleet(hosts, func() time.Time { return now }, status.DefaultThresholds)
	return s
}

// BenchmarkFrame is one screen update as the user sees it: a fresh
// snapshot of 200 hosts, filtered, sorted, laid out and drawn (the `r`
// key does exactly that), at two terminal sizes and with colours on.
func BenchmarkFrame(b *testing.B) {
	lipgloss.SetColorProfile(termenv.TrueColor)
	store := fleet()
	for _, size := range []struct{ w, h int }{{200, 60}, {80, 24}} {
		b.Run(fmt.Sprintf("%dx%d", size.w, size.h), func(b *testing.B) {
			var m tea.Model = tui.New(tui.Options{Snapshot: store.Snapshot})
			m, _ = m.Update(tea.WindowSizeMsg{Width: size.w, Height: size.h})
			refresh := tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				m, _ = m.Update(refresh)
				_ = m.View()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/frame")
		})
	}
}

// BenchmarkTableOutput is `fleetctl status -o table` for 200 hosts.
func BenchmarkTableOutput(b *testing.B) {
	store := fleet()
	b.ReportAllocs()
	for b.Loop() {
		snap := store.Snapshot()
		status.Sort(snap.Rows, status.SortProblems)
		if err := status.RenderTable(io.Discard, snap, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoller polls 200 hosts that each answer after 2ms, with a cap
// of 16, while the screen takes snapshots as fast as it can, and reports
// the most polls ever in flight at once against the cap.
func BenchmarkPoller(b *testing.B) {
	for _, capacity := range []int{4, 16} {
		b.Run(fmt.Sprintf("cap%d", capacity), func(b *testing.B) {
			store := fleet()
			p := &status.Poller{
				Store:       store,
				Gatherer:    statustest.Gatherer{Delay: 2 * time.Millisecond, Fail: func(h string) bool { return h[len(h)-1] == '7' }},
				Concurrency: capacity,
				Timeout:     time.Second,
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					_ = store.Snapshot()
				}
			}()
			b.ResetTimer()
			for b.Loop() {
				p.PollOnce(ctx)
			}
			b.StopTimer()
			cancel()
			wg.Wait()
			st := p.Stats()
			b.ReportMetric(float64(st.MaxInFlight), "max-in-flight")
			b.ReportMetric(float64(capacity), "cap")
			b.ReportMetric(float64(st.Polls)/float64(b.N), "polls/round")
		})
	}
}
