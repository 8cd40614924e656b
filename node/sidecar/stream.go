package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// IO is the caller's side of an exec or attach.
type IO struct {
	Stdin  io.Reader // nil: no input
	Stdout io.Writer
	Stderr io.Writer // unused with a TTY, which merges both
	TTY    bool
	Resize <-chan api.TermSize
}

// Exec runs argv in a running container and returns its exit code.
func (c *Client) Exec(ctx context.Context, id string, argv []string, s IO) (int, error) {
	var created struct {
		ID string `json:"Id"`
	}
	body := map[string]any{
		"Cmd": argv, "Tty": s.TTY,
		"AttachStdin": s.Stdin != nil, "AttachStdout": true, "AttachStderr": true,
	}
	if err := c.call(ctx, "exec in container "+id, http.MethodPost, "/containers/"+id+"/exec", nil, body, &created); err != nil {
		return 0, err
	}
	conn, br, err := c.hijack(ctx, "exec in container "+id, "/exec/"+created.ID+"/start", nil, map[string]any{"Detach": false, "Tty": s.TTY})
	if err != nil {
		return 0, err
	}
	resize := func(t api.TermSize) {
		q := url.Values{"h": {strconv.Itoa(int(t.Height))}, "w": {strconv.Itoa(int(t.Width))}}
		_ = c.call(ctx, "resize exec", http.MethodPost, "/exec/"+created.ID+"/resize", q, nil, nil)
	}
	if err := pipe(ctx, conn, br, s, resize); err != nil {
		return 0, err
	}
	// The output ends when the process does; its exit code follows shortly.
	for range 100 {
		var st struct {
			Running  bool
			ExitCode int
		}
		if err := c.call(ctx, "inspect exec", http.MethodGet, "/exec/"+created.ID+"/json", nil, nil, &st); err != nil {
			return 0, err
		}
		if !st.Running {
			return st.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("exec in container %s: the output ended but the command still runs", id)
}

// Attach connects to the main process of a running container.
func (c *Client) Attach(ctx context.Context, id string, s IO) error {
	q := url.Values{"stream": {"1"}, "stdout": {"1"}, "stderr": {"1"}, "stdin": {strconv.FormatBool(s.Stdin != nil)}}
	conn, br, err := c.hijack(ctx, "attach to container "+id, "/containers/"+id+"/attach", q, nil)
	if err != nil {
		return err
	}
	resize := func(t api.TermSize) {
		q := url.Values{"h": {strconv.Itoa(int(t.Height))}, "w": {strconv.Itoa(int(t.Width))}}
		_ = c.call(ctx, "resize container", http.MethodPost, "/containers/"+id+"/resize", q, nil, nil)
	}
	return pipe(ctx, conn, br, s, resize)
}

// LogOptions select what Logs returns.
type LogOptions struct {
	Follow bool
	// Tail is the lines from the end of the log, 0 meaning all. The engine
	// takes them before it applies Since and Until.
	Tail       int
	Timestamps bool
	Since      time.Time // lines logged at or after it
	Until      time.Time // lines logged at or before it
	TTY        bool      // the container has a TTY: its log is one raw stream
}

// apiTime is t as the Docker API reads a time: seconds since the epoch,
// to the nanosecond.
func apiTime(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// Logs returns the container's output, stdout and stderr merged in order.
func (c *Client) Logs(ctx context.Context, id string, o LogOptions) (io.ReadCloser, error) {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}}
	if o.Follow {
		q.Set("follow", "1")
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	if o.Timestamps {
		q.Set("timestamps", "1")
	}
	if !o.Since.IsZero() {
		q.Set("since", apiTime(o.Since))
	}
	if !o.Until.IsZero() {
		q.Set("until", apiTime(o.Until))
	}
	req, err := request(ctx, http.MethodGet, "/containers/"+id+"/logs", q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req, "logs of container "+id)
	if err != nil {
		return nil, err
	}
	if o.TTY {
		return resp.Body, nil
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(Demux(resp.Body, pw, pw))
		resp.Body.Close()
	}()
	return readCloser{pr, func() error { resp.Body.Close(); return pr.Close() }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// hijack sends a request that upgrades the connection to a raw stream, as
// exec and attach do, and returns the connection with its read buffer.
func (c *Client) hijack(ctx context.Context, op, path string, q url.Values, body any) (net.Conn, *bufio.Reader, error) {
	req, err := request(ctx, http.MethodPost, path, q, body)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("docker %s at %s: %w", op, c.host, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("docker %s: %w", op, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("docker %s: %w", op, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != http.StatusOK {
		defer conn.Close()
		return nil, nil, apiError(op, resp)
	}
	return conn, br, nil
}

// pipe copies between the caller and a hijacked stream until the output
// ends or ctx does.
func pipe(ctx context.Context, conn net.Conn, br *bufio.Reader, s IO, resize func(api.TermSize)) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	if s.Resize != nil {
		go func() {
			for {
				select {
				case t, ok := <-s.Resize:
					if !ok {
						return
					}
					resize(t)
				case <-done:
					return
				}
			}
		}()
	}
	if s.Stdin != nil {
		go func() {
			_, _ = io.Copy(conn, s.Stdin)
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}()
	}
	var err error
	if s.TTY {
		_, err = io.Copy(s.Stdout, br)
	} else {
		err = Demux(br, s.Stdout, s.Stderr)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Demux copies Docker's multiplexed stream to stdout and stderr. Each frame
// is an 8-byte header (stream: 0 stdin, 1 stdout, 2 stderr, 3 an error of
// the engine; three zero bytes; the payload's length, big-endian) and the
// payload. A stream that ends inside a frame is an error.
func Demux(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("docker stream: truncated frame header: %w", err)
		}
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		var w io.Writer
		switch hdr[0] {
		case 0, 1:
			w = stdout
		case 2:
			w = stderr
		case 3:
			var msg bytes.Buffer
			if _, err := io.CopyN(&msg, r, min(n, 64<<10)); err != nil {
				return fmt.Errorf("docker stream: truncated error frame: %w", err)
			}
			return fmt.Errorf("docker stream: the engine reports: %s", bytes.TrimSpace(msg.Bytes()))
		default:
			return fmt.Errorf("docker stream: frame header names stream %d; is this a TTY stream read as multiplexed?", hdr[0])
		}
		if hdr[1] != 0 || hdr[2] != 0 || hdr[3] != 0 {
			return fmt.Errorf("docker stream: malformed frame header % x", hdr)
		}
		if _, err := io.CopyN(w, r, n); err != nil {
			if err == io.EOF {
				return fmt.Errorf("docker stream: frame of %d bytes cut short", n)
			}
			return err
		}
	}
}
