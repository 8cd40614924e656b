package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/vzfleet/vzfleet/fleet/status"
)

var (
	styleTitle    = lipgloss.NewStyle().Bold(true)
	styleHeader   = lipgloss.NewStyle().Bold(true).Underline(true)
	styleSelected = lipgloss.NewStyle().Reverse(true)
	styleDim      = lipgloss.NewStyle().Faint(true)
	styleBad      = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	styleWarn     = lipgloss.NewStyle().Foreground(lipgloss.Color("11"))
	styleGood     = lipgloss.NewStyle().Foreground(lipgloss.Color("10"))
)

// chrome is the lines around the table: title, status line, header and
// footer.
const chrome = 4

func (m Model) tableHeight() int { return max(1, m.height-chrome) }

// View implements tea.Model.
func (m Model) View() string {
	var lines []string
	switch m.mode {
	case modeDetail:
		lines = m.detailView()
	case modeHelp:
		lines = m.helpView()
	default:
		lines = m.listView()
	}
	for len(lines) < m.height {
		lines = append(lines, "")
	}
	if len(lines) > m.height {
		lines = lines[:m.height]
	}
	for i, l := range lines {
		lines[i] = clip(l, m.width)
	}
	return strings.Join(lines, "\n")
}

func (m Model) listView() []string {
	lines := []string{styleTitle.Render("vzfleet") + "  " + status.TotalsLine(m.snap.Totals)}
	var info string
	if m.mode == modeFilter {
		info = "filter: " + m.input.View()
	} else {
		info = "sort: " + m.sort.String()
		if m.filter != "" {
			info += "  filter: " + m.filter
		}
		info += fmt.Sprintf("  shown %d/%d", len(m.rows), len(m.snap.Rows))
	}
	if m.filterErr != nil {
		info += "  " + styleBad.Render(m.filterErr.Error())
	}
	if line := status.StraysLine(m.snap.Strays); line != "" {
		info += "  " + styleWarn.Render(line)
	}
	lines = append(lines, info+"  "+styleDim.Render("at "+m.snap.Time.Format(time.TimeOnly)))

	cells := status.Cells(status.Columns, m.rows, m.snap.Time)
	cols, widths := status.Fit(status.Columns, status.Widths(status.Columns, cells), m.width-2, 2)
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	lines = append(lines, "  "+styleHeader.Render(strings.TrimRight(joinPadded(names, widths), " ")))

	h := m.tableHeight()
	if len(m.rows) == 0 {
		lines = append(lines, "  "+styleDim.Render("no host matches the filter"))
		h--
	}
	for i := m.offset; i < len(m.rows) && i < m.offset+h; i++ {
		r := m.rows[i]
		vals := make([]string, len(cols))
		for j, c := range cols {
			vals[j] = status.Pad(status.Truncate(c.Value(r, m.snap.Time), min(c.Max, widths[j])), widths[j])
		}
		if i == m.cursor {
			lines = append(lines, "> "+styleSelected.Render(strings.TrimRight(strings.Join(vals, "  "), " ")))
			continue
		}
		for j, c := range cols {
			vals[j] = cellStyle(c.Name, r).Render(vals[j])
		}
		lines = append(lines, "  "+strings.TrimRight(strings.Join(vals, "  "), " "))
	}
	for len(lines) < m.height-1 {
		lines = append(lines, "")
	}
	return append(lines, m.footer())
}

func cellStyle(col string, r status.Row) lipgloss.Style {
	switch col {
	case "STATE":
		switch r.Freshness {
		case status.Live:
			return styleGood
		case status.Stale:
			return styleWarn
		default:
			return styleBad
		}
	case "READY":
		if r.Ready != status.ReadyTrue {
			return styleBad
		}
	case "AGENT":
		if r.Drift {
			return styleWarn
		}
	case "ERROR":
		if r.LastError != "" {
			return styleBad
		}
	}
	return lipgloss.NewStyle()
}

func (m Model) footer() string {
	switch m.mode {
	case modeConfirmApply:
		r, _ := m.Selected()
		return styleWarn.Render(fmt.Sprintf("apply the inventory to %s now? y/n", r.Host))
	case modePrepull:
		r, _ := m.Selected()
		return fmt.Sprintf("prepull to %s (enter to start, esc to cancel): %s", r.Host, m.input.View())
	case modeFilter:
		return styleDim.Render("type a name, state or label selector (pool=ci); enter keeps it, esc clears it")
	}
	if m.message != "" {
		return m.message
	}
	return styleDim.Render("↑/↓ j/k move  / filter  s sort  enter detail  r refresh  a apply  p prepull  ? help  q quit")
}

func joinPadded(cells []string, widths []int) string {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteString("  ")
		}
		b.WriteString(status.Pad(c, widths[i]))
	}
	return b.String()
}

func (m Model) helpView() []string {
	return []string{
		styleTitle.Render("fleetctl status: keys"),
		"",
		"  ↑/↓, j/k      move between hosts (pgup/pgdown, g/G: page, first, last)",
		"  /             filter: part of a name, address, state, version or error,",
		"                or a label selector such as vzfleet.dev/pool=ci",
		"  esc           clear the filter",
		"  s             sort: problems, name, disk, vms, version",
		"  enter         host detail: facts, launchctl print, vz-node log, events",
		"  r             refresh now",
		"  a             apply the inventory to the host (asks first)",
		"  p             pre-pull a VM image to the host",
		"  ?             this help",
		"  q, ctrl+c     quit",
		"",
		"  STATE: LIVE (fresh), STALE (no new data lately), OFFLINE (SSH polls fail)",
		"  not in the inventory: nodes vz-node registered that no host names; to take",
		"                a host out, add it back and run fleetctl retire on it",
		"",
		styleDim.Render("any key returns"),
	}
}

func (m Model) detailView() []string {
	r, ok := m.rowByHost(m.detailHost)
	if !ok {
		return []string{"host " + m.detailHost + " is no longer in the inventory", "", styleDim.Render("esc back")}
	}
	now := m.snap.Time
	body := []string{
		styleHeader.Render("Facts"),
		kv("state", fmt.Sprintf("%s (updated %s ago)", r.Freshness, status.Age(r.Updated, now))),
		kv("address", r.Address),
		kv("node", fmt.Sprintf("%s  ready %s", r.Node, r.ReadyText())),
		kv("agent", agentLine(r)),
		kv("launchd", dash(r.Launchd)),
		kv("macOS", dash(r.MacOS)),
		kv("VM slots", fmt.Sprintf("%d/%d used", r.VMsUsed, r.VMsMax)),
		kv("free disk", freeDisk(r.FreeDiskBytes)),
		kv("pull", dash(r.PullProgress)),
		kv("last seen", lastSeen(r.LastSeen, now)),
		kv("last error", dash(r.LastError)),
	}
	body = append(body, "", styleHeader.Render("Pods"))
	if len(r.Pods) == 0 {
		body = append(body, "  none")
	}
	for _, p := range r.Pods {
		body = append(body, fmt.Sprintf("  %s/%s  %s", p.Namespace, p.Name, p.Phase))
	}
	body = append(body, "", styleHeader.Render("Cached images"))
	if len(r.Images) == 0 {
		body = append(body, "  none")
	}
	for _, img := range r.Images {
		body = append(body, fmt.Sprintf("  %s  %s", img.Name, status.HumanBytes(img.SizeBytes)))
	}
	switch {
	case m.detailErr != nil:
		body = append(body, "", styleBad.Render("fetching the detail: "+m.detailErr.Error()))
	case m.detail == nil && m.opts.Detail != nil:
		body = append(body, "", styleDim.Render("fetching launchctl print, the vz-node log and events…"))
	}
	if d := m.detail; d != nil {
		body = append(body, "", styleHeader.Render("launchctl print"))
		body = append(body, indent(d.LaunchctlPrint)...)
		body = append(body, "", styleHeader.Render("vz-node log (tail)"))
		body = append(body, indent(d.LogTail)...)
		body = append(body, "", styleHeader.Render("Recent events"))
		if len(d.Events) == 0 {
			body = append(body, "  none")
		}
		for _, e := range d.Events {
			body = append(body, "  "+e)
		}
	}
	view := max(1, m.height-2)
	scroll := max(0, min(m.detailScroll, len(body)-view))
	end := min(len(body), scroll+view)
	lines := append([]string{styleTitle.Render("host " + r.Host)}, body[scroll:end]...)
	for len(lines) < m.height-1 {
		lines = append(lines, "")
	}
	return append(lines, styleDim.Render(fmt.Sprintf("esc back  j/k scroll  r refresh   lines %d-%d of %d", scroll+1, end, len(body))))
}

func (m Model) rowByHost(host string) (status.Row, bool) {
	for _, r := range m.snap.Rows {
		if r.Host == host {
			return r, true
		}
	}
	return status.Row{}, false
}

func kv(k, v string) string { return fmt.Sprintf("  %-11s %s", k, v) }

func agentLine(r status.Row) string {
	s := dash(r.AgentVersion)
	if r.DesiredVersion != "" {
		s += "  (inventory wants " + r.DesiredVersion + ")"
	}
	if r.Drift {
		s += "  DRIFT"
	}
	return s
}

func freeDisk(b int64) string {
	if b < 0 {
		return "-"
	}
	return status.HumanBytes(b)
}

func lastSeen(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return status.Age(t, now) + " ago"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func indent(s string) []string {
	if strings.TrimSpace(s) == "" {
		return []string{"  (empty)"}
	}
	lines := strings.Split(strings.ReplaceAll(s, "\t", "    "), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return lines
}

// clip cuts a line (which may hold escape sequences) to width cells.
func clip(s string, width int) string {
	if width <= 0 || lipgloss.Width(s) <= width {
		return s
	}
	return ansi.Truncate(s, width, "")
}
