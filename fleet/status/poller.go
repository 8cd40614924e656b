package status

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vzfleet/vzfleet/inventory"
)

// Poller polls every host's facts on an interval, at most Concurrency at a
// time, and records each outcome in a Store. A host whose previous poll is
// still running is skipped, so a hung host never piles up polls; each poll
// ends after Timeout.
type Poller struct {
	Store    *Store
	Gatherer Gatherer
	// Interval between rounds; default 5s.
	Interval time.Duration
	// Timeout bounds one host's poll; default Interval (at least 2s).
	Timeout time.Duration
	// Concurrency caps polls in flight; default 16.
	Concurrency int

	refresh  chan struct{}
	initOnce sync.Once

	busy        sync.Map // host name -> struct{}
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	polls       atomic.Int64
}

func (p *Poller) init() {
	p.initOnce.Do(func() {
		if p.Interval <= 0 {
			p.Interval = 5 * time.Second
		}
		if p.Timeout <= 0 {
			p.Timeout = max(p.Interval, 2*time.Second)
		}
		if p.Concurrency <= 0 {
			p.Concurrency = 16
		}
		p.refresh = make(chan struct{}, 1)
	})
}

// Run polls until ctx ends: a round at once, then one per Interval or
// whenever Refresh asks.
func (p *Poller) Run(ctx context.Context) {
	p.init()
	sem := make(chan struct{}, p.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		p.round(ctx, sem, &wg)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.refresh:
		}
	}
}

// Refresh asks for a round now.
func (p *Poller) Refresh() {
	p.init()
	select {
	case p.refresh <- struct{}{}:
	default:
	}
}

// PollOnce polls every host once and waits for all of them.
func (p *Poller) PollOnce(ctx context.Context) {
	p.init()
	sem := make(chan struct{}, p.Concurrency)
	var wg sync.WaitGroup
	p.round(ctx, sem, &wg)
	wg.Wait()
}

// round starts a poll for every idle host. Starting blocks on the
// semaphore, never on a host, so one slow host delays nobody else's turn
// beyond its own slot.
func (p *Poller) round(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) {
	for _, h := range p.Store.Hosts() {
		if _, running := p.busy.LoadOrStore(h.Name, struct{}{}); running {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			p.busy.Delete(h.Name)
			return
		}
		wg.Add(1)
		go func(h inventory.Host) {
			defer wg.Done()
			defer func() { <-sem }()
			defer p.busy.Delete(h.Name)
			p.poll(ctx, h)
		}(h)
	}
}

func (p *Poller) poll(parent context.Context, h inventory.Host) {
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for {
		m := p.maxInFlight.Load()
		if n <= m || p.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	ctx, cancel := context.WithTimeout(parent, p.Timeout)
	defer cancel()
	f, err := p.Gatherer.Gather(ctx, h)
	if parent.Err() != nil {
		// The poller stops; the outcome says nothing about the host.
		return
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("host %s: no answer within %s", h.Name, p.Timeout)
	}
	p.polls.Add(1)
	p.Store.Record(h.Name, f, err, p.Store.Now())
}

// Stats describe the poller's work so far.
type Stats struct {
	// InFlight is the number of polls running now; MaxInFlight the most
	// ever running at once (never above Concurrency).
	InFlight, MaxInFlight int
	// Polls counts finished polls.
	Polls int
}

// Stats returns the poller's counters.
func (p *Poller) Stats() Stats {
	return Stats{InFlight: int(p.inFlight.Load()), MaxInFlight: int(p.maxInFlight.Load()), Polls: int(p.polls.Load())}
}
