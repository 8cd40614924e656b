// Package sshd starts real OpenSSH servers (Debian's /usr/sbin/sshd) on
// loopback for tests: each server gets its own port, a generated host key and
// an authorized client key, and is killed when the test ends. Servers can be
// stopped (a host that went down), restarted, and restarted with a new host
// key (a reinstalled host, or a man in the middle).
package sshd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vzfleet/vzfleet/test/harness"
)

// Paths of Debian's OpenSSH server; Options can override them.
const (
	DefaultSSHD       = "/usr/sbin/sshd"
	DefaultSFTPServer = "/usr/lib/openssh/sftp-server"
)

// Options configure a test server. The zero value is a working server.
type Options struct {
	// Port to listen on; 0 picks a free one. A fixed port lets a test start
	// the server after a client began dialling it.
	Port int
	// LogLevel is sshd's LogLevel (default VERBOSE). DEBUG1 also logs
	// forwarded connections (direct-tcpip), which jump-host tests look for.
	LogLevel string
	// ExtraConfig lines are appended to sshd_config.
	ExtraConfig []string
	// SSHD and SFTPServer override the binaries' paths.
	SSHD, SFTPServer string
	// Defer, when true, makes Start only prepare the server (keys, config,
	// port); the test calls Server.Restart to start it.
	Defer bool
}

// Server is one running (or stopped) sshd.
type Server struct {
	// Host and Port the server listens on; Addr is "Host:Port".
	Host string
	Port int
	Addr string
	// Dir holds the server's keys, config and logs.
	Dir string
	// User is the account the client key logs in as (the test's own user).
	User string
	// ClientKeyFile is an unencrypted OpenSSH private key (0600) authorized
	// on the server; ClientSigner is the same key in memory.
	ClientKeyFile string
	ClientSigner  ssh.Signer

	t       testing.TB
	opts    Options
	mu      sync.Mutex
	hostKey ssh.PublicKey
	cmd     *exec.Cmd
	done    chan struct{}
	log     *harness.LockedBuffer
	logs    []string // logs of earlier runs of this server
}

// Start prepares and starts an sshd on 127.0.0.1 and registers its cleanup.
// It fails the test when sshd cannot start.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.SSHD == "" {
		opts.SSHD = DefaultSSHD
	}
	if opts.SFTPServer == "" {
		opts.SFTPServer = DefaultSFTPServer
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "VERBOSE"
	}
	if _, err := os.Stat(opts.SSHD); err != nil {
		t.Fatalf("sshd harness: %s not found (install Debian's openssh-server): %v", opts.SSHD, err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd harness: sshd needs its privilege separation directory /run/sshd: %v", err)
	}
	dir := t.TempDir()
	s := &Server{t: t, opts: opts, Dir: dir, Host: "127.0.0.1", User: currentUser()}

	clientKey, signer, err := newKey()
	if err != nil {
		t.Fatalf("sshd harness: client key: %v", err)
	}
	s.ClientSigner = signer
	s.ClientKeyFile = filepath.Join(dir, "client_ed25519")
	mustWrite(t, s.ClientKeyFile, clientKey, 0o600)
	mustWrite(t, s.ClientKeyFile+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
	mustWrite(t, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600)
	s.newHostKey()

	s.Port = opts.Port
	if s.Port == 0 {
		s.Port = freePort(t)
	}
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	s.writeConfig()

	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshd %s log:\n%s", s.Addr, s.Log())
		}
	})
	if !opts.Defer {
		s.Restart()
	}
	return s
}

// HostKey is the server's current public host key.
func (s *Server) HostKey() ssh.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostKey
}

// KnownHostsLine is the known_hosts line for the current host key.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey())
}

// WriteKnownHosts writes a known_hosts file (0600) holding this server's
// line and returns its path.
func (s *Server) WriteKnownHosts(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	mustWrite(t, path, []byte(s.KnownHostsLine()+"\n"), 0o600)
	return path
}

// Log returns everything sshd logged, over all its runs.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := strings.Join(s.logs, "")
	if s.log != nil {
		all += s.log.String()
	}
	return all
}

// Restart starts the server again (or the first time, with Options.Defer)
// with its current host key on the same port. It stops a running server first.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		if lastErr = s.start(); lastErr == nil {
			return
		}
		if !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("sshd harness: starting sshd on %s: %v", s.Addr, lastErr)
}

// RotateHostKey gives the server a new host key and restarts it, as if the
// host had been reinstalled.
func (s *Server) RotateHostKey() {
	s.t.Helper()
	s.Stop()
	s.newHostKey()
	s.Restart()
}

// Stop kills sshd and every connection it serves (as a host that went down)
// and waits until they are gone. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	// Stop the listener so it accepts nothing new, then kill its
	// descendants: each connection runs in its own session, so killing a
	// process group would miss them.
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	for _, child := range harness.Descendants(pid) {
		_ = syscall.Kill(child, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-done
}

// Freeze stops sshd and its connections without closing any socket, as a
// host that hangs or a network that drops packets; Thaw resumes them.
func (s *Server) Freeze() { s.signalAll(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw() { s.signalAll(syscall.SIGCONT) }

// FreezeSFTP stops the SFTP servers of its connections (sftp-server,
// also when run through sudo) and nothing else, as a host whose file
// system hangs: sshd and commands still answer, file requests do not.
// ThawSFTP resumes them.
func (s *Server) FreezeSFTP() { s.signalSFTP(syscall.SIGSTOP) }

// ThawSFTP resumes the SFTP servers FreezeSFTP stopped.
func (s *Server) ThawSFTP() { s.signalSFTP(syscall.SIGCONT) }

func (s *Server) signalSFTP(sig syscall.Signal) {
	s.signal(sig, func(pid int) bool {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return strings.TrimSpace(string(comm)) == "sftp-server"
	})
}

func (s *Server) signalAll(sig syscall.Signal) { s.signal(sig, func(int) bool { return true }) }

// signal sends sig to sshd and its descendants that which selects.
func (s *Server) signal(sig syscall.Signal, which func(pid int) bool) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	for _, p := range append([]int{pid}, harness.Descendants(pid)...) {
		if which(p) {
			_ = syscall.Kill(p, sig)
		}
	}
}

func (s *Server) start() error {
	cfg := filepath.Join(s.Dir, "sshd_config")
	log := &harness.LockedBuffer{}
	cmd := exec.Command(s.opts.SSHD, "-D", "-e", "-f", cfg)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %s", strings.TrimSpace(log.String()))
		default:
		}
		if ready(s.Addr) {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("sshd did not answer within 10s: %s", strings.TrimSpace(log.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	if s.log != nil {
		s.logs = append(s.logs, s.log.String())
	}
	s.cmd, s.done, s.log = cmd, done, log
	s.mu.Unlock()
	return nil
}

// ready reports whether an SSH server answers with its banner at addr.
func ready(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 8)
	n, _ := conn.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("SSH-"))
}

func (s *Server) newHostKey() {
	s.t.Helper()
	pemBytes, signer, err := newKey()
	if err != nil {
		s.t.Fatalf("sshd harness: host key: %v", err)
	}
	mustWrite(s.t, filepath.Join(s.Dir, "host_ed25519"), pemBytes, 0o600)
	s.mu.Lock()
	s.hostKey = signer.PublicKey()
	s.mu.Unlock()
}

func (s *Server) writeConfig() {
	lines := []string{
		"Port " + strconv.Itoa(s.Port),
		"ListenAddress " + s.Host,
		"HostKey " + filepath.Join(s.Dir, "host_ed25519"),
		"AuthorizedKeysFile " + filepath.Join(s.Dir, "authorized_keys"),
		"PidFile none",
		// Root's password is locked on these machines; key login as root
		// then needs PAM's account handling.
		"UsePAM yes",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		// The key files live under the test's temp directory, whose parents
		// (/tmp) are world-writable; StrictModes would refuse them.
		"StrictModes no",
		"LogLevel " + s.opts.LogLevel,
		"Subsystem sftp " + s.opts.SFTPServer,
		"MaxStartups 100",
		// bash started by sshd sources ~/.bashrc unless SHLVL says it is
		// nested; a slow rc file on the test machine would cost seconds per
		// command. Commands still run through the account's login shell.
		"SetEnv SHLVL=1",
	}
	lines = append(lines, s.opts.ExtraConfig...)
	mustWrite(s.t, filepath.Join(s.Dir, "sshd_config"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func newKey() ([]byte, ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "vzfleet test key")
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(block), signer, nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshd harness: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func mustWrite(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatalf("sshd harness: %v", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatalf("sshd harness: %v", err)
	}
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	out, err := exec.CommandContext(context.Background(), "id", "-un").Output()
	if err != nil {
		return "root"
	}
	return strings.TrimSpace(string(out))
}
