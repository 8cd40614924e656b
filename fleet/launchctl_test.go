package fleet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/fleet/remote"
)

// fakeLaunchctl puts a launchctl on PATH that records its arguments and
// exits with scripted statuses: codes[sub] lists the status of each call
// of that subcommand in turn (0 once the list is used up).
func fakeLaunchctl(t *testing.T, codes map[string][]string) (launchd, func() []string) {
	dir := t.TempDir()
	script := `#!/bin/sh
d=` + dir + `
echo "$*" >> "$d/calls"
f="$d/codes.$1"
code=0
if [ -s "$f" ]; then code=$(head -n 1 "$f"); tail -n +2 "$f" > "$f.tmp"; mv "$f.tmp" "$f"; fi
if [ "$1" = print ] && [ "$code" = 0 ]; then printf 'system/x = {\n\tstate = running\n\tpid = 77\n\tendpoints = {\n\t\tpid = 1\n\t}\n}\n'; fi
if [ "$code" != 0 ]; then echo "launchctl: failed with $code" >&2; fi
exit "$code"
`
	if err := os.WriteFile(filepath.Join(dir, "launchctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for sub, c := range codes {
		if err := os.WriteFile(filepath.Join(dir, "codes."+sub), []byte(strings.Join(c, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	l := launchd{host: remote.NewLocal(remote.LocalOptions{Name: "mini-01"}), label: "dev.vzfleet.vz-node", plist: "/L/dev.vzfleet.vz-node.plist", pause: time.Millisecond}
	calls := func() []string {
		b, _ := os.ReadFile(filepath.Join(dir, "calls"))
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	return l, calls
}

func TestLaunchctlActions(t *testing.T) {
	const target = "system/dev.vzfleet.vz-node"
	cases := []struct {
		name    string
		action  ServiceAction
		codes   map[string][]string
		want    []string
		wantErr string
	}{
		{name: "none does nothing", action: ServiceNone, want: []string{""}},
		{name: "kickstart", action: ServiceKickstart, want: []string{"kickstart -k " + target}},
		{
			name: "kickstart of an unloaded job reloads", action: ServiceKickstart,
			// bootout says not loaded: nothing to wait for, no print.
			codes: map[string][]string{"kickstart": {"113"}, "bootout": {"3"}},
			want:  []string{"kickstart -k " + target, "bootout " + target, "enable " + target, "bootstrap system /L/dev.vzfleet.vz-node.plist"},
		},
		{
			name: "reload waits until the job is gone", action: ServiceReload,
			codes: map[string][]string{"print": {"0", "0", "113"}},
			want:  []string{"bootout " + target, "print " + target, "print " + target, "print " + target, "enable " + target, "bootstrap system /L/dev.vzfleet.vz-node.plist"},
		},
		{
			name: "bootstrap 5 after bootout is retried", action: ServiceReload,
			codes: map[string][]string{"print": {"113"}, "bootstrap": {"5", "5"}},
			want:  []string{"bootout " + target, "print " + target, "enable " + target, "bootstrap system /L/dev.vzfleet.vz-node.plist", "bootstrap system /L/dev.vzfleet.vz-node.plist", "bootstrap system /L/dev.vzfleet.vz-node.plist"},
		},
		{
			name: "119 reported with its meaning", action: ServiceReload,
			codes:   map[string][]string{"print": {"113"}, "bootstrap": {"119"}},
			wantErr: "exited 119 (the service is disabled)",
		},
		{
			name: "125 reported with its meaning", action: ServiceKickstart,
			codes:   map[string][]string{"kickstart": {"125"}},
			wantErr: "exited 125 (the domain does not support the action)",
		},
		{
			name: "133 reported, not retried", action: ServiceReload,
			codes:   map[string][]string{"print": {"113"}, "bootstrap": {"133"}},
			want:    []string{"bootout " + target, "print " + target, "enable " + target, "bootstrap system /L/dev.vzfleet.vz-node.plist"},
			wantErr: "exited 133",
		},
		{
			name: "bootout failing for real stops the reload", action: ServiceReload,
			codes:   map[string][]string{"bootout": {"1"}},
			want:    []string{"bootout " + target},
			wantErr: "operation not permitted",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, calls := fakeLaunchctl(t, c.codes)
			err := l.apply(context.Background(), c.action)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("apply: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("apply error = %v, want it to contain %q", err, c.wantErr)
			}
			var le *LaunchctlError
			if c.wantErr != "" && !errors.As(err, &le) {
				t.Errorf("error %v is not a *LaunchctlError", err)
			}
			if c.want != nil && strings.Join(calls(), "|") != strings.Join(c.want, "|") {
				t.Errorf("launchctl calls:\n  %s\nwant\n  %s", strings.Join(calls(), "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

func TestLaunchctlState(t *testing.T) {
	l, _ := fakeLaunchctl(t, map[string][]string{"print": {"0", "113", "3", "1"}})
	ctx := context.Background()
	st, err := l.state(ctx)
	if err != nil || !st.Running() || st.PID != 77 || st.State != "running" {
		t.Errorf("loaded job: %+v, %v", st, err)
	}
	for _, code := range []string{"113", "3"} {
		if st, err := l.state(ctx); err != nil || st.Loaded {
			t.Errorf("exit %s: %+v, %v; want not loaded", code, st, err)
		}
	}
	if _, err := l.state(ctx); err == nil {
		t.Error("exit 1 from print was not an error")
	}
}

func TestLaunchctlCodeTable(t *testing.T) {
	for code, notLoaded := range map[int]bool{3: true, 113: true, 5: false, 119: false, 125: false, 133: false} {
		e := &LaunchctlError{Code: code}
		if e.NotLoaded() != notLoaded {
			t.Errorf("code %d: NotLoaded = %v", code, e.NotLoaded())
		}
		if launchctlCodes[code].meaning == "" {
			t.Errorf("code %d has no meaning", code)
		}
	}
	if !(&LaunchctlError{Code: 5}).retryable() || (&LaunchctlError{Code: 133}).retryable() {
		t.Error("only transient codes may be retried")
	}
}
