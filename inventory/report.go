package inventory

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// Report is the outcome of checking an inventory, as fleetctl validate
// prints it: a line per host when the inventory is valid, every problem
// when it is not. It holds no secrets (only references to them).
type Report struct {
	File   string        `json:"file"`
	Valid  bool          `json:"valid"`
	Hosts  []HostSummary `json:"hosts,omitempty"`
	Errors []*Error      `json:"errors,omitempty"`
}

// HostSummary is one host's line in a Report.
type HostSummary struct {
	Name     string `json:"name"`
	Address  string `json:"address"` // host:port
	NodeName string `json:"nodeName"`
	Driver   Driver `json:"driver"`
}

// NewReport summarises hosts (typically inv.Hosts or a Select result) or,
// when err is not nil, the problems in it.
func NewReport(file string, hosts []Host, err error) Report {
	r := Report{File: file, Valid: err == nil}
	if err != nil {
		r.Errors = Errors(err)
		return r
	}
	for _, h := range hosts {
		r.Hosts = append(r.Hosts, HostSummary{Name: h.Name, Address: h.SSH.Addr(), NodeName: h.Node.Name, Driver: h.Node.Driver})
	}
	return r
}

// WriteText prints the report for people: a table of hosts, or one error per
// line, then a one-line verdict.
func (r Report) WriteText(w io.Writer) error {
	if !r.Valid {
		for _, e := range r.Errors {
			if _, err := fmt.Fprintln(w, e); err != nil {
				return err
			}
		}
		_, err := fmt.Fprintf(w, "%s: %s; fix them and run fleetctl validate again\n", r.File, plural(len(r.Errors), "problem"))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tNODE\tDRIVER")
	for _, h := range r.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Name, h.Address, h.NodeName, h.Driver)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s: valid, %s\n", r.File, plural(len(r.Hosts), "host"))
	return err
}

// WriteJSON prints the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
