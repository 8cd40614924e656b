// Package remote is how fleetctl reaches a Mac host: one Host interface to
// run commands (argv quoted for a POSIX shell, exit codes preserved), read and
// stat files, and upload files atomically, implemented over SSH (Dial) and on
// the local machine (NewLocal, for tests and development).
//
// The SSH implementation verifies host keys against known_hosts strictly
// (trust on first use only when asked), honours ~/.ssh/config, authenticates
// with ssh-agent and key files, reaches hosts through jump hosts, elevates
// with `sudo -n`, keeps one connection per host and multiplexes sessions on
// it, and retries only transient network errors while dialling.
//
// A command whose context ends is killed with its whole process group
// (TERM, then KILL a second later, from a session of its own, since sshd
// ignores signal requests on root logins), and Run returns at once.
package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// Host is a machine fleetctl manages.
type Host interface {
	// Name is the host's name for messages (the inventory name or alias).
	Name() string
	// Run runs one command and waits for it. A non-zero exit status is
	// returned as *ExitError together with the Result.
	Run(ctx context.Context, cmd Cmd) (Result, error)
	// Upload writes a file atomically; see Upload.
	Upload(ctx context.Context, up Upload) error
	// ReadFile returns a file's content; a missing file is fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Stat describes a file (following symlinks); a missing file is
	// fs.ErrNotExist.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// Close releases the connection.
	Close() error
}

// Cmd is one command to run on a host.
type Cmd struct {
	// Args is the argv; each element arrives at the program unchanged
	// (quoted for the remote POSIX shell).
	Args []string
	// Sudo marks a command that needs root: it runs under `sudo -n` when
	// the host is configured to elevate (Config.Sudo, LocalOptions.Sudo);
	// otherwise (hosts reached as root) it runs as is.
	Sudo bool
	// Dir is the working directory; empty means the login directory.
	Dir string
	// Env adds "KEY=value" entries to the command's environment.
	Env []string
	// Stdin feeds the command's standard input; nil means empty.
	Stdin io.Reader
	// Stdout and Stderr receive the output as it arrives. When nil, the
	// output is captured in Result instead.
	Stdout, Stderr io.Writer
	// Sensitive commands handle secrets: their output never appears in
	// errors or logs.
	Sensitive bool
}

// Result is what a finished command produced.
type Result struct {
	// Stdout and Stderr hold the output when Cmd did not stream it.
	Stdout, Stderr []byte
	// ExitCode is the exit status; -1 when the command died from a signal.
	ExitCode int
	// Duration is the wall time the command took.
	Duration time.Duration
}

// ExitError reports a command that ran and failed.
type ExitError struct {
	Host    string
	Command string // the command line as sent to the shell
	Code    int    // exit status, -1 when killed by a signal
	Signal  string // the signal's name when killed by one
	Stderr  string // the last part of stderr; empty for sensitive commands
}

func (e *ExitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: command %s ", e.Host, e.Command)
	if e.Signal != "" {
		fmt.Fprintf(&b, "killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, "exited with status %d", e.Code)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, ": %s", s)
	}
	return b.String()
}

// FileInfo describes a file on a host.
type FileInfo struct {
	Path    string
	Size    int64
	Mode    fs.FileMode // permission bits plus type bits (fs.ModeDir, ...)
	ModTime time.Time
	UID     uint32
	GID     uint32
}

// Upload describes one file to write atomically.
//
// The content goes to a temp file in the target's directory
// (".<name>.vzfleet-tmp-<random>", mode 0600 while written), its sha256 is
// checked on the host against SHA256 (or, without it, against what was
// sent), the Before hook runs on it,
// mode and owner are set, the current file is kept as "<Path>.prev" (a hard
// link, when KeepPrevious), and the temp file is renamed over Path, so
// readers see the old file or the new one (a new inode), never a part.
// If anything fails the target is unchanged and the temp file is removed;
// if the connection dies, the temp file may remain and CleanTemp removes it.
type Upload struct {
	// Path is the absolute target path on the host.
	Path string
	// Content is streamed to the host; it is never written to a local temp
	// file and never appears in errors or logs.
	Content io.Reader
	// SHA256 optionally gives the expected hex digest of Content; the
	// temp file on the host must have it (then Content is not hashed
	// locally), or the upload fails.
	SHA256 string
	// Mode is the final permission bits; zero means 0600.
	Mode fs.FileMode
	// Owner and Group, when set, are given to chown (names or numbers).
	Owner, Group string
	// Sudo writes with `sudo -n` on hosts configured to elevate.
	Sudo bool
	// KeepPrevious keeps the replaced file as "<Path>.prev".
	KeepPrevious bool
	// Before runs on the verified temp file before it is renamed over the
	// target (fleetctl codesigns binaries there). An error aborts the upload.
	Before func(ctx context.Context, h Host, tempPath string) error
}

// Errors callers classify with errors.Is.
var (
	// ErrChecksumMismatch: the bytes on the host are not the bytes sent (or
	// not the expected ones). The target was left unchanged.
	ErrChecksumMismatch = errors.New("sha256 mismatch")
	// ErrSudoPassword: sudo asked for a password, which fleetctl cannot
	// give. Allow passwordless sudo for the user or connect as root.
	ErrSudoPassword = errors.New("sudo requires a password")
	// ErrSudoDenied: the user may not run the command with sudo.
	ErrSudoDenied = errors.New("sudo refused the command")
	// ErrHostKeyUnknown: the host is not in known_hosts.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrHostKeyChanged: the host presented a key other than the one in
	// known_hosts.
	ErrHostKeyChanged = errors.New("host key changed")
)
