package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/vzfleet/vzfleet/node/sidecar"
)

// The guest's log, as macOS's log(1) prints it in syslog style: `log show`
// for history (Since narrows it; Tail is applied here), then `log stream`
// to follow. Commands are plain argv so any guest shell runs them alike.
func logShowArgv(opts api.ContainerLogOpts, now time.Time) []string {
	argv := []string{"log", "show", "--style", "syslog"}
	switch {
	case opts.SinceSeconds > 0:
		argv = append(argv, "--last", strconv.Itoa(opts.SinceSeconds)+"s")
	case !opts.SinceTime.IsZero():
		argv = append(argv, "--last", strconv.Itoa(max(1, int(now.Sub(opts.SinceTime).Seconds())))+"s")
	}
	return argv
}

var logStreamArgv = []string{"log", "stream", "--style", "syslog"}

// forwardAddr is where this host reaches port of pod ns/name (see
// PortForward).
func (p *PodProvider) forwardAddr(ctx context.Context, ns, name string, port int32) (string, error) {
	if w := p.worker(ns, name); w != nil && p.cfg.Docker != nil {
		pod, _ := w.snapshot()
		if declaresPort(dockerContainers(pod), port) && !declaresPort([]corev1.Container{vmContainer(pod)}, port) {
			addr, err := w.sidecarAddr()(ctx, int(port))
			if err != nil {
				return "", errdefs.InvalidInputf("port %d of pod %s/%s, which its Docker containers declare: %v", port, ns, name, err)
			}
			return addr, nil
		}
	}
	_, t, err := p.running(ns, name, "")
	if err != nil {
		return "", err
	}
	ip, _, _ := net.SplitHostPort(t.Addr)
	return net.JoinHostPort(ip, strconv.Itoa(int(port))), nil
}

// declaresPort reports whether one of cs declares TCP port.
func declaresPort(cs []corev1.Container, port int32) bool {
	for _, c := range cs {
		for _, cp := range c.Ports {
			if cp.ContainerPort == port && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
				return true
			}
		}
	}
	return false
}

// running returns the worker of a pod whose VM container is container and
// whose guest is reachable.
func (p *PodProvider) running(ns, name, container string) (*podWorker, GuestTarget, error) {
	w := p.worker(ns, name)
	if w == nil {
		return nil, GuestTarget{}, errdefs.NotFoundf("pod %s/%s is not on this node", ns, name)
	}
	pod, view := w.snapshot()
	if c := vmContainer(pod); container != "" && container != c.Name {
		return nil, GuestTarget{}, errdefs.NotFoundf("container %q not found in pod %s/%s (the VM container is %q)", container, ns, name, c.Name)
	}
	if view.Stage != stageRunning || view.PodIP == "" {
		return nil, GuestTarget{}, errdefs.InvalidInputf("the VM of pod %s/%s is not running or has no address yet", ns, name)
	}
	return w, p.target(w.uid, w.dir, view.PodIP), nil
}

// dockerContainer returns the Docker name of container when it is one of
// the pod's sidecars or init containers.
func (p *PodProvider) dockerContainer(ns, name, container string) (string, corev1.Container, bool) {
	w := p.worker(ns, name)
	if w == nil || p.cfg.Docker == nil {
		return "", corev1.Container{}, false
	}
	pod, _ := w.snapshot()
	for _, c := range dockerContainers(pod) {
		if c.Name == container {
			return sidecar.Name(pod, c.Name), c, true
		}
	}
	return "", corev1.Container{}, false
}

func sidecarIO(attach api.AttachIO) sidecar.IO {
	stdout, stderr := outputs(attach)
	return sidecar.IO{Stdin: attach.Stdin(), Stdout: stdout, Stderr: stderr, TTY: attach.TTY(), Resize: attach.Resize()}
}

// outputs are kubectl's stdout and stderr of an exec or attach, io.Discard
// for a stream it did not ask for. closeOutputs ends them.
func outputs(attach api.AttachIO) (stdout, stderr io.Writer) {
	stdout, stderr = io.Discard, io.Discard
	if out := attach.Stdout(); out != nil {
		stdout = out
	}
	if e := attach.Stderr(); e != nil {
		stderr = e
	}
	return stdout, stderr
}

// RunInContainer runs cmd in the guest over SSH, or in a sidecar through
// Docker (kubectl exec). The command's exit code is passed back to kubectl.
func (p *PodProvider) RunInContainer(ctx context.Context, ns, name, container string, cmd []string, attach api.AttachIO) error {
	if id, _, ok := p.dockerContainer(ns, name, container); ok {
		if len(cmd) == 0 {
			return errdefs.InvalidInput("exec needs a command")
		}
		s := sidecarIO(attach)
		defer closeOutputs(attach)
		code, err := p.cfg.Docker.Exec(ctx, id, cmd, s)
		if err != nil {
			return fmt.Errorf("exec in sidecar %s of pod %s/%s: %w", container, ns, name, err)
		}
		return exitError(code)
	}
	w, t, err := p.running(ns, name, container)
	if err != nil {
		return err
	}
	if len(cmd) == 0 {
		return errdefs.InvalidInput("exec needs a command")
	}
	// The command gets the container's environment, as with the kubelet.
	pod, view := w.snapshot()
	return p.exec(ctx, t, withEnv(vmEnv(vmContainer(pod), view.PodIP), cmd), attach)
}

// AttachToContainer attaches to a sidecar's main process, to the output of
// the VM's command from now on (it runs detached, so it takes no input),
// or, for a VM without one, opens the guest user's login shell.
func (p *PodProvider) AttachToContainer(ctx context.Context, ns, name, container string, attach api.AttachIO) error {
	if id, _, ok := p.dockerContainer(ns, name, container); ok {
		defer closeOutputs(attach)
		if err := p.cfg.Docker.Attach(ctx, id, sidecarIO(attach)); err != nil {
			return fmt.Errorf("attach to sidecar %s of pod %s/%s: %w", container, ns, name, err)
		}
		return nil
	}
	w, t, err := p.running(ns, name, container)
	if err != nil {
		return err
	}
	if pod, _ := w.snapshot(); hasCommand(vmContainer(pod)) {
		return p.attachMain(ctx, w, attach)
	}
	return p.exec(ctx, t, nil, attach)
}

// attachMain streams the VM command's output from now on until it ends.
func (p *PodProvider) attachMain(ctx context.Context, w *podWorker, attach api.AttachIO) error {
	stdout, _ := outputs(attach)
	defer closeOutputs(attach)
	rc, err := p.mainLogs(ctx, w, api.ContainerLogOpts{Follow: true, SinceTime: p.cfg.Now()})
	if err != nil {
		return err
	}
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	if _, err := io.Copy(stdout, rc); err != nil && ctx.Err() == nil {
		return fmt.Errorf("attach to the VM's command: %w", err)
	}
	return nil
}

func (p *PodProvider) exec(ctx context.Context, t GuestTarget, argv []string, attach api.AttachIO) error {
	stdout, stderr := outputs(attach)
	defer closeOutputs(attach)
	req := ExecRequest{Argv: argv, Stdin: attach.Stdin(), Stdout: stdout, Stderr: stderr, TTY: attach.TTY(), Resize: attach.Resize()}
	code, err := p.cfg.Guest.Exec(ctx, t, req)
	if err != nil {
		return fmt.Errorf("exec in guest %s: %w", t.Addr, err)
	}
	return exitError(code)
}

// exitError passes a command's exit code to kubectl.
func exitError(code int) error {
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func closeOutputs(attach api.AttachIO) {
	if out := attach.Stdout(); out != nil {
		out.Close()
	}
	if e := attach.Stderr(); e != nil {
		e.Close()
	}
}

// GetContainerLogs streams a sidecar's output, or the guest's log
// (kubectl logs).
func (p *PodProvider) GetContainerLogs(ctx context.Context, ns, name, container string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	if id, c, ok := p.dockerContainer(ns, name, container); ok {
		return p.sidecarLogs(ctx, p.worker(ns, name), id, c, opts)
	}
	if w := p.worker(ns, name); w != nil {
		if pod, _ := w.snapshot(); hasCommand(vmContainer(pod)) && (container == "" || container == vmContainer(pod).Name) {
			return p.mainLogs(ctx, w, opts)
		}
	}
	_, t, err := p.running(ns, name, container)
	if err != nil {
		return nil, err
	}
	if opts.Previous {
		return nil, errdefs.InvalidInput("previous logs are not kept for VMs: the guest's log spans its restarts")
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		var out io.Writer = pw
		var tw *timestampWriter
		if opts.Timestamps {
			tw = &timestampWriter{w: pw, now: p.cfg.Now}
			out = tw
		}
		entries := &logEntries{tail: opts.Tail}
		var stderr strings.Builder
		code, err := p.cfg.Guest.Exec(ctx, t, ExecRequest{Argv: logShowArgv(opts, p.cfg.Now()), Stdout: entries, Stderr: &stderr})
		if err == nil && code != 0 {
			err = fmt.Errorf("guest log show exited with %d: %s", code, truncate(stderr.String(), 200))
		}
		if err == nil {
			err = entries.flush(out)
		}
		if err == nil && opts.Follow {
			_, err = p.cfg.Guest.Exec(ctx, t, ExecRequest{Argv: logStreamArgv, Stdout: &logEntries{tail: -1, live: out}, Stderr: io.Discard})
		}
		if tw != nil {
			tw.flush()
		}
		pw.CloseWithError(err)
	}()
	return &cancelReader{ReadCloser: limited(pr, opts.LimitBytes), cancel: cancel}, nil
}

// limited ends rc after n bytes (kubectl logs --limit-bytes); n <= 0 means
// no limit.
func limited(rc io.ReadCloser, n int) io.ReadCloser {
	if n <= 0 {
		return rc
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, int64(n)), rc}
}

// logEntries keeps the entry lines of log(1) output: it drops the column
// header before the first entry and the summary after the dashed line. It
// buffers the last tail lines (all when tail is 0) for flush, or with live
// set passes entries straight through.
type logEntries struct {
	tail    int
	live    io.Writer
	partial []byte
	started bool
	done    bool
	lines   [][]byte
}

func (l *logEntries) Write(b []byte) (int, error) {
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := append([]byte(nil), l.partial[:i+1]...)
		l.partial = l.partial[i+1:]
		if err := l.line(line); err != nil {
			return 0, err
		}
	}
}

func (l *logEntries) line(line []byte) error {
	switch {
	case l.done:
		return nil
	case !l.started && !isLogEntry(line):
		return nil
	case len(line) > 50 && len(bytes.Trim(line, "-\n")) == 0:
		l.done = true
		return nil
	}
	l.started = true
	if l.live != nil {
		_, err := l.live.Write(line)
		return err
	}
	l.lines = append(l.lines, line)
	if l.tail > 0 && len(l.lines) > l.tail {
		l.lines = l.lines[1:]
	}
	return nil
}

func (l *logEntries) flush(w io.Writer) error {
	for _, line := range l.lines {
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	l.lines = nil
	return nil
}

// isLogEntry reports whether line starts with log(1)'s syslog-style
// timestamp ("2006-01-02 15:04:05").
func isLogEntry(line []byte) bool {
	return len(line) >= 19 && line[4] == '-' && line[7] == '-' && line[10] == ' ' && line[13] == ':' && line[16] == ':'
}

type cancelReader struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelReader) Close() error {
	c.cancel()
	return c.ReadCloser.Close()
}

// timestampWriter prefixes every line with its arrival time (RFC 3339), as
// `kubectl logs --timestamps` shows.
type timestampWriter struct {
	w   io.Writer
	now func() time.Time
	buf []byte
}

func (t *timestampWriter) Write(b []byte) (int, error) {
	t.buf = append(t.buf, b...)
	for {
		i := strings.IndexByte(string(t.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		line := t.buf[:i+1]
		if _, err := fmt.Fprintf(t.w, "%s %s", t.now().UTC().Format(time.RFC3339Nano), line); err != nil {
			return 0, err
		}
		t.buf = t.buf[i+1:]
	}
}

func (t *timestampWriter) flush() {
	if len(t.buf) > 0 {
		fmt.Fprintf(t.w, "%s %s\n", t.now().UTC().Format(time.RFC3339Nano), t.buf)
		t.buf = nil
	}
}

// PortForward connects stream to port in the pod (kubectl port-forward).
// A port that one of the pod's Docker containers declares, and the VM
// container does not, is reached where their sandbox publishes it on the
// host's loopback interface, as their probes reach it; any other port is
// the VM's.
func (p *PodProvider) PortForward(ctx context.Context, ns, name string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	addr, err := p.forwardAddr(ctx, ns, name, port)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("port-forward to pod %s/%s port %d at %s: %w", ns, name, port, addr, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, bufio.NewReader(conn)); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
