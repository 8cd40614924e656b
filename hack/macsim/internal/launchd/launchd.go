// Package launchd is macsim's stand-in for macOS launchd and launchctl: a
// small per-host supervisor daemon that loads LaunchDaemon plists and runs
// their programs, and the launchctl client that talks to it over a unix
// socket.
//
// Only the system domain exists, as on a headless Mac reached over SSH. The
// messages and exit codes follow macOS 14/15; sources for each are cited
// where they are produced. Processes run in the daemon's namespaces and mount
// view, so on a simulated host they see the host's own files.
package launchd

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultSocket is where launchctl finds the daemon on a simulated host;
// MACSIM_LAUNCHD_SOCKET overrides it.
const (
	DefaultSocket = "/var/macsim/launchd.sock"
	SocketEnv     = "MACSIM_LAUNCHD_SOCKET"
)

// DefaultPATH is the PATH launchd gives daemons on macOS.
const DefaultPATH = "/usr/bin:/bin:/usr/sbin:/sbin"

// Options configure the daemon.
type Options struct {
	// Socket is the unix socket to listen on.
	Socket string
	// StateDir keeps the enable/disable overrides across restarts.
	StateDir string
	// Throttle is the minimum time between two launches of a job without a
	// ThrottleInterval key (launchd's default is 10 s).
	Throttle time.Duration
	// ExitTimeout is how long a stopping job gets between SIGTERM and
	// SIGKILL without an ExitTimeOut key (launchd's default is 20 s).
	ExitTimeout time.Duration
	// LoadDirs are bootstrapped at start, as launchd loads
	// /Library/LaunchDaemons when a Mac boots (disabled jobs stay unloaded).
	LoadDirs []string
	// Log receives the daemon's own messages (what launchd writes to the
	// system log); nil discards them.
	Log *log.Logger
}

// Request is one launchctl invocation.
type Request struct {
	Args []string `json:"args"`
	Cwd  string   `json:"cwd"`
}

// Response is what launchctl prints and its exit code.
type Response struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Exit   int    `json:"exit"`
}

// Daemon is a running supervisor.
type Daemon struct {
	opts     Options
	mu       sync.Mutex
	services map[string]*service
	disabled map[string]bool
	ln       net.Listener
	closed   bool
}

type service struct {
	job        *Job
	state      string // "running", "not running", "SIGTERMed"
	cmd        *exec.Cmd
	pid        int
	runs       int
	exitedOnce bool
	exitCode   int
	exitSignal syscall.Signal
	lastSpawn  time.Time
	stopping   bool          // a stop is in progress (bootout or kickstart -k)
	bootingOut bool          // unload when the process is gone
	exited     chan struct{} // closed when the current process is reaped
	restart    *time.Timer
}

// New prepares a daemon; Serve runs it.
func New(opts Options) (*Daemon, error) {
	if opts.Throttle == 0 {
		opts.Throttle = 10 * time.Second
	}
	if opts.ExitTimeout == 0 {
		opts.ExitTimeout = 20 * time.Second
	}
	if opts.Log == nil {
		opts.Log = log.New(discard{}, "", 0)
	}
	d := &Daemon{opts: opts, services: map[string]*service{}, disabled: map[string]bool{}}
	if opts.StateDir != "" {
		if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
			return nil, fmt.Errorf("launchd state directory: %w", err)
		}
		b, err := os.ReadFile(filepath.Join(opts.StateDir, "disabled.json"))
		if err == nil {
			if err := json.Unmarshal(b, &d.disabled); err != nil {
				return nil, fmt.Errorf("launchd overrides %s: %w", filepath.Join(opts.StateDir, "disabled.json"), err)
			}
		}
	}
	return d, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Serve listens on the socket and answers launchctl until Close.
func (d *Daemon) Serve() error {
	_ = os.Remove(d.opts.Socket)
	ln, err := net.Listen("unix", d.opts.Socket)
	if err != nil {
		return fmt.Errorf("launchd: listening on %s: %w", d.opts.Socket, err)
	}
	_ = os.Chmod(d.opts.Socket, 0o600)
	d.mu.Lock()
	d.ln = ln
	d.mu.Unlock()
	d.opts.Log.Printf("launchd: listening on %s", d.opts.Socket)
	d.loadAtBoot()
	for {
		conn, err := ln.Accept()
		if err != nil {
			d.mu.Lock()
			closed := d.closed
			d.mu.Unlock()
			if closed {
				return nil
			}
			return err
		}
		go d.serveConn(conn)
	}
}

func (d *Daemon) serveConn(conn net.Conn) {
	defer conn.Close()
	var req Request
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		return
	}
	resp := d.Handle(req)
	_ = json.NewEncoder(conn).Encode(resp)
}

// loadAtBoot bootstraps every plist in the load directories.
func (d *Daemon) loadAtBoot() {
	for _, dir := range d.opts.LoadDirs {
		paths, _ := filepath.Glob(filepath.Join(dir, "*.plist"))
		for _, p := range paths {
			if code := d.bootstrapOne(p); code != 0 && code != ExitDisabled {
				d.opts.Log.Printf("launchd: loading %s at boot: %d: %s", p, code, ErrorText(code))
			}
		}
	}
}

// Close stops accepting requests and stops every job, as a shutdown would.
func (d *Daemon) Close() {
	d.mu.Lock()
	d.closed = true
	if d.ln != nil {
		d.ln.Close()
	}
	var waits []chan struct{}
	for _, s := range d.services {
		s.bootingOut = true
		if s.restart != nil {
			s.restart.Stop()
		}
		if s.cmd != nil {
			waits = append(waits, d.stopLocked(s))
		}
	}
	d.mu.Unlock()
	for _, w := range waits {
		<-w
	}
}

func (d *Daemon) saveOverrides() {
	if d.opts.StateDir == "" {
		return
	}
	b, _ := json.MarshalIndent(d.disabled, "", "  ")
	tmp := filepath.Join(d.opts.StateDir, ".disabled.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		_ = os.Rename(tmp, filepath.Join(d.opts.StateDir, "disabled.json"))
	}
}

func (d *Daemon) isDisabled(j *Job) bool {
	if v, ok := d.disabled[j.Label]; ok {
		return v
	}
	return j.Disabled
}

// spawnLocked starts the job's program. A program that cannot be started
// counts as a run that exited with 78 (EX_CONFIG), as launchd reports it.
func (d *Daemon) spawnLocked(s *service) {
	j := s.job
	s.runs++
	s.lastSpawn = time.Now()
	cmd, files, err := command(j)
	if err == nil {
		err = start(cmd)
	}
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		d.opts.Log.Printf("launchd: %s: could not spawn: %v", j.Label, err)
		s.exitedOnce, s.exitCode, s.exitSignal = true, 78, 0
		s.state = "not running"
		d.scheduleRestartLocked(s, 78, false)
		return
	}
	s.cmd, s.pid, s.state = cmd, cmd.Process.Pid, "running"
	done := make(chan struct{})
	s.exited = done
	d.opts.Log.Printf("launchd: %s: spawned pid %d", j.Label, s.pid)
	go d.reap(s, cmd, done)
}

func command(j *Job) (*exec.Cmd, []*os.File, error) {
	args := j.ProgramArguments
	prog := j.Program
	if prog == "" {
		prog = args[0]
	}
	if len(args) == 0 {
		args = []string{prog}
	}
	if !strings.Contains(prog, "/") {
		found := ""
		for _, dir := range filepath.SplitList(DefaultPATH) {
			if fi, err := os.Stat(filepath.Join(dir, prog)); err == nil && !fi.IsDir() {
				found = filepath.Join(dir, prog)
				break
			}
		}
		if found == "" {
			return nil, nil, fmt.Errorf("%s: not found in %s", prog, DefaultPATH)
		}
		prog = found
	}
	cmd := &exec.Cmd{Path: prog, Args: args, Dir: j.WorkingDirectory}
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	env := map[string]string{"PATH": DefaultPATH, "XPC_SERVICE_NAME": j.Label, "XPC_FLAGS": "0x0"}
	for k, v := range j.Env {
		env[k] = v
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	sort.Strings(cmd.Env)
	var files []*os.File
	open := func(path string) (*os.File, error) {
		if path == "" {
			return os.OpenFile(os.DevNull, os.O_RDWR, 0)
		}
		return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, err
	}
	files = append(files, stdin)
	stdout, err := open(j.StandardOutPath)
	if err != nil {
		return nil, files, fmt.Errorf("StandardOutPath: %w", err)
	}
	files = append(files, stdout)
	stderr := stdout
	if j.StandardErrorPath != j.StandardOutPath {
		if stderr, err = open(j.StandardErrorPath); err != nil {
			return nil, files, fmt.Errorf("StandardErrorPath: %w", err)
		}
		files = append(files, stderr)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := setCredential(cmd, j.UserName); err != nil {
		return nil, files, err
	}
	setDeathSignal(cmd.SysProcAttr)
	return cmd, files, nil
}

func (d *Daemon) reap(s *service, cmd *exec.Cmd, done chan struct{}) {
	err := cmd.Wait()
	code, sig := exitStatus(err)
	signaled := sig != 0
	d.mu.Lock()
	defer d.mu.Unlock()
	if !s.job.AbandonProcessGroup {
		// launchd kills what the job left in its process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	s.cmd, s.pid, s.state = nil, 0, "not running"
	s.exitedOnce, s.exitCode, s.exitSignal = true, code, sig
	d.opts.Log.Printf("launchd: %s: pid %d exited: %s", s.job.Label, cmd.Process.Pid, s.lastExit())
	close(done)
	if s.bootingOut {
		if d.services[s.job.Label] == s {
			delete(d.services, s.job.Label)
		}
		return
	}
	if s.stopping {
		return
	}
	d.scheduleRestartLocked(s, code, signaled)
}

func exitStatus(err error) (code int, sig syscall.Signal) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 0, ws.Signal()
		}
		return ee.ExitCode(), 0
	}
	if err != nil {
		return 1, 0
	}
	return 0, 0
}

// lastExit is the "last exit code" or "last terminating signal" line's value.
func (s *service) lastExit() string {
	switch {
	case !s.exitedOnce:
		return "(never exited)"
	case s.exitSignal != 0:
		return fmt.Sprintf("%s: %d", signalName(s.exitSignal), int(s.exitSignal))
	case s.exitCode == 78:
		return "78: EX_CONFIG"
	}
	return fmt.Sprint(s.exitCode)
}

// status is the Status column of `launchctl list`: the last exit code, or
// the negated signal that killed the job.
func (s *service) status() string {
	if s.exitSignal != 0 {
		return fmt.Sprint(-int(s.exitSignal))
	}
	return fmt.Sprint(s.exitCode)
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "Terminated"
	case syscall.SIGKILL:
		return "Killed"
	case syscall.SIGINT:
		return "Interrupt"
	case syscall.SIGSEGV:
		return "Segmentation fault"
	case syscall.SIGABRT:
		return "Abort trap"
	}
	return sig.String()
}

// scheduleRestartLocked applies KeepAlive and the throttle: a job is not
// launched more often than once per ThrottleInterval.
func (d *Daemon) scheduleRestartLocked(s *service, code int, signaled bool) {
	if !s.job.KeepAlive.Restart(code, signaled) || d.isDisabled(s.job) {
		return
	}
	throttle := d.opts.Throttle
	if s.job.ThrottleInterval >= 0 {
		throttle = time.Duration(s.job.ThrottleInterval) * time.Second
	}
	wait := time.Until(s.lastSpawn.Add(throttle))
	if wait > 0 {
		d.opts.Log.Printf("launchd: %s: service only ran for %s; respawning in %s (throttled)", s.job.Label, time.Since(s.lastSpawn).Round(time.Millisecond), wait.Round(time.Millisecond))
	}
	s.restart = time.AfterFunc(max(wait, 0), func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.services[s.job.Label] != s || s.cmd != nil || s.stopping || s.bootingOut || d.closed {
			return
		}
		d.spawnLocked(s)
	})
}

// stopLocked sends SIGTERM to the job and SIGKILL after its exit timeout; the
// returned channel closes when the process is gone.
func (d *Daemon) stopLocked(s *service) chan struct{} {
	done := s.exited
	if s.cmd == nil || done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	timeout := d.opts.ExitTimeout
	if s.job.ExitTimeOut >= 0 {
		timeout = time.Duration(s.job.ExitTimeOut) * time.Second
	}
	pid := s.pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	go func() {
		select {
		case <-done:
		case <-time.After(timeout):
			d.opts.Log.Printf("launchd: %s: exit timeout elapsed; sending SIGKILL to pid %d", s.job.Label, pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	return done
}
