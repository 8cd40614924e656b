package sim

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// serverVersion is what macOS 15's sshd announces.
const serverVersion = "SSH-2.0-OpenSSH_9.8"

// sshPIDs numbers sshd's per-connection processes in the guest's log.
var sshPIDs atomic.Int32

func init() { sshPIDs.Store(400) }

// serverConfig accepts exactly the configured guest login: the user with
// one of the authorized keys, or with the password (also through
// keyboard-interactive, which macOS's sshd offers for passwords).
func (d *Driver) serverConfig(hostKey ssh.Signer) (*ssh.ServerConfig, error) {
	login := d.opts.GuestLogin
	user := login.User
	if user == "" {
		user = "admin" // the account of tart's and Apple's sample images
	}
	var keys [][]byte
	for rest := login.AuthorizedKeys; len(bytes.TrimSpace(rest)) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("guest authorized keys: %w", err)
		}
		keys = append(keys, k.Marshal())
		rest = r
	}
	userOK := func(c ssh.ConnMetadata) bool {
		return subtle.ConstantTimeCompare([]byte(c.User()), []byte(user)) == 1
	}
	perms := func(method string) *ssh.Permissions {
		return &ssh.Permissions{Extensions: map[string]string{"method": method}}
	}
	cfg := &ssh.ServerConfig{ServerVersion: serverVersion}
	if len(keys) > 0 {
		cfg.PublicKeyCallback = func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			k := key.Marshal()
			for _, a := range keys {
				if subtle.ConstantTimeCompare(a, k) == 1 && userOK(c) {
					return perms("publickey"), nil
				}
			}
			return nil, fmt.Errorf("key not authorized for %q", c.User())
		}
	}
	if login.Password != "" {
		pw := []byte(login.Password)
		check := func(c ssh.ConnMetadata, got []byte) (*ssh.Permissions, error) {
			if subtle.ConstantTimeCompare(got, pw) == 1 && userOK(c) {
				return perms("password"), nil
			}
			return nil, errors.New("wrong user or password")
		}
		cfg.PasswordCallback = check
		cfg.KeyboardInteractiveCallback = func(c ssh.ConnMetadata, chal ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			ans, err := chal("", "", []string{"Password:"}, []bool{false})
			if err != nil {
				return nil, err
			}
			if len(ans) != 1 {
				return nil, errors.New("want one answer")
			}
			return check(c, []byte(ans[0]))
		}
	}
	cfg.AddHostKey(hostKey)
	return cfg, nil
}

// serve accepts SSH connections until the guest powers off.
func (m *Machine) serve(r *run) {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go m.handleConn(r, c)
	}
}

func (m *Machine) handleConn(r *run, nc net.Conn) {
	defer r.wg.Done()
	pid := int(sshPIDs.Add(1))
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(nc, m.sshCfg)
	if err != nil {
		nc.Close()
		m.log.write("sshd", pid, fmt.Sprintf("Connection closed by %s [preauth]", nc.RemoteAddr()), false)
		return
	}
	nc.SetDeadline(time.Time{})
	if !r.track(sc) {
		sc.Close()
		return
	}
	defer r.untrack(sc)
	m.log.write("sshd", pid, fmt.Sprintf("Accepted %s for %s from %s ssh2", sc.Permissions.Extensions["method"], sc.User(), nc.RemoteAddr()), false)
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only session channels are supported")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			s := &session{m: m, r: r, ch: ch, pid: pid, user: sc.User()}
			s.serve(creqs)
		}()
	}
}

// track registers a connection, or refuses it once the guest is going down.
func (r *run) track(c *ssh.ServerConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return false
	}
	r.conns[c] = true
	return true
}

func (r *run) untrack(c *ssh.ServerConn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// killAll drops every connection and kills every command's process group
// and every process of this boot left in the background, as powering off
// does.
func (r *run) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
	for pgid := range r.procs {
		unix.Kill(-pgid, unix.SIGKILL)
	}
	killTagged(r.tag)
}

// session is one SSH session channel: at most one command or shell.
type session struct {
	m    *Machine
	r    *run
	ch   ssh.Channel
	pid  int
	user string

	env     []string
	pty     bool
	term    string
	size    atomic.Uint64 // cols<<32 | rows
	master  atomic.Pointer[os.File]
	pgid    atomic.Int32
	started bool
}

func (s *session) serve(reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(s.r.ctx)
	defer cancel()
	done := make(chan struct{})
	for req := range reqs {
		ok := true
		switch req.Type {
		case "env":
			var p struct{ Name, Value string }
			if ok = ssh.Unmarshal(req.Payload, &p) == nil && !s.started; ok {
				s.env = append(s.env, p.Name+"="+p.Value)
			}
		case "pty-req":
			var p struct {
				Term                 string
				Cols, Rows, Wpx, Hpx uint32
				Modes                string
			}
			if ok = ssh.Unmarshal(req.Payload, &p) == nil && !s.started; ok {
				s.pty, s.term = true, p.Term
				s.size.Store(uint64(p.Cols)<<32 | uint64(p.Rows))
			}
		case "window-change":
			var p struct{ Cols, Rows, Wpx, Hpx uint32 }
			if ok = ssh.Unmarshal(req.Payload, &p) == nil; ok {
				s.size.Store(uint64(p.Cols)<<32 | uint64(p.Rows))
				if m := s.master.Load(); m != nil {
					s.applySize(m)
				}
			}
		case "exec", "shell":
			var p struct{ Command string }
			if req.Type == "exec" {
				ok = ssh.Unmarshal(req.Payload, &p) == nil
			}
			if ok = ok && !s.started; ok {
				s.started = true
				go s.run(ctx, p.Command, req.Type == "shell", done)
			}
		case "signal":
			var p struct{ Signal string }
			if ok = ssh.Unmarshal(req.Payload, &p) == nil; ok {
				s.signal(p.Signal)
			}
		default:
			ok = false
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
	}
	// The client closed the channel: end what still runs.
	cancel()
	if s.started {
		<-done
	}
}

func (s *session) signal(name string) {
	sig := unix.SignalNum("SIG" + name)
	if pg := s.pgid.Load(); pg > 0 && sig != 0 {
		unix.Kill(-int(pg), sig)
	}
}

// run runs the session's command, then reports its exit like sshd: EOF,
// exit-status (or exit-signal), close.
func (s *session) run(ctx context.Context, cmdline string, shell bool, done chan<- struct{}) {
	defer close(done)
	s.m.log.write("sshd", s.pid, "session: "+describe(cmdline, shell), false)
	code, sig := s.execute(ctx, cmdline, shell)
	s.ch.CloseWrite()
	if sig != "" {
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: sig}))
	} else {
		s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
	}
	s.ch.Close()
}

// describe names a session's command for the guest's log: the program
// and how many arguments, never the arguments (they may hold secrets). A
// program run under env(1) with variables (as vz-node runs a container's
// commands) is named itself.
func describe(cmdline string, shell bool) string {
	if shell {
		return "shell"
	}
	words, ok := simpleWords(cmdline)
	if ok && len(words) > 1 && words[0] == "env" {
		i := 1
		for i < len(words) && strings.Contains(words[i], "=") {
			i++
		}
		if i > 1 && i < len(words) {
			words = words[i:]
		}
	}
	switch {
	case !ok:
		return fmt.Sprintf("exec: shell command line (%d bytes)", len(cmdline))
	case len(words) == 0:
		return "exec: (empty)"
	default:
		return fmt.Sprintf("exec: %s (%d arguments)", words[0], len(words)-1)
	}
}

// execute runs cmdline (or a shell) in the guest and returns its exit
// status, or the name of the signal that killed it.
func (s *session) execute(ctx context.Context, cmdline string, shell bool) (int, string) {
	if words, ok := simpleWords(cmdline); ok && !shell {
		if w := stripSudo(words); len(w) > 0 && w[0] == "log" {
			return s.logCommand(ctx, w[1:]), ""
		}
	}
	var c *exec.Cmd
	if shell {
		c = exec.Command("/bin/sh")
	} else {
		c = exec.Command("/bin/sh", "-c", cmdline)
	}
	c.Dir = s.m.guestDir
	c.Env = append(s.baseEnv(), s.env...)
	var err error
	if s.pty {
		err = s.runPTY(ctx, c)
	} else {
		err = s.runPipes(ctx, c)
	}
	if c.ProcessState == nil {
		fmt.Fprintf(s.ch.Stderr(), "%s: %v\n", c.Path, err)
		return 127, ""
	}
	if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 0, strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG")
	}
	return c.ProcessState.ExitCode(), ""
}

// stripSudo drops a leading sudo and its options.
func stripSudo(w []string) []string {
	if len(w) == 0 || w[0] != "sudo" {
		return w
	}
	w = w[1:]
	for len(w) > 0 && strings.HasPrefix(w[0], "-") {
		if w[0] == "--" {
			return w[1:]
		}
		w = w[1:]
	}
	return w
}

func (s *session) baseEnv() []string {
	env := []string{
		"HOME=" + s.m.guestDir,
		"USER=" + s.user,
		"LOGNAME=" + s.user,
		"SHELL=/bin/sh",
		"PATH=" + filepath.Join(s.m.dir, simDirName) + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"LANG=en_US.UTF-8",
		s.r.tag,
	}
	if s.pty {
		env = append(env, "TERM="+s.term)
	}
	return env
}

// adopt records a command's process group so power-off and signals
// reach it, and kills it when ctx ends.
func (s *session) adopt(ctx context.Context, c *exec.Cmd) (stop func()) {
	pg := c.Process.Pid
	s.pgid.Store(int32(pg))
	s.r.mu.Lock()
	s.r.procs[pg] = true
	s.r.mu.Unlock()
	stopKill := context.AfterFunc(ctx, func() { unix.Kill(-pg, unix.SIGKILL) })
	return func() {
		stopKill()
		s.r.mu.Lock()
		delete(s.r.procs, pg)
		s.r.mu.Unlock()
	}
}

func (s *session) runPipes(ctx context.Context, c *exec.Cmd) error {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Stdout, c.Stderr = s.ch, s.ch.Stderr()
	// Output held open by background children is cut off like sshd does
	// when the session's command exits.
	c.WaitDelay = time.Second
	stdin, err := c.StdinPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	defer s.adopt(ctx, c)()
	go func() {
		io.Copy(stdin, s.ch)
		stdin.Close()
	}()
	return c.Wait()
}

func (s *session) runPTY(ctx context.Context, c *exec.Cmd) error {
	master, tty, err := openPTY()
	if err != nil {
		return err
	}
	defer master.Close()
	if err := s.applySize(master); err != nil {
		tty.Close()
		return err
	}
	c.Stdin, c.Stdout, c.Stderr = tty, tty, tty
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = c.Start()
	tty.Close()
	if err != nil {
		return err
	}
	defer s.adopt(ctx, c)()
	s.master.Store(master)
	s.applySize(master) // a resize that arrived while the command started
	go io.Copy(master, s.ch)
	out := make(chan struct{})
	go func() {
		io.Copy(s.ch, master) // ends with EIO once the terminal has no users
		close(out)
	}()
	err = c.Wait()
	select {
	case <-out:
	case <-time.After(time.Second): // a background child keeps the terminal
	}
	return err
}

// applySize gives the terminal the latest size the client sent.
func (s *session) applySize(master *os.File) error {
	sz := s.size.Load()
	return setWinsize(master, uint32(sz>>32), uint32(sz))
}

// logCommand is macOS's log(1): show and stream over the guest's log.
func (s *session) logCommand(ctx context.Context, args []string) int {
	stderr := s.ch.Stderr()
	if len(args) == 0 || (args[0] != "show" && args[0] != "stream") {
		fmt.Fprintln(stderr, "usage: log show|stream [--style syslog|compact|default] [options]")
		return 64
	}
	a, err := parseLogArgs(args[0], args[1:], time.Now())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 64
	}
	if args[0] == "show" {
		err = s.m.log.show(s.ch, a)
	} else {
		err = s.m.log.stream(ctx, s.ch, a)
	}
	if err != nil {
		fmt.Fprintf(stderr, "log: %v\n", err)
		return 1
	}
	return 0
}
