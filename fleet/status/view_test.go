package status

import (
	"slices"
	"strings"
	"testing"
)

func hostsOf(rows []Row) string {
	names := make([]string, len(rows))
	for i, r := range rows {
		names[i] = r.Host
	}
	return strings.Join(names, ",")
}

func TestSort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  SortKey
		want string
	}{
		// mini-03 offline+NotReady, mini-04 not registered, mini-02 drift+low disk.
		{SortProblems, "mini-03,mini-04,mini-02,mini-01"},
		{SortName, "mini-01,mini-02,mini-03,mini-04"},
		{SortFreeDisk, "mini-02,mini-03,mini-01,mini-04"},
		{SortVMs, "mini-01,mini-02,mini-03,mini-04"},
		{SortVersion, "mini-04,mini-02,mini-01,mini-03"},
	}
	base := fleetFixture(&clock{t0}).Snapshot().Rows
	for _, tt := range tests {
		t.Run(tt.key.String(), func(t *testing.T) {
			rows := slices.Clone(base)
			Sort(rows, tt.key)
			if got := hostsOf(rows); got != tt.want {
				t.Errorf("Sort(%s) = %s, want %s", tt.key, got, tt.want)
			}
		})
	}
}

func TestSortKeyCycleAndParse(t *testing.T) {
	t.Parallel()
	k := SortProblems
	seen := map[SortKey]bool{}
	for range int(sortKeys) {
		seen[k] = true
		p, err := ParseSortKey(k.String())
		if err != nil || p != k {
			t.Errorf("ParseSortKey(%q) = %v, %v", k, p, err)
		}
		k = k.Next()
	}
	if k != SortProblems || len(seen) != int(sortKeys) {
		t.Errorf("Next does not cycle through every key: %v", seen)
	}
	if _, err := ParseSortKey("size"); err == nil || !strings.Contains(err.Error(), "problems, name") {
		t.Errorf("ParseSortKey(size) error = %v", err)
	}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	rows := fleetFixture(&clock{t0}).Snapshot().Rows
	tests := []struct {
		expr, want, err string
	}{
		{"", "mini-01,mini-02,mini-03,mini-04", ""},
		{"mini-0", "mini-01,mini-02,mini-03,mini-04", ""},
		{"MINI-02", "mini-02", ""},
		{"offline", "mini-03", ""},
		{"10.20.0.14", "mini-04", ""},
		{"build-8", "mini-01", ""},
		{"no route", "mini-03", ""},
		{"not loaded", "mini-04", ""},
		{"vzfleet.dev/pool=release", "mini-02", ""},
		{"vzfleet.dev/pool!=release", "mini-01,mini-03,mini-04", ""},
		{"vzfleet.dev/pool in (ci)", "mini-01,mini-03,mini-04", ""},
		{"release", "mini-02", ""},
		{"nothing-matches", "", ""},
		{"a=b=c", "", "filter"},
	}
	for _, tt := range tests {
		got, err := Filter(rows, tt.expr)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Filter(%q) error = %v, want %q", tt.expr, err, tt.err)
			}
			continue
		}
		if err != nil || hostsOf(got) != tt.want {
			t.Errorf("Filter(%q) = %s, %v; want %s", tt.expr, hostsOf(got), err, tt.want)
		}
	}
}
