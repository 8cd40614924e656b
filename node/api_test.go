package node

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
)

const logShowOutput = `Timestamp                       (process)[PID]
2026-11-24 10:00:00.000000+0000  localhost kernel[0]: boot
2026-11-24 10:00:01.000000+0000  localhost sshd[120]: Server listening
2026-11-24 10:00:02.000000+0000  localhost sshd[121]: Accepted password for admin
--------------------------------------------------------------------------------------------------------------------
Log      - Default:          3, Info:                0, Debug:             0, Error:          0, Fault:          0
Activity - Create:           0, Transition:          0, Actions:           0
`

func TestLogEntriesKeepsEntriesAndTail(t *testing.T) {
	cases := []struct {
		tail int
		want string
	}{
		{0, "kernel[0]: boot|sshd[120]: Server listening|sshd[121]: Accepted password for admin"},
		{2, "sshd[120]: Server listening|sshd[121]: Accepted password for admin"},
		{1, "sshd[121]: Accepted password for admin"},
	}
	for _, c := range cases {
		l := &logEntries{tail: c.tail}
		// Written in odd pieces, as an SSH channel delivers them.
		for i := 0; i < len(logShowOutput); i += 7 {
			if _, err := l.Write([]byte(logShowOutput[i:min(i+7, len(logShowOutput))])); err != nil {
				t.Fatal(err)
			}
		}
		var out bytes.Buffer
		if err := l.flush(&out); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			got = append(got, line[strings.Index(line, "localhost ")+len("localhost "):])
		}
		if strings.Join(got, "|") != c.want {
			t.Errorf("tail %d: got %q, want %q", c.tail, strings.Join(got, "|"), c.want)
		}
	}
}

func TestLogShowArgv(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		opts api.ContainerLogOpts
		want string
	}{
		{api.ContainerLogOpts{}, "log show --style syslog"},
		{api.ContainerLogOpts{SinceSeconds: 90}, "log show --style syslog --last 90s"},
		{api.ContainerLogOpts{SinceTime: now.Add(-time.Hour)}, "log show --style syslog --last 3600s"},
	}
	for _, c := range cases {
		if got := strings.Join(logShowArgv(c.opts, now), " "); got != c.want {
			t.Errorf("%+v: %q, want %q", c.opts, got, c.want)
		}
	}
}

func TestTimestampWriter(t *testing.T) {
	var out bytes.Buffer
	tw := &timestampWriter{w: &out, now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	_, _ = tw.Write([]byte("one\ntw"))
	_, _ = tw.Write([]byte("o\n"))
	if got, want := out.String(), "2026-01-02T03:04:05Z one\n2026-01-02T03:04:05Z two\n"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
