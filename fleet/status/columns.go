package status

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Column is one column of the status table.
type Column struct {
	Name string
	// Priority: columns with the highest values are dropped first when
	// the terminal is narrow; 0 is never dropped.
	Priority int
	// Max is the widest the column gets; longer values are cut with "…".
	Max int
	// Value formats the row's cell; now is the snapshot's time.
	Value func(r Row, now time.Time) string
}

// Columns are the status table's columns in display order.
var Columns = []Column{
	{Name: "STATE", Priority: 0, Max: 7, Value: func(r Row, _ time.Time) string { return string(r.Freshness) }},
	{Name: "HOST", Priority: 0, Max: 24, Value: func(r Row, _ time.Time) string { return r.Host }},
	{Name: "ADDRESS", Priority: 7, Max: 24, Value: func(r Row, _ time.Time) string { return r.Address }},
	{Name: "SSH", Priority: 3, Max: 4, Value: func(r Row, _ time.Time) string { return sshCell(r) }},
	{Name: "READY", Priority: 1, Max: 16, Value: func(r Row, _ time.Time) string { return r.ReadyText() }},
	{Name: "AGENT", Priority: 2, Max: 24, Value: func(r Row, _ time.Time) string { return agentCell(r) }},
	{Name: "LAUNCHD", Priority: 6, Max: 20, Value: func(r Row, _ time.Time) string { return dash(r.Launchd) }},
	{Name: "VMS", Priority: 2, Max: 5, Value: func(r Row, _ time.Time) string { return fmt.Sprintf("%d/%d", r.VMsUsed, r.VMsMax) }},
	{Name: "PODS", Priority: 8, Max: 32, Value: func(r Row, _ time.Time) string { return podsCell(r.Pods) }},
	{Name: "DISK", Priority: 4, Max: 6, Value: func(r Row, _ time.Time) string { return diskCell(r.FreeDiskBytes) }},
	{Name: "IMAGES", Priority: 9, Max: 6, Value: func(r Row, _ time.Time) string { return strconv.Itoa(len(r.Images)) }},
	{Name: "PULL", Priority: 9, Max: 24, Value: func(r Row, _ time.Time) string { return dash(r.PullProgress) }},
	{Name: "SEEN", Priority: 5, Max: 8, Value: func(r Row, now time.Time) string { return Age(r.LastSeen, now) }},
	{Name: "ERROR", Priority: 4, Max: 60, Value: func(r Row, _ time.Time) string { return dash(r.LastError) }},
}

func sshCell(r Row) string {
	switch {
	case r.SSHReachable:
		return "ok"
	case r.Freshness == Offline:
		return "down"
	default:
		return "?"
	}
}

func agentCell(r Row) string {
	if r.AgentVersion == "" {
		return "-"
	}
	if r.Drift {
		return r.AgentVersion + " → " + r.DesiredVersion
	}
	return r.AgentVersion
}

func podsCell(pods []Pod) string {
	if len(pods) == 0 {
		return "-"
	}
	parts := make([]string, len(pods))
	for i, p := range pods {
		parts[i] = p.Name + ":" + p.Phase
	}
	return strings.Join(parts, ",")
}

func diskCell(b int64) string {
	if b < 0 {
		return "-"
	}
	return HumanBytes(b)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// HumanBytes formats a size in binary units with at most 3 digits: 512M,
// 1.5G, 412G, 2.0T.
func HumanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	v, i := float64(b), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	suffix := "KMGTPE"[i]
	if v < 10 {
		return fmt.Sprintf("%.1f%c", v, suffix)
	}
	return fmt.Sprintf("%.0f%c", v, suffix)
}

// Age formats how long ago t was: "4s", "3m", "2h", "5d"; "-" for never.
func Age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// Cells formats rows: one slice of cells per row, in the columns' order,
// each cut to its column's Max.
func Cells(cols []Column, rows []Row, now time.Time) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		cells := make([]string, len(cols))
		for j, c := range cols {
			cells[j] = Truncate(c.Value(r, now), c.Max)
		}
		out[i] = cells
	}
	return out
}

// Widths is each column's width: its widest cell or header.
func Widths(cols []Column, cells [][]string) []int {
	w := make([]int, len(cols))
	for j, c := range cols {
		w[j] = utf8.RuneCountInString(c.Name)
	}
	for _, row := range cells {
		for j, s := range row {
			w[j] = max(w[j], utf8.RuneCountInString(s))
		}
	}
	return w
}

// minLastWidth is the narrowest Fit cuts the last column to.
const minLastWidth = 16

// Fit drops columns, least important first, until the table fits width
// (with gap spaces between columns), cutting the last column to no less
// than minLastWidth before dropping anything for it; width <= 0 keeps
// every column. The columns keep their display order.
func Fit(cols []Column, widths []int, width, gap int) ([]Column, []int) {
	if width <= 0 {
		return cols, widths
	}
	cols, widths = append([]Column(nil), cols...), append([]int(nil), widths...)
	for {
		total := 0
		for _, w := range widths {
			total += w
		}
		total += gap * max(len(widths)-1, 0)
		if total <= width {
			return cols, widths
		}
		// The last column (the error) may shrink rather than go.
		if last := len(widths) - 1; last > 0 && widths[last]-(total-width) >= minLastWidth {
			widths[last] -= total - width
			return cols, widths
		}
		drop := -1
		for i, c := range cols {
			if c.Priority > 0 && (drop < 0 || c.Priority >= cols[drop].Priority) {
				drop = i
			}
		}
		if drop < 0 {
			return cols, widths
		}
		cols = append(cols[:drop], cols[drop+1:]...)
		widths = append(widths[:drop], widths[drop+1:]...)
	}
}

// Truncate cuts s to n runes, ending in "…" when cut.
func Truncate(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// Pad right-pads s with spaces to n runes.
func Pad(s string, n int) string {
	if k := utf8.RuneCountInString(s); k < n {
		return s + strings.Repeat(" ", n-k)
	}
	return s
}
