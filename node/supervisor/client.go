//go:build unix

package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrNotRunning: no supervisor answers for the VM.
var ErrNotRunning = errors.New("VM supervisor is not running")

// Launch starts a detached supervisor for the VM id under stateDir with
// binary (normally os.Executable()). It runs in its own session so it
// survives the agent, with output appended to dir/supervisor.log. The
// environment is passed on without the agent's secrets.
func Launch(binary, stateDir, id string) (int, error) {
	dir := Dir(stateDir, id)
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("supervisor log: %w", err)
	}
	defer logf.Close()
	// A state file of a previous run would be mistaken for this one's.
	if err := os.Remove(filepath.Join(dir, StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("clear previous VM state: %w", err)
	}
	cmd := exec.Command(binary, "vm", "run", "--state-dir", stateDir, "--id", id)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = scrubEnv(os.Environ())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start VM supervisor %s: %w", binary, err)
	}
	pid := cmd.Process.Pid
	// Reap it if it exits while this agent runs; after an agent restart
	// init does.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// secretEnv lists variables a supervisor must not inherit.
var secretEnv = []string{"VZ_SSH_PASSWORD=", "APISERVER_KEY_LOCATION=", "KUBECONFIG="}

func scrubEnv(env []string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, p := range secretEnv {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// Alive reports whether process pid exists.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Client talks to one supervisor's control socket.
type Client struct{ Socket string }

func (c Client) dial(ctx context.Context, op string) (net.Conn, *bufio.Reader, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	if err := json.NewEncoder(conn).Encode(request{Op: op}); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	return conn, bufio.NewReader(conn), nil
}

func (c Client) call(ctx context.Context, op string) (State, error) {
	conn, r, err := c.dial(ctx, op)
	if err != nil {
		return State{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var resp response
	line, err := r.ReadBytes('\n')
	if err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return State{}, fmt.Errorf("supervisor answer: %w", err)
	}
	if resp.Error != "" {
		return resp.State, fmt.Errorf("supervisor %s: %s", op, resp.Error)
	}
	return resp.State, nil
}

// Status returns the supervisor's current state.
func (c Client) Status(ctx context.Context) (State, error) { return c.call(ctx, opStatus) }

// RequestStop asks the guest to shut down, like pressing its power button.
func (c Client) RequestStop(ctx context.Context) error {
	_, err := c.call(ctx, opRequestStop)
	return err
}

// Stop powers the VM off at once.
func (c Client) Stop(ctx context.Context) error {
	_, err := c.call(ctx, opStop)
	return err
}

// Watch calls fn with the current state and every change until the
// supervisor ends the stream (its VM stopped or it exited) or ctx ends.
func (c Client) Watch(ctx context.Context, fn func(State)) error {
	conn, r, err := c.dial(ctx, opWatch)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		var resp response
		if err := json.Unmarshal(line, &resp); err != nil {
			return fmt.Errorf("supervisor watch: %w", err)
		}
		fn(resp.State)
	}
}

// WaitSocket waits until the supervisor in dir answers or has recorded a
// terminal state, for up to timeout.
func WaitSocket(ctx context.Context, dir string, timeout time.Duration) (State, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := Client{Socket: SocketPath(dir)}
	for {
		if st, err := c.Status(ctx); err == nil {
			return st, nil
		}
		if st, err := ReadState(dir); err == nil && st.Terminal() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return State{}, fmt.Errorf("VM supervisor in %s did not come up within %s (see %s): %w", dir, timeout, LogFile, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill ends the supervisor process pid (used for orphans with no socket).
func Kill(pid int) error {
	if !Alive(pid) {
		return nil
	}
	return syscall.Kill(pid, syscall.SIGTERM)
}
