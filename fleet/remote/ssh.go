package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"github.com/vzfleet/vzfleet/internal/sshsession"
	"golang.org/x/crypto/ssh"
)

// ErrClosed: the host was closed by the caller.
var ErrClosed = errors.New("host connection closed")

// SSH is a host reached over SSH. It keeps one connection (through its jump
// hosts), multiplexes commands as sessions on it and serves files over SFTP
// on the same connection. Safe for concurrent use.
type SSH struct {
	cfg    Config
	target hop
	jumps  []hop
	sem    chan struct{} // bounds concurrent command sessions

	mu     sync.Mutex
	client *ssh.Client
	done   <-chan struct{} // closed when client's connection has ended
	chain  []*ssh.Client
	keys   []presentedKey // what the hops presented: the target last
	sftp   *sftpConn
	closed bool
	// ending: Close has begun and waits for kills, the kills of cancelled
	// commands' process groups still under way.
	ending bool
	kills  sync.WaitGroup
	// root is an SFTP client served by sftp-server run through sudo, for
	// files only root may write; rootFailed: it could not start (sudo's
	// policy, no sftp-server), so those go through `sudo sh -c 'cat >'`.
	root       *rootSFTP
	rootFailed bool
	rootMu     sync.Mutex // serialises starting root
	sftpMu     sync.Mutex // serialises starting sftp
	// hold: the host was reached directly though there is a mux, which
	// is asked on Close to hold a connection for the next run (s.mu).
	hold bool
}

// sftpConn is an SFTP client and the session its server runs on.
type sftpConn struct {
	sc    *sftp.Client
	sess  *ssh.Session
	abort func() // ends the client's reading from the server
}

// close cuts the client off from its server first: the client's Close
// waits for its reader, and a server that hangs (a stopped sftp-server:
// sshd keeps the session open while it lives) would keep it waiting.
func (c *sftpConn) close() {
	c.abort()
	c.sess.Close()
	c.sc.Close()
}

// rootSFTP is an SFTP client over a session running sftp-server as root.
type rootSFTP struct {
	sftpConn
	conn *ssh.Client
	free func() // gives back the command session slot it holds
}

func (r *rootSFTP) close() {
	r.sftpConn.close()
	r.free()
}

var _ Host = (*SSH)(nil)

// Name is the host's name for messages.
func (s *SSH) Name() string { return s.cfg.Name }

// User is the account the connection logs in as.
func (s *SSH) User() string { return s.target.user }

// connect returns the live connection, dialling when there is none, and
// a channel closed when that connection has ended.
func (s *SSH) connect(ctx context.Context) (*ssh.Client, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, fmt.Errorf("host %s: %w", s.cfg.Name, ErrClosed)
	}
	if s.client != nil {
		select {
		case <-s.done: // ended, and drop has not run yet
			closeAll := s.detachLocked()
			go closeAll()
		default:
			return s.client, s.done, nil
		}
	}
	c, chain, keys, err := s.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	done := sshsession.Ended(c)
	s.client, s.done, s.chain, s.keys = c, done, chain, keys
	go func() {
		<-done
		s.drop(c)
	}()
	if s.cfg.KeepAlive > 0 {
		go s.keepAlive(c, done)
	}
	return c, done, nil
}

// dial borrows the connection from the mux when it holds one, else
// connects directly (and asks the mux to hold one on Close), returning
// the keys the hops presented. s.mu is held.
func (s *SSH) dial(ctx context.Context) (*ssh.Client, []*ssh.Client, []presentedKey, error) {
	if s.cfg.Mux != nil {
		c, err := s.dialMux(ctx)
		if err == nil {
			return c, nil, nil, nil // the mux checked the keys
		}
		if ctx.Err() != nil {
			return nil, nil, nil, fmt.Errorf("host %s: %w", s.cfg.Name, ctx.Err())
		}
		s.cfg.Logger.Debug("no connection from the SSH mux; connecting directly", "host", s.cfg.Name, "err", err)
	}
	c, chain, keys, err := s.dialChain(ctx)
	if err == nil && s.cfg.Mux != nil {
		s.hold = true
	}
	return c, chain, keys, err
}

// checkHostKeys checks the keys the connection's hops presented against
// their known_hosts files as they are now, so a connection the mux has
// held for a while is lent only while known_hosts still vouches for it.
func (s *SSH) checkHostKeys() error {
	s.mu.Lock()
	keys := s.keys
	s.mu.Unlock()
	for _, k := range keys {
		if err := k.verify(); err != nil {
			return err
		}
	}
	return nil
}

// live tells whether s has a connection that has not ended; not while it
// is dialling one (which holds s.mu for as long as that takes).
func (s *SSH) live() bool {
	if !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	if s.client == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// drop forgets c once it is dead (or suspected dead) so the next call
// dials again.
func (s *SSH) drop(c *ssh.Client) {
	s.mu.Lock()
	if s.client != c {
		s.mu.Unlock()
		return
	}
	closeAll := s.detachLocked()
	s.mu.Unlock()
	closeAll()
}

// detachLocked forgets the connection, its jump hosts' connections and the
// SFTP clients on it, and returns what closes them, to be called without
// the lock. The connection goes first: a client's Close waits for its
// server, which returns at once when the connection is gone but not when
// the host hangs. s.mu is held.
func (s *SSH) detachLocked() (closeAll func() error) {
	c, chain, sc, root := s.client, s.chain, s.sftp, s.root
	s.client, s.done, s.chain, s.keys, s.sftp, s.root = nil, nil, nil, nil, nil, nil
	return func() error {
		var err error
		if c != nil {
			err = c.Close()
		}
		for i := len(chain) - 1; i >= 0; i-- {
			chain[i].Close()
		}
		if sc != nil {
			sc.close()
		}
		if root != nil {
			root.close()
		}
		return err
	}
}

// keepAlive probes the connection; three unanswered probes close it.
func (s *SSH) keepAlive(c *ssh.Client, done <-chan struct{}) {
	t := time.NewTicker(s.cfg.KeepAlive)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err == nil {
				missed = 0
				continue
			}
		case <-time.After(s.cfg.KeepAlive):
		case <-done:
			return
		}
		if missed++; missed >= 3 {
			s.cfg.Logger.Warn("connection unresponsive, closing", "host", s.cfg.Name)
			s.drop(c)
			return
		}
	}
}

// session opens a session. It redials once if the connection was lost,
// and waits a little when sshd refuses a session: sshd frees a session
// slot only some time after the command ended.
func (s *SSH) session(ctx context.Context) (*ssh.Session, error) {
	redialed := false
	backoff := 20 * time.Millisecond
	for refused := 0; ; {
		c, done, err := s.connect(ctx)
		if err != nil {
			return nil, err
		}
		sess, err := sshsession.Open(ctx, c.NewSession, done)
		if err == nil {
			return sess, nil
		}
		var oce *ssh.OpenChannelError
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("host %s: opening a session: %w", s.cfg.Name, ctx.Err())
		case errors.As(err, &oce) && refused < 8:
			refused++
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff *= 2
		case !redialed && (errors.Is(err, sshsession.ErrConnectionEnded) || isConnectionLost(c)):
			redialed = true
			s.drop(c)
		default:
			return nil, fmt.Errorf("host %s: opening a session: %w", s.cfg.Name, err)
		}
	}
}

// isConnectionLost tells whether c no longer answers.
func isConnectionLost(c *ssh.Client) bool {
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	select {
	case err := <-answered:
		return err != nil
	case <-time.After(5 * time.Second):
		return true
	}
}

// Run runs cmd through the login shell of the remote user. When ctx ends
// first, the command's process group is killed and Run returns at once.
func (s *SSH) Run(ctx context.Context, cmd Cmd) (Result, error) {
	return s.run(ctx, cmd, s.sem)
}

// run runs cmd; sem, when not nil, bounds the sessions open at once.
func (s *SSH) run(ctx context.Context, cmd Cmd, sem chan struct{}) (Result, error) {
	var res Result
	line, err := commandLine(cmd, s.cfg.Sudo, s.cfg.SudoPath)
	if err != nil {
		return res, fmt.Errorf("host %s: %w", s.cfg.Name, err)
	}
	display := displayLine(cmd, s.cfg.Sudo, s.cfg.SudoPath)
	if sem == nil {
		sem = make(chan struct{}, 1) // private: bounds nothing
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return res, fmt.Errorf("host %s: command %s: %w", s.cfg.Name, display, ctx.Err())
	}
	sess, err := s.session(ctx)
	if err != nil {
		<-sem
		return res, err
	}
	out := newOutputs(cmd)
	streams := &gate{}
	stderr := &pidCatcher{w: streams.writer(out.stderr)}
	sess.Stdin, sess.Stdout, sess.Stderr = streams.reader(cmd.Stdin), streams.writer(out.stdout), stderr
	if !cmd.Sensitive {
		s.cfg.Logger.Debug("run", "host", s.cfg.Name, "cmd", display)
	}
	start := time.Now()
	if err := sess.Start(reportPID + line); err != nil {
		sess.Close()
		<-sem
		return res, fmt.Errorf("host %s: command %s: %w", s.cfg.Name, display, err)
	}
	// The session keeps its slot until it really ends: a command that
	// outlives its context still counts against sshd's MaxSessions.
	waited := make(chan error, 1)
	go func() {
		err := sess.Wait()
		stderr.flush()
		sess.Close()
		<-sem
		waited <- err
	}()
	select {
	case err = <-waited:
	case <-ctx.Done():
		// sshd ignores signals on root logins, and a signal would reach
		// only the shell anyway: kill the process group from a session of
		// its own.
		_ = sess.Signal(ssh.SIGKILL)
		if pid := stderr.PID(); pid > 0 {
			s.startKill(pid, cmd.Sudo)
		}
		sess.Close()
		streams.close()
		return res, fmt.Errorf("host %s: command %s: %w", s.cfg.Name, display, ctx.Err())
	}
	res.Duration = time.Since(start)
	code, signal := 0, ""
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code, signal = exit.ExitStatus(), exit.Signal()
		if signal != "" {
			code = -1
		}
	case errors.As(err, &missing):
		return res, fmt.Errorf("host %s: command %s: the connection ended without an exit status "+
			"(the host may have gone down): %w", s.cfg.Name, display, err)
	default:
		return res, fmt.Errorf("host %s: command %s: %w", s.cfg.Name, display, err)
	}
	return res, out.result(&res, s.cfg.Name, s.target.user, cmd, display, code, signal, s.cfg.Sudo)
}

// killScript ends a process group: TERM first (sudo passes it on to a
// command it runs on a pty of its own), KILL a second later.
const killScript = `kill -TERM -"$1" 2>/dev/null || exit 0
sleep 1
kill -KILL -"$1" 2>/dev/null
exit 0`

// startKill kills a cancelled command's process group in the background;
// Close waits for it, so a command is not left running on the host because
// the program that started it is about to exit.
func (s *SSH) startKill(pgid int, sudo bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return
	}
	s.kills.Add(1)
	go func() {
		defer s.kills.Done()
		s.killGroup(pgid, sudo)
	}()
}

// killGroup kills a cancelled command's process group, best effort. It
// does not wait for a session slot: the slots may all be held by hung
// commands (sshd's MaxSessions leaves room above ours).
func (s *SSH) killGroup(pgid int, sudo bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := s.run(ctx, Cmd{Args: []string{"sh", "-c", killScript, "sh", strconv.Itoa(pgid)}, Sudo: sudo}, nil)
	if err != nil {
		s.cfg.Logger.Debug("killing a cancelled command", "host", s.cfg.Name, "pgid", pgid, "err", err)
	}
}

// sftpClient returns the SFTP client on the live connection.
func (s *SSH) sftpClient(ctx context.Context) (*sftp.Client, error) {
	s.sftpMu.Lock()
	defer s.sftpMu.Unlock()
	c, done, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	cur := s.sftp
	s.mu.Unlock()
	if cur != nil {
		return cur.sc, nil
	}
	conn, _, err := startSFTP(ctx, c, done, func(sess *ssh.Session) error {
		if err := sess.RequestSubsystem("sftp"); err != nil {
			return fmt.Errorf("%w (is the sftp Subsystem enabled in sshd_config?)", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: starting SFTP: %w", s.cfg.Name, err)
	}
	if !s.whileCurrent(c, func() { s.sftp = conn }) {
		conn.close()
		return nil, fmt.Errorf("host %s: starting SFTP: %w", s.cfg.Name, sshsession.ErrConnectionEnded)
	}
	return conn.sc, nil
}

// whileCurrent runs set under the host's lock if c is still its live
// connection, and tells whether it was.
func (s *SSH) whileCurrent(c *ssh.Client, set func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != c || s.closed {
		return false
	}
	set()
	return true
}

// startSFTP opens a session on c, starts an SFTP server on it with start
// (the sftp subsystem, or a command) and returns a client speaking to it.
// The handshake is bounded by ctx and by the connection's end (done).
func startSFTP(ctx context.Context, c *ssh.Client, done <-chan struct{}, start func(*ssh.Session) error) (*sftpConn, *ssh.Session, error) {
	sess, err := sshsession.Open(ctx, c.NewSession, done)
	if err != nil {
		return nil, nil, err
	}
	w, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	if err := start(sess); err != nil {
		sess.Close()
		return nil, nil, err
	}
	// The client reads through a pipe that close can cut: reads from the
	// session return only when the server writes or the session ends.
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, r)
		pw.CloseWithError(err)
	}()
	abort := func() { pw.CloseWithError(errSFTPDropped) }
	// A server that refuses or is missing ends the session: the handshake
	// then fails at once. ctx bounds a host that never answers.
	stop := context.AfterFunc(ctx, func() { abort(); sess.Close() })
	sc, err := sftp.NewClientPipe(pr, w, sftp.UseConcurrentWrites(true))
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		abort()
		if sc != nil {
			sc.Close()
		}
		return nil, sess, err
	}
	return &sftpConn{sc: sc, sess: sess, abort: abort}, sess, nil
}

// errSFTPDropped: the SFTP client was cut off from its server (its context
// ended, or the connection is being closed).
var errSFTPDropped = errors.New("SFTP client dropped")

// sftpServerScript runs the host's sftp-server (macOS's, Debian's or Red
// Hat's path) on the session's stdin and stdout.
const sftpServerScript = `for p in /usr/libexec/sftp-server /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server; do
	if [ -x "$p" ]; then exec "$p"; fi
done
echo "no sftp-server in /usr/libexec, /usr/lib/openssh or /usr/libexec/openssh" >&2
exit 127`

// errNoRootSFTP: sftp-server could not be run through sudo on this host.
var errNoRootSFTP = errors.New("no SFTP as root through sudo")

// rootClient returns an SFTP client that acts as root: sftp-server run
// through `sudo -n` on a session of its own (which holds one of the
// command session slots while it lives). Files only root may write then
// go over SFTP like the others: a bounded number of writes in flight, and
// no program per file to put them in place. When sudo refuses or the host
// has no sftp-server, it says so once and callers fall back to commands;
// a connection lost meanwhile only fails this call.
func (s *SSH) rootClient(ctx context.Context) (*sftp.Client, error) {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	c, done, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if r := s.root; r != nil && r.conn == c {
		s.mu.Unlock()
		return r.sc, nil
	}
	failed := s.rootFailed
	s.mu.Unlock()
	if failed || !s.cfg.Sudo {
		return nil, errNoRootSFTP
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	free := sync.OnceFunc(func() { <-s.sem })
	r, refused, err := s.startRoot(ctx, c, done)
	if err != nil {
		free()
		s.cfg.Logger.Debug("no SFTP as root, files for root go through sudo sh", "host", s.cfg.Name, "err", err)
		if refused {
			s.mu.Lock()
			s.rootFailed = true
			s.mu.Unlock()
		}
		return nil, errNoRootSFTP
	}
	r.conn, r.free = c, free
	var old *rootSFTP
	if !s.whileCurrent(c, func() { old, s.root = s.root, r }) {
		r.close()
		return nil, fmt.Errorf("host %s: %w", s.cfg.Name, sshsession.ErrConnectionEnded)
	}
	if old != nil {
		old.close()
	}
	return r.sc, nil
}

// startRoot starts sftp-server through sudo on c. refused tells that the
// host refused it (sudo's policy, or no sftp-server): the command ran and
// exited, so asking again will not help.
func (s *SSH) startRoot(ctx context.Context, c *ssh.Client, done <-chan struct{}) (r *rootSFTP, refused bool, err error) {
	line, err := commandLine(Cmd{Args: []string{"sh", "-c", sftpServerScript}, Sudo: true}, s.cfg.Sudo, s.cfg.SudoPath)
	if err != nil {
		return nil, true, err
	}
	conn, sess, err := startSFTP(ctx, c, done, func(sess *ssh.Session) error { return sess.Start(line) })
	if err == nil {
		return &rootSFTP{sftpConn: *conn}, false, nil
	}
	if sess != nil {
		// The exit status says whether sudo or the script refused.
		waited := make(chan error, 1)
		go func() { waited <- sess.Wait() }()
		var exit *ssh.ExitError
		select {
		case werr := <-waited:
			refused = errors.As(werr, &exit)
		case <-time.After(2 * time.Second):
		case <-done:
		}
		sess.Close()
	}
	return nil, refused, err
}

// sftpFor returns the client that acts as root when root is set, else the
// connecting user's.
func (s *SSH) sftpFor(ctx context.Context, root bool) (*sftp.Client, error) {
	if root {
		return s.rootClient(ctx)
	}
	return s.sftpClient(ctx)
}

// writesAsRoot tells whether files only root may write can go over SFTP.
func (s *SSH) writesAsRoot(ctx context.Context) bool {
	_, err := s.rootClient(ctx)
	return err == nil
}

// ReadFile reads a file over SFTP, or with `sudo -n cat` when the host
// elevates and the file is not readable by the connecting user.
func (s *SSH) ReadFile(ctx context.Context, path string) ([]byte, error) {
	sc, err := s.sftpClient(ctx)
	if err != nil {
		return nil, err
	}
	stop := s.dropWhenDone(ctx, sc)
	defer stop()
	f, err := sc.Open(path)
	if err == nil {
		defer f.Close()
		data, err := io.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf("host %s: reading %s: %w", s.cfg.Name, path, ctxOr(ctx, err))
		}
		return data, nil
	}
	if errors.Is(err, fs.ErrPermission) && s.cfg.Sudo {
		res, err := s.Run(ctx, Cmd{Args: []string{"cat", path}, Sudo: true, Sensitive: true})
		if err != nil {
			return nil, fmt.Errorf("host %s: reading %s with sudo: %w", s.cfg.Name, path, err)
		}
		return res.Stdout, nil
	}
	return nil, fmt.Errorf("host %s: reading %s: %w", s.cfg.Name, path, ctxOr(ctx, err))
}

// Stat describes a file over SFTP.
func (s *SSH) Stat(ctx context.Context, path string) (FileInfo, error) {
	sc, err := s.sftpClient(ctx)
	if err != nil {
		return FileInfo{}, err
	}
	stop := s.dropWhenDone(ctx, sc)
	defer stop()
	fi, err := sc.Stat(path)
	if err != nil {
		return FileInfo{}, fmt.Errorf("host %s: stat %s: %w", s.cfg.Name, path, ctxOr(ctx, err))
	}
	info := FileInfo{Path: path, Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		info.UID, info.GID = st.UID, st.GID
	}
	return info, nil
}

// Upload writes a file atomically; see Upload.
func (s *SSH) Upload(ctx context.Context, up Upload) error { return upload(ctx, s, up) }

func (s *SSH) elevates() bool { return s.cfg.Sudo }

// createTemp creates path over SFTP, exclusively and with mode 0600 before
// any byte is written.
func (s *SSH) createTemp(ctx context.Context, path string, root bool) (io.WriteCloser, error) {
	sc, err := s.sftpFor(ctx, root)
	if err != nil {
		return nil, err
	}
	stop := s.dropWhenDone(ctx, sc)
	f, err := sc.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		stop()
		return nil, ctxOr(ctx, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		_ = sc.Remove(path)
		stop()
		return nil, ctxOr(ctx, err)
	}
	return sftpWriter{File: f, stop: stop}, nil
}

// uploadWrites is how many SFTP writes (32 KiB each) an upload keeps in
// flight: 512 KiB, which keeps a LAN busy. More does not go faster when
// the host is the bottleneck, it costs: data the host has not yet written
// queues in sshd's channel buffer, and OpenSSH's sshd grows (reallocates,
// copies and faults in) that buffer as it fills, on every new connection.
// Measured with 10 simulated hosts sent 67 MB each over fresh connections
// (bench/apply): 64 in flight (pkg/sftp's default, and OpenSSH sftp's) took
// ~10 s and ~19 CPU-seconds, 8 to 24 in flight ~3 s and ~4-5 CPU-seconds.
const uploadWrites = 16

// sftpWriter sends data with several writes in flight (io.Copy uses
// ReadFrom), which a plain sequential Write loop would not.
type sftpWriter struct {
	*sftp.File
	stop func() bool // stops the drop of the client when the context ends
}

func (w sftpWriter) ReadFrom(r io.Reader) (int64, error) {
	return w.ReadFromWithConcurrency(r, uploadWrites)
}

func (w sftpWriter) Close() error {
	w.stop()
	return w.File.Close()
}

// canFinish tells whether the SFTP server offers what finish needs:
// OpenSSH's hardlink and posix-rename extensions (an atomic rename over an
// existing file).
func (s *SSH) canFinish(ctx context.Context, root bool) bool {
	sc, err := s.sftpFor(ctx, root)
	if err != nil {
		return false
	}
	_, link := sc.HasExtension("hardlink@openssh.com")
	_, rename := sc.HasExtension("posix-rename@openssh.com")
	return link && rename
}

// finish puts a temp file the connecting user wrote in place with SFTP
// requests, as batchFinalizeScript does with a shell and four programs.
func (s *SSH) finish(ctx context.Context, f finishing, root bool) error {
	sc, err := s.sftpFor(ctx, root)
	if err != nil {
		return err
	}
	stop := s.dropWhenDone(ctx, sc)
	defer stop()
	return ctxOr(ctx, finishOn(sftpFS{sc}, f))
}

// readSum reads a file over SFTP and returns its sha256.
func (s *SSH) readSum(ctx context.Context, path string, root bool) (string, error) {
	sc, err := s.sftpFor(ctx, root)
	if err != nil {
		return "", err
	}
	stop := s.dropWhenDone(ctx, sc)
	defer stop()
	f, err := sc.Open(path)
	if err != nil {
		return "", ctxOr(ctx, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := f.WriteTo(h); err != nil {
		return "", ctxOr(ctx, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// prepareDirs makes dirs and removes the temp files in clean with SFTP
// requests.
func (s *SSH) prepareDirs(ctx context.Context, dirs, clean []string, root bool) error {
	sc, err := s.sftpFor(ctx, root)
	if err != nil {
		return err
	}
	stop := s.dropWhenDone(ctx, sc)
	defer stop()
	return ctxOr(ctx, prepareOn(sftpFS{sc}, dirs, clean))
}

// dropWhenDone drops sc when ctx ends: an SFTP request has no context of
// its own, and one sent to a server that hangs returns only when its
// client is closed. The returned stop cancels that.
func (s *SSH) dropWhenDone(ctx context.Context, sc *sftp.Client) func() bool {
	return context.AfterFunc(ctx, func() { s.dropSFTP(sc) })
}

// ctxOr returns ctx's error instead of err once ctx has ended: an SFTP
// request cut short by dropWhenDone fails as "connection lost", which would
// hide why.
func ctxOr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// dropSFTP closes sc, so requests waiting on it return, and forgets it.
// A client no longer known was closed already.
func (s *SSH) dropSFTP(sc *sftp.Client) {
	s.mu.Lock()
	var conn *sftpConn
	var root *rootSFTP
	if s.sftp != nil && s.sftp.sc == sc {
		conn, s.sftp = s.sftp, nil
	}
	if s.root != nil && s.root.sc == sc {
		root, s.root = s.root, nil
	}
	s.mu.Unlock()
	if conn != nil {
		conn.close()
	}
	if root != nil {
		root.close()
	}
}

// Close closes the connection and its jump hosts' connections.
func (s *SSH) Close() error {
	s.mu.Lock()
	if s.ending {
		s.mu.Unlock()
		return nil
	}
	s.ending = true
	s.mu.Unlock()
	s.kills.Wait() // each is bounded (killGroup)
	s.mu.Lock()
	s.closed = true
	closeAll := s.detachLocked()
	hold := s.hold
	s.mu.Unlock()
	err := closeAll()
	if hold {
		if err := s.holdInMux(); err != nil {
			s.cfg.Logger.Debug("the SSH mux will not keep the connection", "host", s.cfg.Name, "err", err)
		}
	}
	return err
}
