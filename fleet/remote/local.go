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
	"os/exec"
	"time"
)

// LocalOptions configure a Local host.
type LocalOptions struct {
	// Name for messages; default "localhost".
	Name string
	// Sudo elevates commands and uploads that ask for it with `sudo -n`.
	Sudo bool
	// SudoPath is the sudo program; default "sudo".
	SudoPath string
	// Shell runs the command lines; default /bin/sh.
	Shell string
}

// Local is this machine as a Host: commands run through /bin/sh with the
// same command lines the SSH host sends, files are read and written
// directly. For tests and development.
type Local struct {
	opts LocalOptions
	user string
}

var _ Host = (*Local)(nil)

// NewLocal returns this machine as a Host.
func NewLocal(opts LocalOptions) *Local {
	if opts.Name == "" {
		opts.Name = "localhost"
	}
	if opts.SudoPath == "" {
		opts.SudoPath = "sudo"
	}
	if opts.Shell == "" {
		opts.Shell = "/bin/sh"
	}
	return &Local{opts: opts, user: localUser()}
}

// Name is the host's name for messages.
func (l *Local) Name() string { return l.opts.Name }

// Run runs cmd with the shell.
func (l *Local) Run(ctx context.Context, cmd Cmd) (Result, error) {
	var res Result
	line, err := commandLine(cmd, l.opts.Sudo, l.opts.SudoPath)
	if err != nil {
		return res, fmt.Errorf("host %s: %w", l.opts.Name, err)
	}
	display := displayLine(cmd, l.opts.Sudo, l.opts.SudoPath)
	out := newOutputs(cmd)
	c := exec.CommandContext(ctx, l.opts.Shell, "-c", line)
	c.Stdin, c.Stdout, c.Stderr = cmd.Stdin, out.stdout, out.stderr
	setProcessGroup(c)
	c.WaitDelay = 2 * time.Second
	start := time.Now()
	err = c.Run()
	res.Duration = time.Since(start)
	if ctx.Err() != nil {
		return res, fmt.Errorf("host %s: command %s: %w", l.opts.Name, display, ctx.Err())
	}
	code, signal := 0, ""
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code, signal = exitStatus(exit)
	default:
		return res, fmt.Errorf("host %s: command %s: %w", l.opts.Name, display, err)
	}
	return res, out.result(&res, l.opts.Name, l.user, cmd, display, code, signal, l.opts.Sudo)
}

// ReadFile reads a file, with `sudo -n cat` when it is not readable and
// the host elevates.
func (l *Local) ReadFile(ctx context.Context, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrPermission) && l.opts.Sudo {
		res, err := l.Run(ctx, Cmd{Args: []string{"cat", path}, Sudo: true, Sensitive: true})
		if err != nil {
			return nil, fmt.Errorf("host %s: reading %s with sudo: %w", l.opts.Name, path, err)
		}
		return res.Stdout, nil
	}
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", l.opts.Name, err)
	}
	return data, nil
}

// Stat describes a file.
func (l *Local) Stat(_ context.Context, path string) (FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileInfo{}, fmt.Errorf("host %s: %w", l.opts.Name, err)
	}
	info := FileInfo{Path: path, Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}
	info.UID, info.GID = fileOwner(fi)
	return info, nil
}

// Upload writes a file atomically; see Upload.
func (l *Local) Upload(ctx context.Context, up Upload) error { return upload(ctx, l, up) }

func (l *Local) elevates() bool { return l.opts.Sudo }

func (l *Local) createTemp(_ context.Context, path string, _ bool) (io.WriteCloser, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// writesAsRoot is false: files for root are written by sudo commands.
func (l *Local) writesAsRoot(context.Context) bool { return false }

// canFinish: system calls act as this process's user, not through sudo.
func (l *Local) canFinish(_ context.Context, root bool) bool { return !root }

// finish puts a temp file in place with system calls, as
// batchFinalizeScript does with a shell.
func (l *Local) finish(_ context.Context, f finishing, _ bool) error { return finishOn(osFS{}, f) }

// readSum reads a file and returns its sha256.
func (l *Local) readSum(_ context.Context, path string, _ bool) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// prepareDirs makes dirs and removes the temp files in clean.
func (l *Local) prepareDirs(_ context.Context, dirs, clean []string, _ bool) error {
	return prepareOn(osFS{}, dirs, clean)
}

// Close does nothing: there is no connection.
func (l *Local) Close() error { return nil }
