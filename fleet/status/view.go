package status

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// SortKey orders rows.
type SortKey int

// Sort orders; SortProblems is the default.
const (
	SortProblems SortKey = iota
	SortName
	SortFreeDisk
	SortVMs
	SortVersion
	sortKeys
)

var sortNames = [...]string{"problems", "name", "disk", "vms", "version"}

func (k SortKey) String() string {
	if k >= 0 && k < sortKeys {
		return sortNames[k]
	}
	return fmt.Sprintf("SortKey(%d)", int(k))
}

// Next is the following sort order, wrapping around (the TUI's `s`).
func (k SortKey) Next() SortKey { return (k + 1) % sortKeys }

// ParseSortKey reads a sort order's name.
func ParseSortKey(s string) (SortKey, error) {
	for i, n := range sortNames {
		if n == s {
			return SortKey(i), nil
		}
	}
	return 0, fmt.Errorf("sort order %q: want one of %s", s, strings.Join(sortNames[:], ", "))
}

// Sort orders rows in place: by the key, then by host name.
//   - problems: the worst first (offline, not Ready, drift, errors, stale,
//     low disk);
//   - disk: the least free space first (unknown last);
//   - vms: the fewest free VM slots first;
//   - version: agent version, hosts without one first.
func Sort(rows []Row, key SortKey) {
	// Sort small keys rather than the wide rows, computing each key once.
	type item struct {
		i    int
		k    int64
		host string
		ver  string
	}
	items := make([]item, len(rows))
	for i, r := range rows {
		it := item{i: i, host: r.Host}
		switch key {
		case SortProblems:
			it.k = -int64(r.Problems())
		case SortFreeDisk:
			it.k = diskKey(r)
		case SortVMs:
			it.k = int64(r.VMsMax - r.VMsUsed)
		case SortVersion:
			it.ver = r.AgentVersion
		}
		items[i] = it
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.k, b.k), cmp.Compare(a.ver, b.ver), cmp.Compare(a.host, b.host), cmp.Compare(a.i, b.i))
	})
	sorted := make([]Row, len(rows))
	for j, it := range items {
		sorted[j] = rows[it.i]
	}
	copy(rows, sorted)
}

func diskKey(r Row) int64 {
	if r.FreeDiskBytes < 0 {
		return 1 << 62
	}
	return r.FreeDiskBytes
}

// Filter returns the rows an expression picks. An expression with '=' or
// '!' or a set operator is a label selector over the node labels
// ("vzfleet.dev/pool=ci"); anything else matches as a case-insensitive
// substring of the host, address, node, freshness, agent version, launchd
// state, pod names, label values and last error ("offline", "mini-0",
// "release"). An empty
// expression picks every row.
func Filter(rows []Row, expr string) ([]Row, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return rows, nil
	}
	var match func(Row) bool
	if isSelector(expr) {
		sel, err := labels.Parse(expr)
		if err != nil {
			return nil, fmt.Errorf("filter %q: %w", expr, err)
		}
		match = func(r Row) bool { return sel.Matches(labels.Set(r.Labels)) }
	} else {
		needle := strings.ToLower(expr)
		match = func(r Row) bool { return strings.Contains(r.searchText(), needle) }
	}
	out := make([]Row, 0, len(rows))
	for _, r := range rows {
		if match(r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func isSelector(expr string) bool {
	return strings.ContainsAny(expr, "=!") || strings.Contains(expr, " in (") || strings.Contains(expr, " notin (")
}

func (r Row) searchText() string {
	var b strings.Builder
	for _, s := range []string{r.Host, r.Address, r.Node, string(r.Freshness), r.AgentVersion, r.Launchd, r.LastError} {
		b.WriteString(strings.ToLower(s))
		b.WriteByte(0)
	}
	for _, p := range r.Pods {
		b.WriteString(strings.ToLower(p.Name))
		b.WriteByte(0)
	}
	for _, v := range r.Labels {
		b.WriteString(strings.ToLower(v))
		b.WriteByte(0)
	}
	return b.String()
}
