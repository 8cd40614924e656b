package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Output formats of RenderOnce.
const (
	OutputTable = "table"
	OutputJSON  = "json"
	OutputYAML  = "yaml"
)

// Render writes a snapshot in a format: table, json or yaml. Width bounds
// the table (0: no bound).
func Render(w io.Writer, snap Snapshot, format string, width int) error {
	switch format {
	case OutputTable, "":
		return RenderTable(w, snap, width)
	case OutputJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(snap)
	case OutputYAML:
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(snap); err != nil {
			return fmt.Errorf("writing YAML: %w", err)
		}
		return enc.Close()
	default:
		return fmt.Errorf("output format %q: want table, json or yaml", format)
	}
}

// TotalsLine is the header over the table.
func TotalsLine(t Totals) string {
	s := fmt.Sprintf("hosts %d  ready %d  VMs running %d  slots free %d  live %d  stale %d  offline %d",
		t.Hosts, t.Ready, t.VMsRunning, t.SlotsFree, t.Live, t.Stale, t.Offline)
	if t.Drifted > 0 {
		s += fmt.Sprintf("  drifted %d", t.Drifted)
	}
	return s
}

// StraysLine names the strays ("" when none), for a line under the table.
func StraysLine(strays []Stray) string {
	if len(strays) == 0 {
		return ""
	}
	parts := make([]string, len(strays))
	for i, s := range strays {
		state := s.Ready
		if s.Cordoned {
			state += ", cordoned"
		}
		pods := "pods"
		if s.Pods == 1 {
			pods = "pod"
		}
		parts[i] = fmt.Sprintf("%s (%s, %d %s)", s.Node, state, s.Pods, pods)
	}
	return "not in the inventory: " + strings.Join(parts, ", ")
}

// straysHint says what to do about strays.
const straysHint = "vz-node registered these nodes, and no host in the inventory names them: to take a host out of the fleet, add it back and run fleetctl retire on it (if its Mac is gone: fleetctl retire --unreachable --node NAME)"

// wrap breaks s into lines of at most width runes (0: no bound) at
// spaces, each after the first indented; a word longer than a line is
// left whole.
func wrap(s string, width int, indent string) string {
	if width <= 0 {
		return s
	}
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(s) {
		w := len([]rune(word))
		switch {
		case i == 0:
		case n+1+w > width:
			b.WriteString("\n" + indent)
			n = len([]rune(indent))
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += w
	}
	return b.String()
}

// RenderTable writes the totals line and the rows as a plain table,
// dropping the least important columns to fit width (0: keep all), and
// the strays under it.
func RenderTable(w io.Writer, snap Snapshot, width int) error {
	var b strings.Builder
	b.WriteString(TotalsLine(snap.Totals))
	b.WriteString("\n\n")
	cells := Cells(Columns, snap.Rows, snap.Time)
	cols, widths := Fit(Columns, Widths(Columns, cells), width, 2)
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = c.Name
	}
	writeLine(&b, header, widths)
	for _, r := range snap.Rows {
		line := make([]string, len(cols))
		for i, c := range cols {
			line[i] = Truncate(c.Value(r, snap.Time), min(c.Max, widths[i]))
		}
		writeLine(&b, line, widths)
	}
	if line := StraysLine(snap.Strays); line != "" {
		b.WriteString("\n" + wrap(line, width, "  ") + "\n  " + wrap(straysHint, width-2, "  ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeLine(b *strings.Builder, cells []string, widths []int) {
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		b.WriteString(Pad(c, widths[i]))
		b.WriteString("  ")
	}
	b.WriteByte('\n')
}

// Stream writes plain lines for --watch: the header and every row at
// first, then one line per row whose content changed (the SEEN column
// aside, which changes every time).
type Stream struct {
	W    io.Writer
	last map[string]string
}

// Write prints what changed since the previous snapshot.
func (s *Stream) Write(snap Snapshot) error {
	var b strings.Builder
	stamp := snap.Time.UTC().Format(time.TimeOnly)
	if s.last == nil {
		s.last = map[string]string{}
	}
	for _, r := range snap.Rows {
		var parts []string
		for _, c := range Columns {
			if c.Name == "SEEN" {
				continue
			}
			parts = append(parts, strings.ToLower(c.Name)+"="+quoteIfSpace(c.Value(r, snap.Time)))
		}
		line := strings.Join(parts, " ")
		if s.last[r.Host] == line {
			continue
		}
		s.last[r.Host] = line
		fmt.Fprintf(&b, "%s %s\n", stamp, line)
	}
	// Host names are not empty: "" keys the strays.
	if line := StraysLine(snap.Strays); line != s.last[""] {
		s.last[""] = line
		if line == "" {
			line = "no node outside the inventory"
		}
		fmt.Fprintf(&b, "%s %s\n", stamp, line)
	}
	if b.Len() == 0 {
		return nil
	}
	fmt.Fprintf(&b, "%s %s\n", stamp, TotalsLine(snap.Totals))
	_, err := io.WriteString(s.W, b.String())
	return err
}

func quoteIfSpace(s string) string {
	if strings.ContainsAny(s, " \t\"") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
