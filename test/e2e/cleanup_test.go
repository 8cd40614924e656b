package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/test/harness"
)

const daemonHelperEnv = "VZFLEET_E2E_DAEMON_HELPER"

// TestDaemonHelper is not a test on its own: the cleanup tests run it in a
// child process that starts a daemon, prints its pid and waits to be killed.
func TestDaemonHelper(t *testing.T) {
	if os.Getenv(daemonHelperEnv) == "" {
		return
	}
	reg, err := harness.StartRegistry(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("pid %d\n", reg.Pid())
	time.Sleep(time.Minute)
	t.Fatal("the helper was not killed")
}

// However a test run ends — Ctrl-C or SIGKILL — the daemons it started go.
func TestInterruptedRunLeavesNoDaemon(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestDaemonHelper$", "-test.v")
			cmd.Env = append(os.Environ(), daemonHelperEnv+"=1")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			daemon := 0
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if n, ok := parsePid(sc.Text()); ok {
					daemon = n
					break
				}
			}
			if daemon == 0 {
				cmd.Process.Kill()
				t.Fatalf("helper printed no daemon pid (%v)", cmd.Wait())
			}
			go func() {
				for sc.Scan() {
				}
			}()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			deadline := time.Now().Add(10 * time.Second)
			for alive(daemon) {
				if time.Now().After(deadline) {
					syscall.Kill(daemon, syscall.SIGKILL)
					t.Fatalf("daemon %d still runs after its test process got %v", daemon, sig)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

func parsePid(line string) (int, bool) {
	var n int
	if _, err := fmt.Sscanf(line, "pid %d", &n); err != nil {
		return 0, false
	}
	return n, true
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return true
}
