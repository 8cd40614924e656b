package tui

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/vzfleet/vzfleet/fleet/status"
	"github.com/vzfleet/vzfleet/fleet/status/statustest"
)

// updating reports -update, the flag x/exp/golden (imported by teatest)
// defines for the same purpose.
func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func TestMain(m *testing.M) {
	// Frames are compared as plain text: no colours, no attributes.
	lipgloss.SetColorProfile(termenv.Ascii)
	os.Exit(m.Run())
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a model over 8 synthetic hosts (every shape) at a fixed size.
func fixture(t *testing.T, w, h int, opts Options) (Model, *status.Store, *clock) {
	t.Helper()
	c := &clock{t: t0}
	store, _ := statustest.Fleet(8, c.Now, status.Thresholds{StaleAfter: 15 * time.Second, OfflineAfter: 1})
	opts.Snapshot = store.Snapshot
	m := New(opts)
	next, _ := m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	return next.(Model), store, c
}

func key(s string) tea.KeyMsg {
	switch s {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "up":
		return tea.KeyMsg{Type: tea.KeyUp}
	case "backspace":
		return tea.KeyMsg{Type: tea.KeyBackspace}
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

// press sends keys (each a key name or a string typed rune by rune when
// it starts with "type:") and runs the commands they return, feeding
// their messages back, as the bubbletea runtime would.
func press(t *testing.T, m Model, keys ...string) Model {
	t.Helper()
	for _, k := range keys {
		msgs := []tea.KeyMsg{key(k)}
		if text, ok := strings.CutPrefix(k, "type:"); ok {
			msgs = msgs[:0]
			for _, r := range text {
				msgs = append(msgs, key(string(r)))
			}
		}
		for _, msg := range msgs {
			next, cmd := m.Update(msg)
			m = run(t, next.(Model), cmd)
		}
	}
	return m
}

func run(t *testing.T, m Model, cmd tea.Cmd) Model {
	t.Helper()
	if cmd == nil {
		return m
	}
	msg := cmd()
	switch msg := msg.(type) {
	case nil:
		return m
	case tea.BatchMsg:
		for _, c := range msg {
			m = run(t, m, c)
		}
		return m
	case tea.QuitMsg:
		return m
	default:
		next, cmd := m.Update(msg)
		return run(t, next.(Model), cmd)
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".txt")
	if updating() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("frame %s differs (go test -update rewrites it)\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

func checkFrame(t *testing.T, frame string, w, h int) {
	t.Helper()
	lines := strings.Split(frame, "\n")
	if len(lines) != h {
		t.Errorf("frame has %d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if n := lipgloss.Width(l); n > w {
			t.Errorf("line %d is %d cells wide, more than %d: %q", i, n, w, l)
		}
	}
}

func TestGoldenFrames(t *testing.T) {
	detail := func(_ context.Context, host string) (Detail, error) {
		return Detail{
			HostDetail: status.HostDetail{
				LaunchctlPrint: "system/dev.vzfleet.vz-node = {\n\tactive count = 1\n\tstate = running\n\tpid = 302\n}",
				LogTail:        "time=10:00:01 level=INFO msg=\"node ready\" node=" + host,
			},
			Events: []string{"09:59:58 Normal  NodeReady Node/" + host + ": Node " + host + " status is now: NodeReady"},
		}, nil
	}
	tests := []struct {
		name string
		w, h int
		keys []string
	}{
		{"list-120x16", 120, 16, nil},
		{"list-72x16", 72, 16, nil},
		{"list-44x12", 44, 12, nil},
		{"filter-typing", 120, 12, []string{"/", "type:release"}},
		{"filter-label", 120, 12, []string{"/", "type:vzfleet.dev/pool=ci", "enter"}},
		{"sort-name-cursor", 120, 12, []string{"s", "down", "down"}},
		{"scrolled", 100, 8, []string{"j", "j", "j", "j", "j", "j"}},
		{"detail", 100, 40, []string{"j", "enter"}},
		{"help", 100, 20, []string{"?"}},
		{"confirm-apply", 100, 10, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, _ := fixture(t, tt.w, tt.h, Options{Detail: detail, Apply: func(context.Context, string) error { return nil }})
			m = press(t, m, tt.keys...)
			frame := m.View()
			checkFrame(t, frame, tt.w, tt.h)
			golden(t, tt.name, frame)
		})
	}
}

func TestCursorFollowsHostAcrossSorts(t *testing.T) {
	t.Parallel()
	m, _, _ := fixture(t, 120, 20, Options{})
	m = press(t, m, "j", "j")
	r, _ := m.Selected()
	for range 5 {
		m = press(t, m, "s")
		if got, _ := m.Selected(); got.Host != r.Host {
			t.Fatalf("after sorting by %s the cursor is on %s, want %s", m.sort, got.Host, r.Host)
		}
	}
	m = press(t, m, "k", "k", "k", "k", "k")
	if m.cursor != 0 {
		t.Errorf("cursor %d after moving up past the top", m.cursor)
	}
	m = press(t, m, "G")
	if m.cursor != len(m.Rows())-1 {
		t.Errorf("G left the cursor at %d of %d", m.cursor, len(m.Rows()))
	}
}

func TestFilterNarrowsAndClears(t *testing.T) {
	t.Parallel()
	m, _, _ := fixture(t, 120, 20, Options{})
	m = press(t, m, "/", "type:offline")
	if rows := m.Rows(); len(rows) != 1 || rows[0].Freshness != status.Offline {
		t.Fatalf("filter offline shows %d rows: %+v", len(rows), rows)
	}
	m = press(t, m, "backspace", "backspace", "backspace", "backspace", "backspace", "backspace", "backspace", "type:mini-00")
	if n := len(m.Rows()); n != 8 {
		t.Errorf("filter mini-00 shows %d rows, want 8", n)
	}
	m = press(t, m, "type:3", "enter")
	if rows := m.Rows(); len(rows) != 1 || rows[0].Host != "mini-003" || m.mode != modeList {
		t.Errorf("filter mini-003 shows %+v (mode %d)", rows, m.mode)
	}
	m = press(t, m, "esc")
	if n := len(m.Rows()); n != 8 || m.filter != "" {
		t.Errorf("esc left %d rows and filter %q", n, m.filter)
	}
	m = press(t, m, "/", "type:a=b=c")
	if m.filterErr == nil || len(m.Rows()) != 8 || !strings.Contains(m.View(), "filter \"a=b=c\"") {
		t.Errorf("a bad selector should show its error and every row: err %v, rows %d", m.filterErr, len(m.Rows()))
	}
}

func TestFreshnessOnScreen(t *testing.T) {
	t.Parallel()
	m, store, c := fixture(t, 140, 20, Options{Filter: "mini-001"})
	state := func() status.Freshness {
		t.Helper()
		rows := m.Rows()
		if len(rows) != 1 {
			t.Fatalf("%d rows", len(rows))
		}
		return rows[0].Freshness
	}
	tick := func() {
		next, _ := m.Update(tickMsg(c.Now()))
		m = next.(Model)
	}
	if got := state(); got != status.Live {
		t.Fatalf("start: %s", got)
	}
	c.Advance(20 * time.Second)
	tick()
	if got := state(); got != status.Stale || !strings.Contains(m.View(), "STALE") {
		t.Fatalf("after 20s without polls: %s", got)
	}
	store.Record("mini-001", status.Facts{}, statustest.ErrUnreachable, c.Now())
	tick()
	if got := state(); got != status.Offline || !strings.Contains(m.View(), "OFFLINE") {
		t.Fatalf("after a failed poll: %s", got)
	}
	statustest.RecordShape(store, statustest.Host(0), statustest.Healthy, c.Now())
	tick()
	if got := state(); got != status.Live {
		t.Fatalf("after a good poll: %s", got)
	}
}

func TestApplyAsksFirst(t *testing.T) {
	t.Parallel()
	var applied []string
	apply := func(_ context.Context, host string) error { applied = append(applied, host); return nil }
	m, _, _ := fixture(t, 120, 20, Options{Apply: apply, Sort: status.SortName})
	m = press(t, m, "a", "n")
	if len(applied) != 0 || m.message != "apply cancelled" {
		t.Fatalf("n applied anyway: %v (%q)", applied, m.message)
	}
	m = press(t, m, "j", "a", "y")
	if len(applied) != 1 || applied[0] != "mini-002" || m.message != "apply mini-002: done" {
		t.Errorf("applied %v, message %q", applied, m.message)
	}
	m, _, _ = fixture(t, 120, 20, Options{})
	m = press(t, m, "a")
	if m.mode != modeList || !strings.Contains(m.View(), "apply is not available") {
		t.Errorf("without an ApplyFunc, a should only say so")
	}
}

func TestPrepull(t *testing.T) {
	t.Parallel()
	type call struct{ host, image string }
	var calls []call
	prepull := func(_ context.Context, host, image string) error {
		calls = append(calls, call{host, image})
		if image == "bad" {
			return statustest.ErrUnreachable
		}
		return nil
	}
	m, _, _ := fixture(t, 120, 20, Options{Prepull: prepull, Sort: status.SortName,
		Image: func(host string) string { return "ghcr.io/acme/macos:" + host }})
	m = press(t, m, "p", "enter")
	if len(calls) != 1 || calls[0] != (call{"mini-001", "ghcr.io/acme/macos:mini-001"}) {
		t.Fatalf("calls %v", calls)
	}
	m = press(t, m, "p", "ctrl+c")
	m = press(t, m, "p")
	m.input.SetValue("")
	m = press(t, m, "type:bad", "enter")
	if len(calls) != 2 || !strings.Contains(m.message, "prepull mini-001 failed: connect: connection refused") {
		t.Errorf("calls %v, message %q", calls, m.message)
	}
}

func TestRefreshAndQuit(t *testing.T) {
	t.Parallel()
	refreshed := 0
	m, _, _ := fixture(t, 120, 20, Options{Refresh: func() { refreshed++ }})
	m = press(t, m, "r")
	if refreshed != 1 {
		t.Errorf("r refreshed %d times", refreshed)
	}
	for _, k := range []string{"q", "ctrl+c"} {
		_, cmd := m.Update(key(k))
		if cmd == nil {
			t.Fatalf("%s returned no command", k)
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Errorf("%s does not quit", k)
		}
	}
	m = press(t, m, "enter")
	if _, cmd := m.Update(key("q")); cmd != nil || m.mode != modeDetail {
		t.Errorf("q in the detail view should go back, not quit")
	}
}

// A script (or fast typing) can deliver "/" and the filter text in one read,
// which bubbletea reports as one message: "/" still opens the filter first.
func TestKeysArrivingInOneReadAreTakenInOrder(t *testing.T) {
	t.Parallel()
	m, _, _ := fixture(t, 120, 20, Options{})
	next, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("/offline")})
	m = run(t, next.(Model), cmd)
	if m.mode != modeFilter || m.input.Value() != "offline" {
		t.Fatalf("mode %d, filter input %q; want the filter open with %q", m.mode, m.input.Value(), "offline")
	}
	if rows := m.Rows(); len(rows) != 1 || rows[0].Freshness != status.Offline {
		t.Fatalf("filter offline shows %d rows: %+v", len(rows), rows)
	}
}

// Nodes of vz-node's that the inventory does not name show on the status
// line.
func TestStraysShown(t *testing.T) {
	t.Parallel()
	c := &clock{t: t0}
	store, _ := statustest.Fleet(3, c.Now, status.Thresholds{StaleAfter: 15 * time.Second, OfflineAfter: 1})
	m := New(Options{Snapshot: func() status.Snapshot {
		snap := store.Snapshot()
		snap.Strays = []status.Stray{{Node: "mini-09", Ready: status.ReadyUnknown, Pods: 2}}
		return snap
	}})
	next, _ := m.Update(tea.WindowSizeMsg{Width: 140, Height: 8})
	frame := next.(Model).View()
	checkFrame(t, frame, 140, 8)
	golden(t, "list-strays", frame)
}
