//go:build linux || darwin

package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Launcher starts VM supervisors like Launch, keeping one spare supervisor
// process started ahead of time. The spare waits on a pipe for the ID of
// the VM it is to run, so a pod's start does not wait for the binary to
// load and initialise its packages (vz-node links client-go and friends:
// 50–150 ms). A spare whose agent goes away reads end-of-file and exits.
type Launcher struct {
	binary, stateDir string

	mu     sync.Mutex
	spare  *spare
	closed bool
}

type spare struct {
	pid    int
	ids    *os.File // write end of the spare's stdin
	exited chan struct{}
}

// spareLogPattern names spare supervisors' logs in the state directory.
const spareLogPattern = "supervisor-spare-*.log"

// NewLauncher returns a Launcher for binary (normally os.Executable()) and
// starts its first spare in the background. Logs left by spares of an agent
// that was killed are removed.
func NewLauncher(binary, stateDir string) *Launcher {
	stale, _ := filepath.Glob(filepath.Join(stateDir, spareLogPattern))
	for _, p := range stale {
		os.Remove(p)
	}
	l := &Launcher{binary: binary, stateDir: stateDir}
	go l.refill()
	return l
}

// Launch starts the supervisor of VM id and returns its pid: the spare when
// one is ready, otherwise a new process.
func (l *Launcher) Launch(id string) (int, error) {
	if err := validID(id); err != nil {
		return 0, err
	}
	l.mu.Lock()
	sp := l.spare
	l.spare = nil
	l.mu.Unlock()
	if sp != nil {
		go l.refill()
		if pid, ok := sp.assign(l.stateDir, id); ok {
			return pid, nil
		}
	}
	return Launch(l.binary, l.stateDir, id)
}

// Close stops the spare; supervisors already running are not touched.
func (l *Launcher) Close() {
	l.mu.Lock()
	sp := l.spare
	l.spare, l.closed = nil, true
	l.mu.Unlock()
	if sp != nil {
		sp.ids.Close()
		select {
		case <-sp.exited:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(sp.pid, syscall.SIGKILL)
		}
	}
}

// refill starts a spare unless one exists or the launcher is closed. A
// spare that fails to start leaves Launch on the cold path.
func (l *Launcher) refill() {
	l.mu.Lock()
	if l.closed || l.spare != nil {
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	sp, err := startSpare(l.binary, l.stateDir)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.spare != nil {
		sp.ids.Close()
		return
	}
	l.spare = sp
}

func startSpare(binary, stateDir string) (*spare, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(stateDir, strings.Replace(spareLogPattern, "*", strconv.FormatInt(time.Now().UnixNano(), 36), 1))
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spare supervisor log: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(binary, "vm", "run", "--state-dir", stateDir, "--spare-log", logPath)
	cmd.Dir = stateDir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, logf, logf
	cmd.Env = scrubEnv(os.Environ())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		os.Remove(logPath)
		return nil, fmt.Errorf("start spare VM supervisor %s: %w", binary, err)
	}
	sp := &spare{pid: cmd.Process.Pid, ids: w, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(sp.exited) }()
	return sp, nil
}

// assign hands the spare VM id; false when it is gone.
func (sp *spare) assign(stateDir, id string) (int, bool) {
	defer sp.ids.Close()
	select {
	case <-sp.exited:
		return 0, false
	default:
	}
	// A state file of a previous run would be mistaken for this one's.
	if err := os.Remove(filepath.Join(Dir(stateDir, id), StateFile)); err != nil && !os.IsNotExist(err) {
		return 0, false
	}
	if _, err := io.WriteString(sp.ids, id+"\n"); err != nil {
		return 0, false
	}
	return sp.pid, true
}

// RunSpare is the spare supervisor's side: it waits for a VM ID on ids,
// moves its output from spareLog to the VM's supervisor.log, and runs the
// VM like Run. End-of-file (the agent went away or closed the launcher)
// ends it quietly.
func RunSpare(ctx context.Context, stateDir, spareLog string, ids io.Reader, log *slog.Logger) error {
	defer os.Remove(spareLog)
	line, err := bufio.NewReader(ids).ReadString('\n')
	if err != nil {
		return nil
	}
	id := strings.TrimSuffix(line, "\n")
	if err := validID(id); err != nil {
		return err
	}
	dir := Dir(stateDir, id)
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("supervisor log: %w", err)
	}
	for _, fd := range []int{1, 2} {
		if err := dupOnto(int(logf.Fd()), fd); err != nil {
			return fmt.Errorf("supervisor log: redirect fd %d: %w", fd, err)
		}
	}
	logf.Close()
	if err := os.Chdir(dir); err != nil {
		return err
	}
	return Run(ctx, dir, log)
}

// validID accepts a VM ID that names one directory under the state dir.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00\n") {
		return fmt.Errorf("VM supervisor: invalid VM id %q", id)
	}
	return nil
}
