package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// commandLine is the shell command line for cmd: optional cd, then exec
// (so the command's exit status and signal reach us, not the shell's),
// optional `sudo -n --`, optional `env K=V`, and the quoted argv.
func commandLine(cmd Cmd, sudo bool, sudoPath string) (string, error) {
	return buildLine(cmd, sudo, sudoPath, "exec ")
}

func buildLine(cmd Cmd, sudo bool, sudoPath, prefix string) (string, error) {
	if len(cmd.Args) == 0 {
		return "", errors.New("empty command")
	}
	var words []string
	if cmd.Sudo && sudo {
		words = append(words, sudoPath, "-n", "--")
	}
	if len(cmd.Env) > 0 {
		words = append(words, "env")
		for _, e := range cmd.Env {
			if !envName.MatchString(e) {
				return "", fmt.Errorf("environment entry %q is not NAME=value", redactEnv(e))
			}
			words = append(words, e)
		}
	}
	words = append(words, cmd.Args...)
	line := prefix + Quote(words...)
	if cmd.Dir != "" {
		line = "cd " + quoteWord(cmd.Dir) + " && " + line
	}
	return line, nil
}

// displayLine is the command line for errors and logs: environment values
// are hidden (they may be secrets), as are sensitive commands' arguments.
func displayLine(cmd Cmd, sudo bool, sudoPath string) string {
	c := cmd
	c.Env = nil
	for _, e := range cmd.Env {
		c.Env = append(c.Env, redactEnv(e))
	}
	if cmd.Sensitive && len(cmd.Args) > 0 {
		c.Args = []string{cmd.Args[0], "[arguments hidden]"}
	} else {
		c.Args = make([]string, len(cmd.Args))
		for i, a := range cmd.Args {
			c.Args[i] = abbreviate(a)
		}
	}
	line, err := buildLine(c, sudo, sudoPath, "")
	if err != nil {
		return "(invalid command)"
	}
	return line
}

// abbreviate shortens long or multi-line arguments (inline scripts) to
// their first line for messages.
func abbreviate(a string) string {
	const max = 60
	line, _, multi := strings.Cut(a, "\n")
	if len(line) > max {
		line, multi = line[:max], true
	}
	if multi {
		return line + "…"
	}
	return a
}

func redactEnv(e string) string {
	if i := strings.IndexByte(e, '='); i >= 0 {
		return e[:i] + "=…"
	}
	return "…"
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// outputs wires a command's stdout and stderr: streamed to the caller's
// writers or captured, with stderr's tail always kept for error messages.
type outputs struct {
	stdout, stderr io.Writer
	outBuf, errBuf bytes.Buffer
	tail           tailBuffer
}

func newOutputs(cmd Cmd) *outputs {
	o := &outputs{tail: tailBuffer{max: 4096}}
	o.stdout, o.stderr = cmd.Stdout, cmd.Stderr
	if o.stdout == nil {
		o.stdout = &o.outBuf
	}
	if o.stderr == nil {
		o.stderr = &o.errBuf
	}
	o.stderr = io.MultiWriter(o.stderr, &o.tail)
	return o
}

// result fills res and builds the error for a finished command.
func (o *outputs) result(res *Result, host, user string, cmd Cmd, display string, code int, signal string, sudo bool) error {
	res.Stdout, res.Stderr, res.ExitCode = o.outBuf.Bytes(), o.errBuf.Bytes(), code
	if code == 0 && signal == "" {
		return nil
	}
	exit := &ExitError{Host: host, Command: display, Code: code, Signal: signal}
	if !cmd.Sensitive {
		exit.Stderr = o.tail.String()
	}
	if cmd.Sudo && sudo && code == 1 {
		if err := sudoFailure(host, user, o.tail.String(), exit); err != nil {
			return err
		}
	}
	return exit
}

// SudoError: sudo itself refused to run a command.
type SudoError struct {
	Host, User string
	Reason     error // ErrSudoPassword or ErrSudoDenied
	Exit       *ExitError
}

func (e *SudoError) Error() string {
	if errors.Is(e.Reason, ErrSudoPassword) {
		return fmt.Sprintf("host %s: sudo requires a password for user %s, and fleetctl runs `sudo -n`, which never asks: "+
			"allow passwordless sudo for %s (e.g. `%s ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/vzfleet, edited with visudo) "+
			"or connect as root", e.Host, e.User, e.User, e.User)
	}
	return fmt.Sprintf("host %s: sudo refused to run %s for user %s (%s): give %s sudo rights on the host or connect as root",
		e.Host, e.Exit.Command, e.User, strings.TrimSpace(e.Exit.Stderr), e.User)
}

// Unwrap lets errors.Is find the reason and errors.As the exit error.
func (e *SudoError) Unwrap() []error { return []error{e.Reason, e.Exit} }

// sudoFailure recognises sudo's own messages (sudo 1.8/1.9 on macOS and
// Linux) among stderr's last lines.
func sudoFailure(host, user, stderr string, exit *ExitError) error {
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(line, "sudo: ") && !strings.HasPrefix(line, "Sorry, user ") {
			continue
		}
		switch {
		case strings.Contains(line, "a password is required"),
			strings.Contains(line, "a terminal is required to read the password"):
			exit.Stderr = strings.TrimSpace(line)
			return &SudoError{Host: host, User: user, Reason: ErrSudoPassword, Exit: exit}
		case strings.Contains(line, "is not in the sudoers file"),
			strings.Contains(line, "is not allowed to execute"),
			strings.Contains(line, "may not run sudo"):
			exit.Stderr = strings.TrimSpace(line)
			return &SudoError{Host: host, User: user, Reason: ErrSudoDenied, Exit: exit}
		}
	}
	return nil
}

// gate cuts a session's streams off from the caller's reader and writers
// once Run has returned, since a session abandoned on cancellation may
// still move data for a while.
type gate struct {
	mu     sync.Mutex
	closed bool
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

func (g *gate) writer(w io.Writer) io.Writer { return gatedWriter{g: g, w: w} }

func (g *gate) reader(r io.Reader) io.Reader {
	if r == nil {
		return nil
	}
	return gatedReader{g: g, r: r}
}

type gatedWriter struct {
	g *gate
	w io.Writer
}

func (gw gatedWriter) Write(p []byte) (int, error) {
	gw.g.mu.Lock()
	defer gw.g.mu.Unlock()
	if gw.g.closed {
		return 0, io.ErrClosedPipe
	}
	return gw.w.Write(p)
}

type gatedReader struct {
	g *gate
	r io.Reader
}

func (gr gatedReader) Read(p []byte) (int, error) {
	if gr.g.isClosed() {
		return 0, io.EOF
	}
	return gr.r.Read(p)
}
