package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/inventory"
)

// PrepullOptions configure Prepull.
type PrepullOptions struct {
	// Ref is the image to pull on every host.
	Ref string
	// MaxHosts caps the hosts pulling at once (default 4): a registry
	// serves a rack, not every Mac at full speed at once.
	MaxHosts int
	// Concurrency is how many disk chunks each host fetches at once
	// (0: vz-node's default).
	Concurrency int
	// Policy is vz-node pull's --policy (default Always: re-resolve the
	// tag, fetch only chunks the host lacks).
	Policy string
	// Insecure lists registries the hosts reach over plain HTTP.
	Insecure []string
	// StallTimeout fails a host whose pull reports no progress for this
	// long (a registry or host that stopped answering); default
	// DefaultStallTimeout, negative: no bound.
	StallTimeout time.Duration
	// Connect opens a host (e.g. status.DialInventoryHost).
	Connect func(ctx context.Context, h inventory.Host) (remote.Host, error)
	// Update, if set, receives every change of a host's progress, one call
	// at a time.
	Update func(PullProgress)
}

// DefaultStallTimeout is how long a host's pull may report no progress
// before it fails.
const DefaultStallTimeout = 10 * time.Minute

// PullState is where one host's pull is.
type PullState string

// Pull states, in order.
const (
	PullWaiting    PullState = "waiting"
	PullConnecting PullState = "connecting"
	PullRunning    PullState = "pulling"
	PullDone       PullState = "done"
	PullFailed     PullState = "failed"
)

// PullProgress is one host's pull as last reported by its vz-node.
type PullProgress struct {
	Host string
	// Ref is the image pulled.
	Ref         string
	State       PullState
	Digest      string
	BytesDone   int64
	BytesTotal  int64
	Downloaded  int64 // compressed bytes received from the registry
	ChunksDone  int
	ChunksTotal int
	Elapsed     time.Duration
	// Rate is the recent pace in disk bytes per second (chunks found
	// locally count too); ETA is the time left at that pace.
	Rate float64
	ETA  time.Duration
	Err  error

	lastDone    int64
	lastElapsed float64
}

// pullEvent is one line of `vz-node pull --progress=json`.
type pullEvent struct {
	Reference   string  `json:"reference"`
	Digest      string  `json:"digest"`
	BytesDone   int64   `json:"bytesDone"`
	BytesTotal  int64   `json:"bytesTotal"`
	Downloaded  int64   `json:"downloaded"`
	ChunksDone  int     `json:"chunksDone"`
	ChunksTotal int     `json:"chunksTotal"`
	Elapsed     float64 `json:"elapsedSeconds"`
	Done        bool    `json:"done"`
	Error       string  `json:"error"`
}

// rateWeight is how much a new sample moves the smoothed rate.
const rateWeight = 0.3

// apply folds one line of vz-node's JSON progress into p; lines that are
// not progress objects are ignored (false).
func (p *PullProgress) apply(line []byte) bool {
	var e pullEvent
	if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &e) != nil {
		return false
	}
	if e.Error != "" {
		p.State, p.Err = PullFailed, errors.New(e.Error)
		return true
	}
	if e.Elapsed > p.lastElapsed {
		sample := float64(e.BytesDone-p.lastDone) / (e.Elapsed - p.lastElapsed)
		if p.Rate == 0 || p.lastElapsed == 0 {
			p.Rate = sample
		} else {
			p.Rate = rateWeight*sample + (1-rateWeight)*p.Rate
		}
		p.lastDone, p.lastElapsed = e.BytesDone, e.Elapsed
	}
	p.Digest = e.Digest
	p.BytesDone, p.BytesTotal, p.Downloaded = e.BytesDone, e.BytesTotal, max(p.Downloaded, e.Downloaded)
	if e.ChunksTotal > 0 {
		p.ChunksDone, p.ChunksTotal = e.ChunksDone, e.ChunksTotal
	}
	p.Elapsed = time.Duration(e.Elapsed * float64(time.Second))
	p.ETA = 0
	if p.Rate > 0 && p.BytesTotal > p.BytesDone {
		p.ETA = time.Duration(float64(p.BytesTotal-p.BytesDone) / p.Rate * float64(time.Second))
	}
	if e.Done {
		p.State, p.ETA = PullDone, 0
		if p.Elapsed > 0 {
			p.Rate = float64(p.BytesTotal) / p.Elapsed.Seconds()
		}
	}
	return true
}

// lineWriter calls fn with each complete line written to it.
type lineWriter struct {
	buf []byte
	fn  func([]byte)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// Prepull runs `vz-node pull REF --progress=json` on every host, at most
// MaxHosts at once, streaming each host's progress to Update. A host that
// fails never stops the others. It returns every host's final progress, in
// the order of hosts.
func Prepull(ctx context.Context, hosts []inventory.Host, opts PrepullOptions) []PullProgress {
	if opts.MaxHosts <= 0 {
		opts.MaxHosts = 4
	}
	if opts.Policy == "" {
		opts.Policy = "Always"
	}
	var mu sync.Mutex
	update := func(p *PullProgress, f func()) {
		mu.Lock()
		defer mu.Unlock()
		f()
		if opts.Update != nil {
			opts.Update(*p)
		}
	}
	res := make([]PullProgress, len(hosts))
	for i, h := range hosts {
		res[i] = PullProgress{Host: h.Name, Ref: opts.Ref, State: PullWaiting}
		if opts.Update != nil {
			opts.Update(res[i])
		}
	}
	sem := make(chan struct{}, opts.MaxHosts)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			p := &res[i]
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				update(p, func() { p.State, p.Err = PullFailed, ctx.Err() })
				return
			}
			defer func() { <-sem }()
			err := prepullHost(ctx, h, opts, p, update)
			update(p, func() {
				switch {
				case err != nil && p.Err == nil:
					p.State, p.Err = PullFailed, err
				case err != nil:
					p.State = PullFailed
				case p.State != PullDone:
					p.State, p.Err = PullFailed, fmt.Errorf("vz-node pull on %s ended without reporting the image as done", h.Name)
				}
			})
		})
	}
	wg.Wait()
	return res
}

func prepullHost(ctx context.Context, h inventory.Host, opts PrepullOptions, p *PullProgress, update func(*PullProgress, func())) error {
	update(p, func() { p.State = PullConnecting })
	conn, err := opts.Connect(ctx, h)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", h.Name, err)
	}
	defer conn.Close()
	return pullOn(ctx, conn, h, opts, p, update)
}

// pullOn runs `vz-node pull` for opts.Ref on a connected host, folding its
// progress into p.
func pullOn(ctx context.Context, conn remote.Host, h inventory.Host, opts PrepullOptions, p *PullProgress, update func(*PullProgress, func())) error {
	args := []string{h.Paths.Binary, "pull", opts.Ref, "--cache-dir", h.Paths.CacheDir, "--progress=json", "--policy", opts.Policy}
	if opts.Concurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(opts.Concurrency))
	}
	for _, r := range opts.Insecure {
		args = append(args, "--insecure-registry", r)
	}
	update(p, func() { p.State = PullRunning })
	// vz-node reports progress as bytes arrive; a pull that reports
	// nothing for stall has stopped.
	stall := opts.StallTimeout
	if stall == 0 {
		stall = DefaultStallTimeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stalled := fmt.Errorf("%s: vz-node pull reported no progress for %s (is the registry or the host stuck?)", h.Name, stall)
	var watchdog *time.Timer
	if stall > 0 {
		watchdog = time.AfterFunc(stall, func() { cancel(stalled) })
		defer watchdog.Stop()
	}
	out := &lineWriter{fn: func(line []byte) {
		if watchdog != nil {
			watchdog.Reset(stall)
		}
		update(p, func() { p.apply(line) })
	}}
	var stderr bytes.Buffer
	_, err := conn.Run(ctx, remote.Cmd{Args: args, Sudo: true, Stdout: out, Stderr: &stderr})
	if err != nil && errors.Is(context.Cause(ctx), stalled) {
		return stalled
	}
	if err != nil {
		var said error
		update(p, func() { said = p.Err })
		if said != nil { // vz-node's own error line says why
			return said
		}
		var exit *remote.ExitError
		if errors.As(err, &exit) && exit.Code == 127 {
			return fmt.Errorf("%s: vz-node is not installed at %s (install it with fleetctl apply): %w", h.Name, h.Paths.Binary, err)
		}
		if msg := lastLine(strings.TrimSpace(stderr.String())); msg != "" && !strings.Contains(err.Error(), msg) {
			return fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// PrepullErr is nil when every host pulled the image, else an error naming
// each failed host and why.
func PrepullErr(res []PullProgress) error {
	var parts []string
	for _, p := range res {
		if p.State != PullDone {
			parts = append(parts, fmt.Sprintf("%s (%v)", p.Host, p.Err))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d hosts failed to pull: %s", len(parts), len(res), strings.Join(parts, "; "))
}

// FormatPullProgress is one host's progress as a line of text.
func FormatPullProgress(p PullProgress) string {
	switch p.State {
	case PullWaiting, PullConnecting:
		return fmt.Sprintf("%s: %s", p.Host, p.State)
	case PullRunning:
		if p.BytesTotal == 0 {
			return fmt.Sprintf("%s: pulling, resolving the image", p.Host)
		}
	case PullFailed:
		return fmt.Sprintf("%s: failed: %v", p.Host, p.Err)
	case PullDone:
		return fmt.Sprintf("%s: done, %s in %s (%s downloaded, %s/s)", p.Host, humanBytes(p.BytesTotal),
			p.Elapsed.Round(100*time.Millisecond), humanBytes(p.Downloaded), humanBytes(int64(p.Rate)))
	}
	line := fmt.Sprintf("%s: %s %s / %s (%d%%), chunks %d/%d, %s/s", p.Host, bar(p.BytesDone, p.BytesTotal, 20),
		humanBytes(p.BytesDone), humanBytes(p.BytesTotal), percent(p.BytesDone, p.BytesTotal), p.ChunksDone, p.ChunksTotal,
		humanBytes(int64(p.Rate)))
	if p.ETA > 0 {
		line += ", ETA " + p.ETA.Round(time.Second).String()
	}
	return line
}

func percent(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return 100 * done / total
}

func bar(done, total int64, width int) string {
	n := int(percent(done, total) * int64(width) / 100)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// PrepullPrinter shows hosts' progress: on a terminal a block of one line
// per host redrawn in place, otherwise plain lines, one per host when its
// state changes and at most every Every while it pulls.
type PrepullPrinter struct {
	W     io.Writer
	TTY   bool
	Every time.Duration // plain mode's interval (default 5s)
	Now   func() time.Time

	mu       sync.Mutex
	order    []string
	lines    map[string]string
	last     map[string]time.Time
	states   map[string]PullState
	drawn    int
	lastDraw time.Time
}

// Update records p and prints as the mode says.
func (pp *PrepullPrinter) Update(p PullProgress) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.lines == nil {
		pp.lines, pp.last, pp.states = map[string]string{}, map[string]time.Time{}, map[string]PullState{}
	}
	if pp.Now == nil {
		pp.Now = time.Now
	}
	if pp.Every <= 0 {
		pp.Every = 5 * time.Second
	}
	if _, ok := pp.lines[p.Host]; !ok {
		pp.order = append(pp.order, p.Host)
	}
	line := FormatPullProgress(p)
	pp.lines[p.Host] = line
	now := pp.Now()
	changed := pp.states[p.Host] != p.State
	pp.states[p.Host] = p.State
	if pp.TTY {
		if changed || now.Sub(pp.lastDraw) >= 100*time.Millisecond {
			pp.redraw()
			pp.lastDraw = now
		}
		return
	}
	if p.State == PullWaiting {
		return
	}
	if changed || now.Sub(pp.last[p.Host]) >= pp.Every {
		fmt.Fprintln(pp.W, line)
		pp.last[p.Host] = now
	}
}

// Finish draws the final state on a terminal.
func (pp *PrepullPrinter) Finish() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.TTY {
		pp.redraw()
	}
}

func (pp *PrepullPrinter) redraw() {
	var b strings.Builder
	if pp.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", pp.drawn)
	}
	for _, h := range pp.order {
		b.WriteString("\r\x1b[2K")
		b.WriteString(pp.lines[h])
		b.WriteByte('\n')
	}
	pp.drawn = len(pp.order)
	io.WriteString(pp.W, b.String())
}

// WritePrepullSummary writes one row per host and a closing sentence.
func WritePrepullSummary(w io.Writer, res []PullProgress) error {
	rows := append([]PullProgress(nil), res...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Host < rows[j].Host })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATUS\tDISK\tDOWNLOADED\tTIME\tRATE\tDIGEST / ERROR")
	failed := 0
	for _, p := range rows {
		detail := p.Digest
		if p.State != PullDone {
			failed++
			detail = oneLine(fmt.Sprint(p.Err))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s/s\t%s\n", p.Host, p.State, humanBytes(p.BytesTotal), humanBytes(p.Downloaded),
			p.Elapsed.Round(100*time.Millisecond), humanBytes(int64(p.Rate)), detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d of %d hosts have the image", len(rows)-failed, len(rows))
	if err == nil && failed > 0 {
		_, err = fmt.Fprintf(w, "; %d failed", failed)
	}
	if err == nil {
		_, err = fmt.Fprintln(w, ".")
	}
	return err
}
