// Package guest is how vz-node reaches a macOS guest: an SSH client that
// pins the guest's host key on first contact, runs commands with their argv
// quoted exactly, streams stdin/stdout/stderr, drives a TTY with resizes,
// preserves exit codes, and shuts the guest down. kubectl exec, attach,
// probes, hooks and logs all go through it.
package guest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vzfleet/vzfleet/internal/sshsession"
	"golang.org/x/crypto/ssh"
)

// ErrHostKeyMismatch: the guest presented a host key other than the one
// pinned on first contact. The guest was replaced or someone is in the
// middle; delete the pin file only if the guest was legitimately rebuilt.
var ErrHostKeyMismatch = errors.New("guest SSH host key does not match the pinned key")

// Config says where a guest is and how to log in.
type Config struct {
	// Addr is host:port of the guest's SSH server.
	Addr string
	User string
	// Signers are private keys to offer; Password is tried after them
	// (as "password" and as macOS's default "keyboard-interactive").
	Signers  []ssh.Signer
	Password string
	// HostKeyPath is the file holding the guest's pinned host key
	// (authorized_keys format), written on first contact. Required.
	HostKeyPath string
	// DialTimeout bounds connecting and the SSH handshake; 0 means 10s.
	DialTimeout time.Duration
}

// Client is an SSH connection to one guest.
type Client struct {
	cfg   Config
	ssh   *ssh.Client
	ended <-chan struct{} // closed when the connection has ended
}

// Dial connects to the guest and authenticates.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.HostKeyPath == "" {
		return nil, fmt.Errorf("guest %s: no host key pin file configured", cfg.Addr)
	}
	if len(cfg.Signers) == 0 && cfg.Password == "" {
		return nil, fmt.Errorf("guest %s: no SSH key or password configured", cfg.Addr)
	}
	timeout := cfg.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	pinned, err := PinnedHostKey(cfg.HostKeyPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	sc := &ssh.ClientConfig{
		User:            cfg.User,
		Auth:            authMethods(cfg),
		HostKeyCallback: pinCallback(cfg.HostKeyPath),
		Timeout:         timeout,
	}
	if pinned != nil {
		// Ask for the pinned key's type, or a guest offering several host
		// key types may present another (valid) one and fail the check.
		sc.HostKeyAlgorithms = algorithmsFor(pinned.Type())
	}

	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", cfg.Addr, err)
	}
	// Bound the handshake by the same deadline (and by ctx).
	deadline, _ := dctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, sc)
	stop()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("guest %s: ssh as %q: %w", cfg.Addr, cfg.User, err)
	}
	conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	return &Client{cfg: cfg, ssh: client, ended: sshsession.Ended(client)}, nil
}

func authMethods(cfg Config) []ssh.AuthMethod {
	var m []ssh.AuthMethod
	if len(cfg.Signers) > 0 {
		m = append(m, ssh.PublicKeys(cfg.Signers...))
	}
	if cfg.Password != "" {
		pw := cfg.Password
		m = append(m, ssh.Password(pw), ssh.KeyboardInteractive(
			func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	return m
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// WaitSSH polls until the guest's SSH server lets us in (the guest's
// readiness), returning the connected client. It gives up at once on a
// host key mismatch, and otherwise when ctx ends, with the last error.
func WaitSSH(ctx context.Context, cfg Config, interval time.Duration) (*Client, error) {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	for {
		c, err := Dial(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, ErrHostKeyMismatch) {
			return nil, err
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for SSH on guest %s: %w (last error: %w)", cfg.Addr, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Close ends the connection.
func (c *Client) Close() error { return c.ssh.Close() }

// PinnedHostKey reads the host key pinned in path.
func PinnedHostKey(path string) (ssh.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("guest host key pin: %w", err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(raw)
	if err != nil {
		return nil, fmt.Errorf("guest host key pin %s: %w", path, err)
	}
	return key, nil
}

// pinCallback trusts the first key it sees for a guest and records it;
// afterwards only that key is accepted.
func pinCallback(path string) ssh.HostKeyCallback {
	return func(host string, _ net.Addr, key ssh.PublicKey) error {
		pinned, err := PinnedHostKey(path)
		if errors.Is(err, os.ErrNotExist) {
			if err := pin(path, key); err != nil {
				return err
			}
			// Another connection may have pinned a different key first.
			if pinned, err = PinnedHostKey(path); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(pinned.Marshal(), key.Marshal()) != 1 {
			return fmt.Errorf("guest %s presented %s %s but %s pins %s: %w",
				host, key.Type(), ssh.FingerprintSHA256(key), path, ssh.FingerprintSHA256(pinned), ErrHostKeyMismatch)
		}
		return nil
	}
}

// pin writes key to path unless a pin exists already (link(2) of a
// complete temp file, so readers never see a partial pin).
func pin(path string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pin guest host key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hostkey-*")
	if err != nil {
		return fmt.Errorf("pin guest host key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(ssh.MarshalAuthorizedKey(key))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pin guest host key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pin guest host key %s: %w", path, err)
	}
	return nil
}

// TermSize is a terminal's size in character cells.
type TermSize struct {
	Width, Height uint16
}

// Exec describes a command's I/O. Nil readers/writers mean no input and
// discarded output.
type Exec struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY allocates a terminal of Size (80x24 if zero) with type Term
	// ("xterm-256color" if empty); the guest then merges stderr into stdout.
	TTY  bool
	Term string
	Size TermSize
	// Resize delivers terminal size changes until it is closed or the
	// command ends.
	Resize <-chan TermSize
	// Env is sent as SSH environment requests (the guest's sshd accepts
	// only what its AcceptEnv allows).
	Env map[string]string
}

// Run runs argv in the guest exactly as given (each argument quoted for the
// guest's shell) and returns its exit status. A command killed by a signal
// reports 128+signal like a shell does. err is set only when the command
// could not be run to completion: connection lost, ctx done, no status.
func (c *Client) Run(ctx context.Context, argv []string, e Exec) (int, error) {
	if len(argv) == 0 {
		return -1, fmt.Errorf("guest %s: empty command", c.cfg.Addr)
	}
	return c.RunShell(ctx, Join(argv), e)
}

// RunShell runs a command line through the guest user's shell (for hooks
// and probes given as a single string). See Run.
func (c *Client) RunShell(ctx context.Context, cmdline string, e Exec) (int, error) {
	return c.run(ctx, &cmdline, e)
}

// Shell starts the guest user's login shell (an SSH "shell" request), as
// kubectl exec without a command or kubectl attach want. See Run.
func (c *Client) Shell(ctx context.Context, e Exec) (int, error) {
	return c.run(ctx, nil, e)
}

// run runs cmdline, or the login shell when cmdline is nil.
func (c *Client) run(ctx context.Context, cmdline *string, e Exec) (int, error) {
	s, err := sshsession.Open(ctx, c.ssh.NewSession, c.ended)
	if err != nil {
		return -1, fmt.Errorf("guest %s: new session: %w", c.cfg.Addr, err)
	}
	defer s.Close()
	for k, v := range e.Env {
		if err := s.Setenv(k, v); err != nil {
			return -1, fmt.Errorf("guest %s: env %s refused: %w", c.cfg.Addr, k, err)
		}
	}
	if e.TTY {
		term, size := e.Term, e.Size
		if term == "" {
			term = "xterm-256color"
		}
		if size.Width == 0 || size.Height == 0 {
			size = TermSize{Width: 80, Height: 24}
		}
		modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
		if err := s.RequestPty(term, int(size.Height), int(size.Width), modes); err != nil {
			return -1, fmt.Errorf("guest %s: pty: %w", c.cfg.Addr, err)
		}
	}
	s.Stdin, s.Stdout, s.Stderr = e.Stdin, e.Stdout, e.Stderr
	if cmdline == nil {
		err = s.Shell()
	} else {
		err = s.Start(*cmdline)
	}
	if err != nil {
		return -1, fmt.Errorf("guest %s: start: %w", c.cfg.Addr, err)
	}
	done := make(chan struct{})
	defer close(done)
	if e.Resize != nil {
		go func() {
			for {
				select {
				case <-done:
					return
				case sz, ok := <-e.Resize:
					if !ok {
						return
					}
					s.WindowChange(int(sz.Height), int(sz.Width))
				}
			}
		}()
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		s.Signal(ssh.SIGKILL)
		s.Close()
		return -1, fmt.Errorf("guest %s: %w", c.cfg.Addr, ctx.Err())
	}
	return exitCode(c.cfg.Addr, err)
}

func exitCode(addr string, err error) (int, error) {
	var exitErr *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr):
		if sig := exitErr.Signal(); sig != "" {
			return 128 + signalNumber(sig), nil
		}
		return exitErr.ExitStatus(), nil
	default:
		return -1, fmt.Errorf("guest %s: %w", addr, err)
	}
}

// signalNumbers maps RFC 4254 signal names to the numbers macOS and Linux
// share.
var signalNumbers = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "ABRT": 6, "FPE": 8,
	"KILL": 9, "SEGV": 11, "PIPE": 13, "ALRM": 14, "TERM": 15,
}

// signalNumber is 0 for signals whose numbers differ between systems.
func signalNumber(name string) int { return signalNumbers[name] }

// Output runs argv and returns its standard output; a non-zero exit is an
// error carrying the exit code and standard error.
func (c *Client) Output(ctx context.Context, argv ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	code, err := c.Run(ctx, argv, Exec{Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return stdout.Bytes(), fmt.Errorf("guest %s: %s: exit status %d: %s", c.cfg.Addr, Join(argv), code, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Shutdown asks the guest OS to power off (`sudo shutdown -h now`; sudo
// gets the login password on stdin if there is one, and otherwise must not
// need one). The guest may drop the connection before reporting a status;
// that counts as success. Callers wait for the machine to reach Stopped.
func (c *Client) Shutdown(ctx context.Context) error {
	var stderr bytes.Buffer
	cmd, e := "sudo -n shutdown -h now", Exec{Stderr: &stderr}
	if c.cfg.Password != "" {
		cmd, e.Stdin = "sudo -S -p '' shutdown -h now", strings.NewReader(c.cfg.Password+"\n")
	}
	code, err := c.RunShell(ctx, cmd, e)
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(err, &missing), errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("guest %s: shutdown: %w", c.cfg.Addr, err)
	case code != 0:
		return fmt.Errorf("guest %s: sudo shutdown -h now: exit status %d: %s (does %q have passwordless sudo?)",
			c.cfg.Addr, code, strings.TrimSpace(stderr.String()), c.cfg.User)
	}
	return nil
}

// Join quotes each argument for a POSIX shell (and zsh, macOS's login
// shell) and joins them with spaces, so the guest runs exactly argv.
func Join(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// Quote makes s one shell word: unchanged if it has only safe characters,
// otherwise wrapped in single quotes, each embedded quote written as
// quote, backslash-quote, quote.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	// '=' is not safe: a first word with one is an assignment, and zsh
	// expands a word starting with one to a command's path.
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+:,./-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
