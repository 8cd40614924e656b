package inventory

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vzfleet/vzfleet/inventory/internal/strictyaml"
)

// Error is one problem in an inventory: where it is and what to do about it.
// Load returns all problems it finds joined with errors.Join; Errors unpacks
// them.
type Error struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"` // 0 when unknown
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"` // field path, e.g. hosts[2].ssh.port
	Message string `json:"message"`
}

// Error formats as file:line:col: path: message.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors returns every *Error in err, following errors.Join and %w chains.
// Other errors are returned wrapped in an Error with only Message set.
func Errors(err error) []*Error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		return []*Error{e}
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, e := range joined.Unwrap() {
			out = append(out, Errors(e)...)
		}
		return out
	}
	var e *Error
	if inner := errors.Unwrap(err); inner != nil && errors.As(inner, &e) {
		return Errors(inner)
	}
	return []*Error{{Message: err.Error()}}
}

type position = strictyaml.Position

// source records where a host's values came from in the file.
type source struct {
	prefix  string            // the host's own path: hosts[3], or defaults
	origins map[string]string // host-relative path -> file path
}

// path maps a host-relative field path (node.taints[1]) to the file path the
// value was written at (defaults.node.taints[1]).
func (s *source) path(rel string) string {
	if s == nil {
		return rel
	}
	for p := rel; p != ""; p = parentPath(p) {
		if o, ok := s.origins[p]; ok {
			return o + rel[len(p):]
		}
	}
	return joinPath(s.prefix, rel)
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndex(p, "["); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(parent, name string) string {
	switch {
	case parent == "":
		return name
	case name == "":
		return parent
	case strings.HasPrefix(name, "["):
		return parent + name
	default:
		return parent + "." + name
	}
}

// errorList collects errors for one load, without duplicates: a bad value
// in defaults would otherwise be reported once per host.
type errorList struct {
	file    string
	pos     map[string]position
	seen    map[string]bool
	errs    []*Error
	dropped bool // more than maxErrors were found
}

// maxErrors caps one report, like the decoder's cap: past it, a broken
// file of thousands of hosts would only bury the first mistakes.
const maxErrors = strictyaml.MaxErrors

func newErrorList(file string, pos map[string]position) *errorList {
	return &errorList{file: file, pos: pos, seen: make(map[string]bool)}
}

// at records an error at a file path, positioned at the nearest enclosing
// value the file has.
func (l *errorList) at(path, format string, args ...any) {
	if len(l.errs) >= maxErrors {
		l.dropped = true
		return
	}
	e := &Error{File: l.file, Path: path, Message: fmt.Sprintf(format, args...)}
	for p := path; ; p = parentPath(p) {
		if pos, ok := l.pos[p]; ok {
			e.Line, e.Column = pos.Line, pos.Column
			break
		}
		if p == "" {
			break
		}
	}
	l.add(e)
}

func (l *errorList) add(e *Error) {
	key := e.Error()
	if l.seen[key] {
		return
	}
	l.seen[key] = true
	l.errs = append(l.errs, e)
}

// host records an error about a host-relative field.
func (l *errorList) host(h *Host, rel, format string, args ...any) {
	l.at(h.src.path(rel), format, args...)
}

func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i], l.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	errs := make([]error, len(l.errs), len(l.errs)+1)
	for i, e := range l.errs {
		errs[i] = e
	}
	if l.dropped {
		errs = append(errs, &Error{File: l.file, Message: fmt.Sprintf("more than %d problems; fix the ones above first", maxErrors)})
	}
	return errors.Join(errs...)
}
