package fleet

import (
	"fmt"
	"io"
	"strings"
)

// ChangeKind says what happens to a file.
type ChangeKind string

// File changes.
const (
	Create ChangeKind = "create"
	Update ChangeKind = "update"
)

// Change is one file that differs from its desired state.
type Change struct {
	File   File
	Kind   ChangeKind
	Reason string // why, when not just the content (drift, re-sign, ...)
	// Diff is a line diff of text files when the old content is known;
	// empty for binaries and secrets.
	Diff string
}

// Plan is what an apply would do to one host.
type Plan struct {
	Changes []Change
	Service ServiceAction
	// ServiceReason explains the action.
	ServiceReason string
	// Node lists changes to the Node object's labels and taints.
	Node []string
}

// Empty reports whether nothing would change.
func (p Plan) Empty() bool {
	return len(p.Changes) == 0 && p.Service == ServiceNone && len(p.Node) == 0
}

// Changed reports whether a file of the kind changes.
func (p Plan) Changed(k FileKind) bool {
	for _, c := range p.Changes {
		if c.File.Kind == k {
			return true
		}
	}
	return false
}

// computePlan compares desired files with the host's facts. A file is up
// to date when the host's sha256 is the desired one, or when fleetctl's
// state says it installed this content and the file is still what it
// installed (codesign changes the binary on the host).
func computePlan(desired []File, f Facts) Plan {
	var p Plan
	changed := map[string]bool{}
	for _, file := range desired {
		want := file.SHA256()
		have, exists := f.Hashes[file.Path]
		rec, recorded := f.State.Files[file.Path]
		upToDate := exists && (have == want || recorded && rec.Source == want && rec.Installed == have)
		var reason string
		if upToDate {
			for _, dep := range file.DependsOn {
				if changed[dep] {
					upToDate = false
					reason = "re-sign: " + dep + " changed"
				}
			}
		}
		if upToDate {
			continue
		}
		c := Change{File: file, Kind: Update, Reason: reason}
		switch {
		case !exists:
			c.Kind = Create
		case reason != "":
		case recorded && rec.Source == want:
			c.Reason = "changed on the host since fleetctl installed it"
		}
		changed[file.Path] = true
		p.Changes = append(p.Changes, c)
	}
	switch {
	case p.Changed(KindPlist):
		p.Service, p.ServiceReason = ServiceReload, "the launchd plist changed"
	case !f.Job.Loaded:
		p.Service, p.ServiceReason = ServiceReload, "the launchd job is not loaded"
	case anyRestart(p.Changes):
		p.Service, p.ServiceReason = ServiceKickstart, "files vz-node reads at start changed: "+restartKinds(p.Changes)
	case !f.Job.Running():
		p.Service, p.ServiceReason = ServiceKickstart, "the launchd job is loaded but not running ("+f.Job.String()+")"
	}
	return p
}

func anyRestart(cs []Change) bool {
	for _, c := range cs {
		if c.File.Restart {
			return true
		}
	}
	return false
}

func restartKinds(cs []Change) string {
	var k []string
	for _, c := range cs {
		if c.File.Restart {
			k = append(k, string(c.File.Kind))
		}
	}
	return strings.Join(k, ", ")
}

// Write renders the plan for people: one line per change, text diffs
// indented under them, secrets only as "(secret changed)".
func (p Plan) Write(w io.Writer, indent string) {
	if p.Empty() {
		fmt.Fprintf(w, "%sno changes\n", indent)
		return
	}
	for _, c := range p.Changes {
		sym := "~"
		if c.Kind == Create {
			sym = "+"
		}
		detail := ""
		switch {
		case c.File.Secret && c.Kind == Update:
			detail = " (secret changed)"
		case c.File.Secret:
			detail = " (secret)"
		case c.File.Kind == KindBinary:
			detail = fmt.Sprintf(" (sha256 %s, %s)", c.File.SHA256()[:12], humanBytes(c.File.Size()))
		}
		if c.Reason != "" {
			detail += " [" + c.Reason + "]"
		}
		fmt.Fprintf(w, "%s%s %s %s %04o%s\n", indent, sym, c.File.Kind, c.File.Path, c.File.Mode.Perm(), detail)
		if c.Diff != "" && !c.File.Secret {
			for _, l := range splitLines(c.Diff) {
				fmt.Fprintf(w, "%s    %s\n", indent, l)
			}
		}
	}
	for _, n := range p.Node {
		fmt.Fprintf(w, "%s~ node %s\n", indent, n)
	}
	if p.Service != ServiceNone {
		fmt.Fprintf(w, "%s! service: %s (%s)\n", indent, p.Service, p.ServiceReason)
	}
}
