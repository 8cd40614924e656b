package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/node/vm/guest"
)

func TestSimpleWords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string // nil: not a simple command
	}{
		{"log show", []string{"log", "show"}},
		{"  log   stream --style syslog ", []string{"log", "stream", "--style", "syslog"}},
		{`log show --predicate 'process == "x"'`, []string{"log", "show", "--predicate", `process == "x"`}},
		{`a "b c" d\ e 'it'\''s' ''`, []string{"a", "b c", "d e", "it's", ""}},
		{`"esc \" \\ \$"`, []string{`esc " \ $`}},
		{`"keep \n"`, []string{`keep \n`}},
		{"", nil},
		{"log show | head", nil},
		{"log show; reboot", nil},
		{"echo $HOME", nil},
		{`echo "$HOME"`, nil},
		{"echo `id`", nil},
		{"ls *", nil},
		{"a > b", nil},
		{"'unterminated", nil},
		{`"unterminated`, nil},
		{"trailing\\", nil},
		{"two\nlines", nil},
	} {
		got, ok := simpleWords(tc.in)
		if tc.want == nil {
			if ok && len(got) > 0 {
				t.Errorf("simpleWords(%q) = %q, want not simple", tc.in, got)
			}
			continue
		}
		if !ok || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
			t.Errorf("simpleWords(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

// FuzzSimpleWords: whatever guest.Join writes splits back into its argv.
func FuzzSimpleWords(f *testing.F) {
	f.Add("log", "show", "--style syslog")
	f.Add("it's", `"q"`, "$x")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		argv := []string{a, b, c}
		got, ok := simpleWords(guest.Join(argv))
		if !ok || strings.Join(got, "\x00") != strings.Join(argv, "\x00") || len(got) != 3 {
			t.Fatalf("simpleWords(Join(%q)) = %q, %v", argv, got, ok)
		}
	})
}

func TestStripSudo(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"sudo log show":       "log show",
		"sudo -n -E log show": "log show",
		"sudo -- log":         "log",
		"log stream":          "log stream",
		"sudo":                "",
	} {
		if got := strings.Join(stripSudo(strings.Fields(in)), " "); got != want {
			t.Errorf("stripSudo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLogArgs(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	for _, tc := range []struct {
		verb string
		args string
		want string // fmt of style/since/until/timeout, or "error"
	}{
		{"show", "", "default 0001-01-01 00:00:00 0001-01-01 00:00:00 0s"},
		{"show", "--style syslog --last 5m", "syslog 2026-01-02 02:59:05 0001-01-01 00:00:00 0s"},
		{"show", "--last 90", "default 2026-01-02 03:02:35 0001-01-01 00:00:00 0s"},
		{"show", "--last 1d --info --debug", "default 2026-01-01 03:04:05 0001-01-01 00:00:00 0s"},
		{"show", "--start 2026-01-01 --end 2026-01-01_12:00:00", "error"},
		{"show", "--start 2026-01-01", "default 2026-01-01 00:00:00 0001-01-01 00:00:00 0s"},
		{"stream", "--style compact --timeout 2s --level debug", "compact 0001-01-01 00:00:00 0001-01-01 00:00:00 2s"},
		{"stream", "--last 5m", "error"},
		{"show", "--timeout 5s", "error"},
		{"show", "--style json", "error"},
		{"show", "--style", "error"},
		{"show", "--last x", "error"},
		{"show", "--frobnicate", "error"},
	} {
		a, err := parseLogArgs(tc.verb, strings.Fields(tc.args), now)
		got := "error"
		if err == nil {
			const l = "2006-01-02 15:04:05"
			got = fmt.Sprintf("%s %s %s %s", a.style, a.since.In(time.Local).Format(l), a.until.Format(l), a.timeout)
		}
		if got != tc.want {
			t.Errorf("log %s %s: %s, want %s", tc.verb, tc.args, got, tc.want)
		}
	}
}

func TestParseEntry(t *testing.T) {
	t.Parallel()
	e, ok := parseEntry("2026-11-24 02:51:00.784020+0000  localhost kernel[0]: Darwin: Kernel")
	if !ok || e.process != "kernel" || e.pid != "0" || e.msg != "Darwin: Kernel" || e.t.Nanosecond() != 784020000 {
		t.Errorf("parseEntry = %+v, %v", e, ok)
	}
	for _, bad := range []string{"", "short", "2026-11-24 02:51:00.784020+0000 elsewhere x[1]: y", "2026-11-24 02:51:00.784020+0000  localhost nopid: y"} {
		if _, ok := parseEntry(bad); ok {
			t.Errorf("parseEntry(%q) accepted", bad)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	for cmdline, want := range map[string]string{
		"date -u":                        "exec: date (1 arguments)",
		"env 'TOKEN=s3cret' A=1 date -u": "exec: date (1 arguments)",
		"env A=1":                        "exec: env (1 arguments)",
		"env -i date":                    "exec: env (2 arguments)",
		"echo $((1+1)) | cat":            "exec: shell command line (19 bytes)",
	} {
		if got := describe(cmdline, false); got != want {
			t.Errorf("describe(%q) = %q, want %q", cmdline, got, want)
		}
	}
}
