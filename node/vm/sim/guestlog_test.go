package sim

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestLogShowGolden renders testdata/guest.log in each style log(1) knows,
// with and without filters.
func TestLogShowGolden(t *testing.T) {
	t.Parallel()
	l := &guestLog{path: "testdata/guest.log"}
	now := time.Date(2026, 11, 24, 2, 52, 30, 0, time.UTC)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"syslog", []string{"--style", "syslog"}},
		{"compact", []string{"--style", "compact"}},
		{"default", nil},
		{"filtered", []string{"--style", "syslog", "--process", "myapp", "--last", "60s", "--predicate", `process == "myapp"`}},
	} {
		a, err := parseLogArgs("show", tc.args, now)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := l.show(&buf, a); err != nil {
			t.Fatal(err)
		}
		got := buf.Bytes()
		path := filepath.Join("testdata", "log-show-"+tc.name+".golden")
		if *update {
			os.WriteFile(path, got, 0o644)
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n%s\nwant:\n%s", path, got, want)
		}
	}
}
