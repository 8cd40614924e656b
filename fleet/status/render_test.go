package status

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestRenderTableGolden(t *testing.T) {
	t.Parallel()
	snap := fleetFixture(&clock{t0}).Snapshot()
	Sort(snap.Rows, SortProblems)
	for _, tt := range []struct {
		name  string
		width int
	}{{"table-wide.txt", 0}, {"table-120.txt", 120}, {"table-60.txt", 60}} {
		var b bytes.Buffer
		if err := Render(&b, snap, OutputTable, tt.width); err != nil {
			t.Fatal(err)
		}
		if tt.width > 0 {
			for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n")[2:] {
				if n := len([]rune(line)); n > tt.width {
					t.Errorf("%s: line of %d runes is wider than %d: %q", tt.name, n, tt.width, line)
				}
			}
		}
		golden(t, tt.name, b.String())
	}
}

func TestRenderJSONAndYAML(t *testing.T) {
	t.Parallel()
	snap := fleetFixture(&clock{t0}).Snapshot()
	var j bytes.Buffer
	if err := Render(&j, snap, OutputJSON, 0); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.json", j.String())
	var back Snapshot
	if err := json.Unmarshal(j.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != 4 || back.Rows[2].Freshness != Offline || back.Totals != snap.Totals {
		t.Errorf("JSON round trip lost data: %+v", back)
	}
	var y bytes.Buffer
	if err := Render(&y, snap, OutputYAML, 0); err != nil {
		t.Fatal(err)
	}
	var ys Snapshot
	if err := yaml.Unmarshal(y.Bytes(), &ys); err != nil {
		t.Fatal(err)
	}
	if len(ys.Rows) != 4 || ys.Rows[1].AgentVersion != "0.3.0" || !ys.Rows[1].Drift || ys.Totals != snap.Totals {
		t.Errorf("YAML round trip lost data: %+v", ys)
	}
	if err := Render(&y, snap, "xml", 0); err == nil || !strings.Contains(err.Error(), "table, json or yaml") {
		t.Errorf("Render(xml) error = %v", err)
	}
}

func TestStreamPrintsChangesOnly(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := fleetFixture(c)
	var b bytes.Buffer
	st := &Stream{W: &b}
	if err := st.Write(s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	first := strings.Count(b.String(), "\n")
	if first != 6 || !strings.Contains(b.String(), " not in the inventory: mini-09 (True, cordoned, 1 pod)\n") {
		t.Fatalf("first write has %d lines, want 4 rows, the strays and totals:\n%s", first, b.String())
	}
	b.Reset()
	c.Advance(2 * time.Second)
	s.Record("mini-01", facts("0.4.0", 412), nil, c.Now())
	if err := st.Write(s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 0 {
		t.Errorf("nothing but ages changed, yet the stream printed:\n%s", b.String())
	}
	s.Record("mini-04", facts("0.4.0", 800), nil, c.Now())
	if err := st.Write(s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "host=mini-04") || !strings.Contains(lines[0], `launchd="running (pid 412)"`) || !strings.Contains(lines[1], "hosts 4") {
		t.Errorf("change lines:\n%s", b.String())
	}
	// The stray is retired.
	b.Reset()
	delete(s.opts.Kube.(*fakeKube).nodes, "mini-09")
	if err := st.Write(s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 2 || !strings.HasSuffix(lines[0], " no node outside the inventory") {
		t.Errorf("lines after the stray went:\n%s", b.String())
	}
}

func TestHumanBytesAndAge(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0B", 1023: "1023B", 1536: "1.5K", 31 << 30: "31G", 412 << 30: "412G", 2 << 40: "2.0T"} {
		if got := HumanBytes(in); got != want {
			t.Errorf("HumanBytes(%d) = %s, want %s", in, got, want)
		}
	}
	for d, want := range map[time.Duration]string{-time.Second: "0s", 4 * time.Second: "4s", 3 * time.Minute: "3m", 5 * time.Hour: "5h", 72 * time.Hour: "3d"} {
		if got := Age(t0.Add(-d), t0); got != want {
			t.Errorf("Age(%v) = %s, want %s", d, got, want)
		}
	}
	if Age(time.Time{}, t0) != "-" {
		t.Error("Age of the zero time is not -")
	}
	if got := Truncate("abcdef", 4); got != "abc…" {
		t.Errorf("Truncate = %q", got)
	}
}
