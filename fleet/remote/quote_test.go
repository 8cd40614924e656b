package remote

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"echo", "hello"}, "echo hello"},
		{[]string{""}, "''"},
		{[]string{"a b"}, "'a b'"},
		{[]string{"it's"}, `'it'\''s'`},
		{[]string{"$(id)", "`id`"}, "'$(id)' '`id`'"},
		{[]string{"/usr/local/bin/vz-node", "--log-level=debug"}, "/usr/local/bin/vz-node '--log-level=debug'"},
		{[]string{"~root", "=ls", "*"}, "'~root' '=ls' '*'"},
	}
	for _, tt := range tests {
		if got := Quote(tt.args...); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.args, got, tt.want)
		}
	}
}

// trickyArgs are words that break naive quoting.
var trickyArgs = []string{
	"plain", "", "two words", "it's", `"double"`, "$(touch /tmp/pwned)", "`id`",
	"$HOME", "${HOME}", "a;b", "a&&b", "a|b", "a>b", "*", "?", "[a]", "~", "~root",
	"=ls", "#comment", "new\nline", "tab\there", "back\\slash", "'", "''", "\\'",
	"!bang", "{a,b}", "ünïcødé", "-n", "--", "%1", "^x",
}

// FuzzQuote checks with the real /bin/sh that every word survives quoting.
func FuzzQuote(f *testing.F) {
	for _, a := range trickyArgs {
		f.Add(a, "x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if strings.ContainsRune(a+b, 0) {
			return // argv cannot hold NUL
		}
		got := shellArgs(t, "sh", a, b)
		if len(got) != 2 || got[0] != a || got[1] != b {
			t.Fatalf("sh received %q, want %q", got, []string{a, b})
		}
	})
}

func TestQuoteShells(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"sh", "bash", "zsh", "dash"} {
		if _, err := exec.LookPath(shell); err != nil {
			continue
		}
		got := shellArgs(t, shell, trickyArgs...)
		if strings.Join(got, "\x00") != strings.Join(trickyArgs, "\x00") {
			t.Errorf("%s received\n%q\nwant\n%q", shell, got, trickyArgs)
		}
	}
}

// shellArgs runs printf through shell -c with Quote and returns the words
// printf received.
func shellArgs(t testing.TB, shell string, args ...string) []string {
	t.Helper()
	line := Quote(append([]string{"printf", `%s\0`}, args...)...)
	out, err := exec.CommandContext(context.Background(), shell, "-c", line).Output()
	if err != nil {
		t.Fatalf("%s -c %s: %v", shell, line, err)
	}
	return splitNUL(out)
}

func splitNUL(out []byte) []string {
	if len(out) == 0 {
		return nil
	}
	parts := bytes.Split(bytes.TrimSuffix(out, []byte{0}), []byte{0})
	words := make([]string, len(parts))
	for i, p := range parts {
		words[i] = string(p)
	}
	return words
}
