package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a daemon started by the harness. Its output goes to LogPath.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

var (
	liveMu   sync.Mutex
	live     = map[*Process]struct{}{}
	sigOnce  sync.Once
	stopOnce = map[*Process]*sync.Once{}
	// interruptHooks undo what killing processes does not (network
	// namespaces, mounts); they run newest first on SIGINT or SIGTERM.
	interruptHooks []func()
)

// OnInterrupt registers f to run when the harness's signal handler ends the
// program, after it has killed every daemon.
func OnInterrupt(f func()) {
	liveMu.Lock()
	interruptHooks = append(interruptHooks, f)
	liveMu.Unlock()
}

// killOnSignal makes an interrupted test run (Ctrl-C, SIGTERM) take its
// daemons down with it; SIGKILL of the test binary is covered by Pdeathsig.
func killOnSignal() {
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			sig := <-ch
			liveMu.Lock()
			for p := range live {
				p.kill()
			}
			hooks := interruptHooks
			liveMu.Unlock()
			for i := len(hooks) - 1; i >= 0; i-- {
				hooks[i]()
			}
			fmt.Fprintf(os.Stderr, "harness: %v: stopped all daemons\n", sig)
			os.Exit(130)
		}()
	})
}

// StartProcess runs bin with args, logging to logPath. The process gets its
// own process group so that Stop also ends anything it started.
func StartProcess(name, logPath, bin string, args []string, env []string) (*Process, error) {
	killOnSignal()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := startLocked(cmd); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	liveMu.Lock()
	live[p] = struct{}{}
	stopOnce[p] = &sync.Once{}
	liveMu.Unlock()
	return p, nil
}

// Exited reports whether the process has ended, and its error if so.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

func (p *Process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// Stop asks the process group to terminate, then kills it after a grace
// period, and waits for it to exit.
func (p *Process) Stop() {
	liveMu.Lock()
	once := stopOnce[p]
	liveMu.Unlock()
	if once == nil {
		return
	}
	once.Do(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.kill()
			<-p.done
		}
		// Children that ignored SIGTERM still go.
		p.kill()
		liveMu.Lock()
		delete(live, p)
		delete(stopOnce, p)
		liveMu.Unlock()
	})
}

// Tail returns the last n lines of the process log, for error messages.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls check until it succeeds, the process exits, or ctx ends.
func (p *Process) waitFor(ctx context.Context, what string, check func() error) error {
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("%s exited (%v) before %s; log %s:\n%s", p.Name, err, what, p.LogPath, p.Tail(20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s: %w (last: %v); log %s:\n%s", p.Name, what, ctx.Err(), last, p.LogPath, p.Tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
