package e2e

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tmuxSession drives a program in a detached tmux session of a fixed size.
type tmuxSession struct {
	t      *testing.T
	socket string
}

func startTmux(t *testing.T, width, height int, argv ...string) *tmuxSession {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux is needed to drive the status screen (apt-get install tmux): %v", err)
	}
	s := &tmuxSession{t: t, socket: "vzfleet-e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	args := append([]string{"new-session", "-d", "-s", "main", "-x", strconv.Itoa(width), "-y", strconv.Itoa(height)}, argv...)
	if out, err := s.tmux(args...); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = s.tmux("kill-server") })
	return s
}

func (s *tmuxSession) tmux(args ...string) (string, error) {
	out, err := exec.Command("tmux", append([]string{"-L", s.socket}, args...)...).CombinedOutput()
	return string(out), err
}

// screen is the visible pane as text.
func (s *tmuxSession) screen() string {
	out, err := s.tmux("capture-pane", "-p", "-t", "main")
	if err != nil {
		return "(no pane: " + strings.TrimSpace(out) + ")"
	}
	return out
}

// keys sends tmux key names (Enter, Escape, Up) or, with literal, text.
func (s *tmuxSession) keys(literal bool, keys ...string) {
	s.t.Helper()
	args := []string{"send-keys", "-t", "main"}
	if literal {
		args = append(args, "-l")
	}
	if out, err := s.tmux(append(args, keys...)...); err != nil {
		s.t.Fatalf("tmux send-keys %q: %v\n%s", keys, err, out)
	}
}

// waitScreen waits until ok accepts the screen and returns it.
func (s *tmuxSession) waitScreen(what string, timeout time.Duration, ok func(string) error) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		scr := s.screen()
		err := ok(scr)
		if err == nil {
			return scr
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waiting for %s: %v\nscreen:\n%s", what, err, scr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func contains(subs ...string) func(string) error {
	return func(scr string) error {
		for _, sub := range subs {
			if !strings.Contains(scr, sub) {
				return fmt.Errorf("no %q on the screen", sub)
			}
		}
		return nil
	}
}

// rowLine is the screen line of a host's row ("" when not shown).
func rowLine(scr, host string) string {
	for _, l := range strings.Split(scr, "\n") {
		if strings.Contains(l, " "+host+" ") && (strings.Contains(l, "LIVE") || strings.Contains(l, "STALE") || strings.Contains(l, "OFFLINE")) {
			return l
		}
	}
	return ""
}

// TestStatusScreenUnderTmux runs the built fleetctl status on a 120x30
// terminal against the lab and reads the screen back: the rows, a label
// filter, the help, a host's detail from its launchd, and quitting.
func TestStatusScreenUnderTmux(t *testing.T) {
	sl := startStatusLab(t)
	bin := buildFleetctlForStatus(t, sl.dir)
	s := startTmux(t, 120, 30, bin, "status", sl.inventory, "--ssh-config", "none", "--interval", "1s", "--want-version", statusWantVersion)

	scr := s.waitScreen("three LIVE rows", 30*time.Second, func(scr string) error {
		for _, h := range statusHosts {
			if l := rowLine(scr, h); !strings.Contains(l, "LIVE") {
				return fmt.Errorf("%s row: %q", h, l)
			}
		}
		return contains("hosts 3  ready 3  VMs running 1  slots free 5  live 3  stale 0  offline 0  drifted 1")(scr)
	})
	if l := rowLine(scr, "mini-02"); !strings.Contains(l, "v0.3.0-e2e → v0.4.0-e2e") {
		t.Errorf("mini-02's drift is not shown: %q", l)
	}
	if l := rowLine(scr, "mini-01"); !strings.Contains(l, "1/2") || !strings.Contains(l, " True ") {
		t.Errorf("mini-01 should be Ready with 1 of 2 VM slots used: %q", l)
	}
	for i, l := range strings.Split(scr, "\n") {
		if n := len([]rune(l)); n > 120 {
			t.Errorf("screen line %d is %d wide: %q", i, n, l)
		}
	}

	s.keys(false, "/")
	s.keys(true, "vzfleet.dev/rack=b")
	s.keys(false, "Enter")
	scr = s.waitScreen("the filter applied", 10*time.Second, contains("filter: vzfleet.dev/rack=b", "shown 1/3"))
	if rowLine(scr, "mini-03") == "" || rowLine(scr, "mini-01") != "" || rowLine(scr, "mini-02") != "" {
		t.Errorf("filter rack=b should show mini-03 only:\n%s", scr)
	}

	s.keys(false, "?")
	s.waitScreen("the help", 10*time.Second, contains("fleetctl status: keys", "q, ctrl+c"))
	s.keys(false, "x")
	s.waitScreen("the list again", 10*time.Second, contains("shown 1/3"))

	s.keys(false, "Enter")
	s.waitScreen("mini-03's detail", 15*time.Second, contains("host mini-03", "launchctl print", "vz-node log (tail)", "Recent events"))
	s.keys(false, "Escape")
	s.waitScreen("the list after the detail", 10*time.Second, contains("shown 1/3"))
	s.keys(false, "Escape")
	s.waitScreen("the filter cleared", 10*time.Second, contains("shown 3/3"))

	s.keys(false, "q")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.tmux("has-session", "-t", "main"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleetctl status still runs 10s after q:\n%s", s.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
