package sim

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/node/vm"
	"github.com/vzfleet/vzfleet/node/vm/guest"
)

// TestBackgroundProcessesEndAtPowerOff: a process a command leaves
// running in the background (nohup ... &) outlives its SSH session, as on
// macOS, and ends when the guest powers off.
func TestBackgroundProcessesEndAtPowerOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	m := e.start(e.spec("vm-bg"))
	c := e.client(m)
	ctx := t.Context()
	var out bytes.Buffer
	code, err := c.RunShell(ctx, `nohup sh -c 'while :; do sleep 0.1; done' >/dev/null 2>&1 </dev/null & echo $!`, guest.Exec{Stdout: &out})
	if err != nil || code != 0 {
		t.Fatalf("start a background loop: %d %v", code, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("pid %q: %v", out.String(), err)
	}
	time.Sleep(300 * time.Millisecond)
	if !alive(pid) {
		t.Fatalf("the background loop (pid %d) ended with its session", pid)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, vm.StateStopped, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the background loop (pid %d) outlived the guest's power-off", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether process pid runs (and is not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}
