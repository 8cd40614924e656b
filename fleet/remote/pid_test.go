package remote

import (
	"bytes"
	"strings"
	"testing"
)

func TestPIDCatcher(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		chunks []string
		pid    int
		out    string
	}{
		{"first line", []string{pidMarker + "4242\nerr\n"}, 4242, "err\n"},
		{"split writes", []string{"\x00vzfleet", "-pid:42", "42\n", "e", "rr"}, 4242, "err"},
		{"after startup noise", []string{"rc: hello\n" + pidMarker + "7\nx\n"}, 7, "rc: hello\nx\n"},
		{"no marker", []string{"plain\n", "partial"}, 0, "plain\npartial"},
		{"garbage pid", []string{pidMarker + "zz\nerr\n"}, 0, "err\n"},
		{"gives up", []string{strings.Repeat("x", 5000), "\nmore"}, 0, strings.Repeat("x", 5000) + "\nmore"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		p := &pidCatcher{w: &out}
		for _, c := range tt.chunks {
			if n, err := p.Write([]byte(c)); err != nil || n != len(c) {
				t.Fatalf("%s: Write = %d, %v", tt.name, n, err)
			}
		}
		p.flush()
		if p.PID() != tt.pid || out.String() != tt.out {
			t.Errorf("%s: pid %d, out %q; want %d, %q", tt.name, p.PID(), out.String(), tt.pid, tt.out)
		}
	}
}
