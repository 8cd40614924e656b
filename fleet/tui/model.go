package tui

import (
	"context"
	"fmt"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/vzfleet/vzfleet/fleet/status"
)

type mode int

const (
	modeList mode = iota
	modeFilter
	modeDetail
	modeHelp
	modeConfirmApply
	modePrepull
)

type tickMsg time.Time

type detailMsg struct {
	host   string
	detail Detail
	err    error
}

type actionMsg struct {
	what, host string
	err        error
}

// Model is the bubbletea model; New makes one.
type Model struct {
	opts Options

	snap status.Snapshot
	rows []status.Row // filtered and sorted
	// selected is the host under the cursor, so the cursor follows it
	// when rows move.
	selected string
	cursor   int
	offset   int

	sort      status.SortKey
	filter    string
	filterErr error
	input     lineInput

	mode          mode
	width, height int

	detailHost   string
	detail       *Detail
	detailErr    error
	detailScroll int

	message string
}

// New makes the model and takes a first snapshot.
func New(opts Options) Model {
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.ActionTimeout <= 0 {
		opts.ActionTimeout = 10 * time.Minute
	}
	m := Model{opts: opts, sort: opts.Sort, filter: opts.Filter, width: 120, height: 30}
	m.refresh()
	return m
}

// Init implements tea.Model.
func (m Model) Init() tea.Cmd { return m.tick() }

func (m Model) tick() tea.Cmd {
	return tea.Tick(m.opts.Tick, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// refresh takes a snapshot and recomputes the visible rows.
func (m *Model) refresh() {
	m.snap = m.opts.Snapshot()
	m.recompute()
}

func (m *Model) recompute() {
	rows, err := status.Filter(append([]status.Row(nil), m.snap.Rows...), m.filter)
	m.filterErr = err
	if err != nil {
		rows = append([]status.Row(nil), m.snap.Rows...)
	}
	status.Sort(rows, m.sort)
	m.rows = rows
	m.cursor = 0
	for i, r := range rows {
		if r.Host == m.selected {
			m.cursor = i
		}
	}
	m.setCursor(m.cursor)
}

func (m *Model) setCursor(i int) {
	m.cursor = max(0, min(i, len(m.rows)-1))
	if len(m.rows) > 0 {
		m.selected = m.rows[m.cursor].Host
	}
	visible := m.tableHeight()
	if m.cursor < m.offset {
		m.offset = m.cursor
	}
	if m.cursor >= m.offset+visible {
		m.offset = m.cursor - visible + 1
	}
	m.offset = max(0, min(m.offset, len(m.rows)-visible))
}

// Selected is the row under the cursor.
func (m Model) Selected() (status.Row, bool) {
	if m.cursor < len(m.rows) {
		return m.rows[m.cursor], true
	}
	return status.Row{}, false
}

// Rows are the rows on screen, filtered and sorted.
func (m Model) Rows() []status.Row { return m.rows }

// Update implements tea.Model.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.setCursor(m.cursor)
		return m, nil
	case tickMsg:
		m.refresh()
		return m, m.tick()
	case detailMsg:
		if msg.host == m.detailHost {
			m.detail, m.detailErr = &msg.detail, msg.err
		}
		return m, nil
	case actionMsg:
		if msg.err != nil {
			m.message = fmt.Sprintf("%s %s failed: %v", msg.what, msg.host, msg.err)
		} else {
			m.message = fmt.Sprintf("%s %s: done", msg.what, msg.host)
		}
		m.refresh()
		return m, m.refreshSources()
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.Type == tea.KeyCtrlC {
		return m, tea.Quit
	}
	// Keys typed fast (or sent by a script) can arrive in one read, which
	// bubbletea reports as one message; take them one at a time so that "/"
	// opens the filter before the text after it is typed into it.
	if k.Type == tea.KeyRunes && len(k.Runes) > 1 && !k.Paste {
		var model tea.Model = m
		var cmds []tea.Cmd
		for _, r := range k.Runes {
			var cmd tea.Cmd
			model, cmd = model.(Model).key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
			cmds = append(cmds, cmd)
		}
		return model, tea.Batch(cmds...)
	}
	switch m.mode {
	case modeFilter:
		return m.filterKey(k)
	case modePrepull:
		return m.prepullKey(k)
	case modeConfirmApply:
		return m.confirmKey(k)
	case modeHelp:
		m.mode = modeList
		return m, nil
	case modeDetail:
		return m.detailKey(k)
	}
	switch k.String() {
	case "q":
		return m, tea.Quit
	case "up", "k":
		m.setCursor(m.cursor - 1)
	case "down", "j":
		m.setCursor(m.cursor + 1)
	case "pgup":
		m.setCursor(m.cursor - m.tableHeight())
	case "pgdown":
		m.setCursor(m.cursor + m.tableHeight())
	case "home", "g":
		m.setCursor(0)
	case "end", "G":
		m.setCursor(len(m.rows) - 1)
	case "/":
		m.mode = modeFilter
		m.input.SetValue(m.filter)
	case "esc":
		m.filter, m.message = "", ""
		m.recompute()
	case "s":
		m.sort = m.sort.Next()
		m.message = "sorted by " + m.sort.String()
		m.recompute()
	case "r":
		m.message = "refreshing"
		m.refresh()
		return m, m.refreshSources()
	case "?":
		m.mode = modeHelp
	case "enter":
		if r, ok := m.Selected(); ok {
			m.mode, m.detailHost, m.detail, m.detailErr, m.detailScroll = modeDetail, r.Host, nil, nil, 0
			return m, m.fetchDetail(r.Host)
		}
	case "a":
		if _, ok := m.Selected(); ok && m.opts.Apply != nil {
			m.mode = modeConfirmApply
		} else if m.opts.Apply == nil {
			m.message = "apply is not available here"
		}
	case "p":
		if r, ok := m.Selected(); ok && m.opts.Prepull != nil {
			m.mode = modePrepull
			img := ""
			if m.opts.Image != nil {
				img = m.opts.Image(r.Host)
			}
			m.input.SetValue(img)
		} else if m.opts.Prepull == nil {
			m.message = "prepull is not available here"
		}
	}
	return m, nil
}

func (m Model) filterKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.Type {
	case tea.KeyEnter:
		m.mode = modeList
		return m, nil
	case tea.KeyEsc:
		m.mode, m.filter = modeList, ""
		m.recompute()
		return m, nil
	}
	m.input.Update(k)
	m.filter = m.input.Value()
	m.recompute()
	return m, nil
}

func (m Model) prepullKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.Type {
	case tea.KeyEnter:
		m.mode = modeList
		r, ok := m.Selected()
		img := m.input.Value()
		if !ok || img == "" {
			m.message = "prepull: no image given"
			return m, nil
		}
		m.message = fmt.Sprintf("prepull %s to %s: started", img, r.Host)
		return m, m.action("prepull", r.Host, func(ctx context.Context) error { return m.opts.Prepull(ctx, r.Host, img) })
	case tea.KeyEsc:
		m.mode = modeList
		return m, nil
	}
	m.input.Update(k)
	return m, nil
}

func (m Model) confirmKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	m.mode = modeList
	r, ok := m.Selected()
	if !ok || (k.String() != "y" && k.String() != "Y") {
		m.message = "apply cancelled"
		return m, nil
	}
	m.message = fmt.Sprintf("apply %s: started", r.Host)
	return m, m.action("apply", r.Host, func(ctx context.Context) error { return m.opts.Apply(ctx, r.Host) })
}

func (m Model) detailKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.String() {
	case "q", "esc", "enter", "backspace":
		m.mode = modeList
	case "up", "k":
		m.detailScroll = max(0, m.detailScroll-1)
	case "down", "j":
		m.detailScroll++
	case "pgup":
		m.detailScroll = max(0, m.detailScroll-(m.height-2))
	case "pgdown":
		m.detailScroll += m.height - 2
	case "r":
		m.refresh()
		return m, tea.Batch(m.fetchDetail(m.detailHost), m.refreshSources())
	}
	return m, nil
}

func (m Model) refreshSources() tea.Cmd {
	if m.opts.Refresh == nil {
		return nil
	}
	return func() tea.Msg { m.opts.Refresh(); return nil }
}

func (m Model) fetchDetail(host string) tea.Cmd {
	if m.opts.Detail == nil {
		return nil
	}
	timeout := m.opts.ActionTimeout
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		d, err := m.opts.Detail(ctx, host)
		return detailMsg{host: host, detail: d, err: err}
	}
}

func (m Model) action(what, host string, fn func(context.Context) error) tea.Cmd {
	timeout := m.opts.ActionTimeout
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return actionMsg{what: what, host: host, err: fn(ctx)}
	}
}
