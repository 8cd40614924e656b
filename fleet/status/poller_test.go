package status

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/inventory"
)

// gatherFunc adapts a function to Gatherer.
type gatherFunc func(ctx context.Context, h inventory.Host) (Facts, error)

func (f gatherFunc) Gather(ctx context.Context, h inventory.Host) (Facts, error) { return f(ctx, h) }

func hostsN(n int) []inventory.Host {
	hs := make([]inventory.Host, n)
	for i := range hs {
		hs[i] = host(fmt.Sprintf("mini-%03d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), nil)
	}
	return hs
}

func TestPollerConcurrencyCap(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	inFlight, peak := 0, 0
	g := gatherFunc(func(ctx context.Context, _ inventory.Host) (Facts, error) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return facts("1", 10), nil
	})
	s := NewStore(hostsN(40), StoreOptions{})
	p := &Poller{Store: s, Gatherer: g, Concurrency: 3, Timeout: time.Second}
	p.PollOnce(context.Background())
	st := p.Stats()
	if peak != 3 || st.MaxInFlight != 3 || st.Polls != 40 || st.InFlight != 0 {
		t.Errorf("peak seen by the gatherer %d, stats %+v; want a peak of exactly 3 and 40 polls", peak, st)
	}
	if snap := s.Snapshot(); snap.Totals.Live != 40 {
		t.Errorf("totals after one round: %+v", snap.Totals)
	}
}

// TestHungHostBlocksNobody: a host that never answers times out and turns
// OFFLINE while the other hosts are polled again and again meanwhile.
func TestHungHostBlocksNobody(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	count, running, overlap := map[string]int{}, map[string]int{}, false
	g := gatherFunc(func(ctx context.Context, h inventory.Host) (Facts, error) {
		mu.Lock()
		count[h.Name]++
		running[h.Name]++
		overlap = overlap || running[h.Name] > 1
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[h.Name]--
			mu.Unlock()
		}()
		if h.Name == "mini-001" {
			<-ctx.Done()
			return Facts{}, ctx.Err()
		}
		return facts("1", 10), nil
	})
	s := NewStore(hostsN(3), StoreOptions{Thresholds: Thresholds{StaleAfter: time.Minute, OfflineAfter: 1}})
	p := &Poller{Store: s, Gatherer: g, Interval: 20 * time.Millisecond, Timeout: 300 * time.Millisecond, Concurrency: 2}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		snap := s.Snapshot()
		if snap.Rows[1].Freshness == Offline {
			if snap.Rows[0].Freshness != Live || snap.Rows[2].Freshness != Live {
				t.Errorf("the healthy hosts are not LIVE: %+v", snap.Totals)
			}
			if !strings.Contains(snap.Rows[1].LastError, "no answer within 300ms") {
				t.Errorf("hung host's error = %q", snap.Rows[1].LastError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hung host never turned OFFLINE: %+v", snap.Rows[1])
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	fast, hung, twice := count["mini-000"], count["mini-001"], overlap
	mu.Unlock()
	if fast < 5*hung || twice {
		t.Errorf("polls: healthy host %d, hung host %d (want 5x as many for the healthy one); a host polled twice at once: %v", fast, hung, twice)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestRefreshStartsARound(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	polls := 0
	g := gatherFunc(func(context.Context, inventory.Host) (Facts, error) {
		mu.Lock()
		polls++
		mu.Unlock()
		return facts("1", 1), nil
	})
	p := &Poller{Store: NewStore(hostsN(1), StoreOptions{}), Gatherer: g, Interval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			mu.Lock()
			got := polls
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d polls, want %d", got, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(1)
	p.Refresh()
	waitFor(2)
}
