package fleet

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Failed returns the hosts that did not reach their desired state.
func (r *Report) Failed() []HostResult {
	var out []HostResult
	for _, h := range r.Hosts {
		if h.Failed() {
			out = append(out, h)
		}
	}
	return out
}

// Err is nil when every host succeeded, else an error naming each failed
// host, the phase and why.
func (r *Report) Err() error {
	failed := r.Failed()
	if len(failed) == 0 {
		return nil
	}
	parts := make([]string, len(failed))
	for i, h := range failed {
		parts[i] = fmt.Sprintf("%s (%s, %s: %v)", h.Host, strings.ToLower(string(h.Status)), h.Phase, h.Err)
	}
	return fmt.Errorf("%d of %d hosts failed: %s", len(failed), len(r.Hosts), strings.Join(parts, "; "))
}

// WriteSummary writes one line per host and a closing sentence, in one
// write (tabwriter alone writes each cell and pad separately).
func (r *Report) WriteSummary(w io.Writer) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if r.Mode == ModeDoctor {
		fmt.Fprintln(tw, "HOST\tSTATUS\tMACOS\tARCH\tFREE DISK\tDETAIL")
		for _, h := range r.Hosts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Host, h.Status, orUnknown(h.Facts.MacOSVersion), orUnknown(h.Facts.Arch), humanBytes(h.Facts.FreeDiskBytes), detail(h))
		}
	} else if r.Mode == ModeRetire {
		fmt.Fprintln(tw, "HOST\tNODE\tSTATUS\tTIME\tDETAIL")
		for _, h := range r.Hosts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Host, h.Node, h.Status, h.Duration.Round(10_000_000), detail(h))
		}
	} else {
		fmt.Fprintln(tw, "HOST\tNODE\tSTATUS\tFILES\tSERVICE\tVERSION\tIMAGES\tTIME\tDETAIL")
		for _, h := range r.Hosts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", h.Host, h.Node, h.Status, len(h.Plan.Changes), h.Plan.Service,
				orUnknown(h.Version), imagesSummary(h, h.ImagesListed), h.Duration.Round(10_000_000), detail(h))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(&b, r.sentence())
	_, err := w.Write(b.Bytes())
	return err
}

func detail(h HostResult) string {
	if h.Err != nil {
		return oneLine(fmt.Sprintf("%s: %v", h.Phase, h.Err))
	}
	var warn []string
	for _, c := range h.Checks {
		if c.Warning && c.Fix != "" {
			warn = append(warn, c.Name+": "+c.Detail)
		}
	}
	return strings.Join(warn, "; ")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:297] + "..."
	}
	return s
}

func (r *Report) sentence() string {
	counts := map[Status]int{}
	for _, h := range r.Hosts {
		counts[h.Status]++
	}
	n := len(r.Hosts)
	failed := counts[StatusFailed] + counts[StatusRolledBack]
	switch {
	case r.Mode == ModeDoctor && failed == 0:
		return fmt.Sprintf("all %d hosts pass the preflight checks", n)
	case r.Mode == ModeDoctor:
		return fmt.Sprintf("%d of %d hosts fail the preflight checks", failed, n)
	case r.Mode == ModeRetire && failed == 0 && counts[StatusWouldRetire] == n:
		return fmt.Sprintf("%d of %d hosts would be retired; nothing was changed (dry run)", n, n)
	case r.Mode == ModeRetire && failed == 0:
		return fmt.Sprintf("retired %d of %d hosts", n, n)
	case r.Mode == ModeRetire:
		return fmt.Sprintf("%d retired, %d failed (a failed drain leaves the node cordoned with vz-node installed; after a later failure, retire again to finish)", counts[StatusRetired], failed)
	case failed == 0 && counts[StatusUnchanged] == n:
		return fmt.Sprintf("no changes: all %d hosts are up to date; nothing uploaded, nothing restarted", n)
	case r.Mode == ModePlan && failed == 0:
		return fmt.Sprintf("%d of %d hosts would change; nothing was changed (plan)", counts[StatusPlanned], n)
	case failed == 0:
		return fmt.Sprintf("%d hosts changed, %d unchanged", counts[StatusChanged], counts[StatusUnchanged])
	default:
		return fmt.Sprintf("%d changed, %d unchanged, %d rolled back, %d failed", counts[StatusChanged], counts[StatusUnchanged], counts[StatusRolledBack], counts[StatusFailed])
	}
}

// WriteDoctor explains each host's checks, failures first with what to do.
func (r *Report) WriteDoctor(w io.Writer) {
	for _, h := range r.Hosts {
		fmt.Fprintf(w, "%s:\n", h.Host)
		if h.Err != nil && len(h.Checks) == 0 {
			fmt.Fprintf(w, "  ✗ %s: %v\n", h.Phase, h.Err)
			continue
		}
		for _, c := range h.Checks {
			mark := "✓"
			switch {
			case !c.OK:
				mark = "✗"
			case c.Warning:
				mark = "!"
			}
			fmt.Fprintf(w, "  %s %-10s %s\n", mark, c.Name, c.Detail)
			if c.Fix != "" {
				fmt.Fprintf(w, "      %s\n", c.Fix)
			}
		}
	}
}
