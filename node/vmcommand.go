package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/node/podenv"
)

// The VM container's command. When a pod gives its VM container a command
// (or args), vz-node runs it in the guest once the guest is ready (after
// postStart), as the container's main process: its output is the
// container's log, and when it exits the VM is shut down and the container
// ends with its exit code. restartPolicy, Jobs and `kubectl logs` then work
// as with any container: a macOS build is a Job.
//
// The command runs detached in the guest, in .vzfleet/<pod UID>-<run>/
// under the SSH user's home, so it outlives a vz-node restart: a run is
// started once (the directory records it) and followed again after.
// vz-node copies its output to the pod's state directory as it comes, each
// line stamped with the time it arrived, so the log outlives the VM.

// ReasonInvalidVMCommand fails a pod whose VM command vz-node cannot run.
const ReasonInvalidVMCommand = "InvalidVMCommand"

// hasCommand reports whether the VM container c has a command to run.
func hasCommand(c corev1.Container) bool { return len(c.Command) > 0 || len(c.Args) > 0 }

// checkVMCommand refuses a VM command whose environment vz-node cannot
// give it. Errors are *invalidPodError.
func checkVMCommand(pod *corev1.Pod) error {
	c := vmContainer(pod)
	if !hasCommand(c) {
		return nil
	}
	var bad []string
	for _, e := range c.Env {
		if f := e.ValueFrom; f != nil && !podIPRef(f) {
			bad = append(bad, e.Name)
		}
	}
	if len(bad) > 0 {
		return invalid(ReasonInvalidVMCommand, "container %q (the VM): env %s: only values, ConfigMap and Secret keys, status.podIP and the fields %s can be given to its command", c.Name, strings.Join(bad, ", "), strings.Join(podenv.Fields, ", "))
	}
	return nil
}

// podIPRef reports whether f is the pod IP, which the VM's command can
// have: the VM has its address by the time the command starts.
func podIPRef(f *corev1.EnvVarSource) bool {
	return f.FieldRef != nil && (f.FieldRef.FieldPath == "status.podIP" || f.FieldRef.FieldPath == "status.podIPs")
}

// vmEnv is the VM container's environment as NAME=value entries: its
// resolved env, with the pod IP (which the VM has by the time anything
// runs in it).
func vmEnv(c corev1.Container, podIP string) []string {
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case podIPRef(e.ValueFrom):
			env = append(env, e.Name+"="+podIP)
		}
	}
	return env
}

// withEnv runs argv under env(1) with env added to the guest's
// environment.
func withEnv(env, argv []string) []string {
	if len(env) == 0 || len(argv) == 0 {
		return argv
	}
	return append(append([]string{"env"}, env...), argv...)
}

// mainDir sets d to a run's directory in the guest, named for the pod
// and run.
func mainDir(uid string, run int) string {
	return `d="$HOME/.vzfleet/"` + shellQuote(fmt.Sprintf("%s-%d", uid, run)) + "\n"
}

// runnerScript is the script that runs the command in the guest: it
// deletes itself (it holds the environment, which may hold secrets), runs
// the command with its output in log, and then records its exit code.
func runnerScript(c corev1.Container, podIP string) string {
	var env []string
	for _, e := range vmEnv(c, podIP) {
		env = append(env, shellQuote(e))
	}
	var argv []string
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		argv = append(argv, shellQuote(podenv.Expand(a, c.Env)))
	}
	var b strings.Builder
	b.WriteString("rm -f \"$0\"\nd=$1\n(\n")
	if c.WorkingDir != "" {
		fmt.Fprintf(&b, "\tcd %s || exit 1\n", shellQuote(c.WorkingDir))
	}
	fmt.Fprintf(&b, "\texec env %s%s\n", strings.Join(append(env, ""), " "), strings.Join(argv, " "))
	b.WriteString(") >\"$d/log\" 2>&1 </dev/null\necho $? >\"$d/exit.tmp\" && mv \"$d/exit.tmp\" \"$d/exit\"\n")
	return b.String()
}

// launchScript starts the runner it reads from stdin, detached, unless
// this run has been started before.
func launchScript(uid string, run int) string {
	return "umask 077\n" + mainDir(uid, run) + `if [ -e "$d/started" ]; then cat >/dev/null; exit 0; fi
mkdir -p "$d" && cat >"$d/run.sh" || exit 1
nohup /bin/sh "$d/run.sh" "$d" >/dev/null 2>&1 </dev/null &
echo $! >"$d/started"
`
}

// followScript copies the run's log from byte offset on until the command
// has exited.
func followScript(uid string, run int, offset int64) string {
	return mainDir(uid, run) + `[ -e "$d/started" ] || exit 3
while [ ! -e "$d/log" ] && [ ! -e "$d/exit" ]; do sleep 0.2; done
tail -c +` + strconv.FormatInt(offset+1, 10) + ` -f "$d/log" & t=$!
while [ ! -e "$d/exit" ]; do sleep 0.5; done
kill $t 2>/dev/null
wait $t 2>/dev/null
exit 0
`
}

// finishScript copies what is left of the run's log after offset, and its
// exit code to stderr.
func finishScript(uid string, run int, offset int64) string {
	return mainDir(uid, run) + "tail -c +" + strconv.FormatInt(offset+1, 10) + ` "$d/log" && cat "$d/exit" >&2`
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// mainLogPath is where run's output is kept on the host.
func (w *podWorker) mainLogPath(run int) string {
	return filepath.Join(w.dir, fmt.Sprintf("main-%d.log", run))
}

// startMain starts the VM's command (unless this run did), and follows it
// to its end, which it reports as evMainExited.
func (w *podWorker) startMain() {
	pod, view := w.snapshot()
	c := vmContainer(pod)
	if !hasCommand(c) {
		return
	}
	w.cancelRunWork()
	ctx, cancel := context.WithCancel(w.ctx)
	w.runWork = cancel
	run, path := w.run, w.rotateMainLog()
	t := w.p.target(w.uid, w.dir, view.PodIP)
	script := runnerScript(c, view.PodIP)
	go func() {
		for {
			code, err := w.p.runMain(ctx, t, w.uid, run, path, script)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				w.post(event{kind: evMainExited, run: run, exit: &code})
				return
			}
			w.log.Warn("follow the VM's command; retrying", "err", err)
			if !sleepCtx(ctx, 2*time.Second) {
				return
			}
		}
	}()
}

// rotateMainLog makes the current run's log the VM command's log, the one
// before it the previous (as a new run of the VM begins), and returns its
// path.
func (w *podWorker) rotateMainLog() string {
	path := w.mainLogPath(w.run)
	if _, view := w.snapshot(); view.MainLog != path {
		if view.MainPrevLog != "" {
			_ = os.Remove(view.MainPrevLog)
		}
		w.setView(func(v *podView) { v.MainPrevLog, v.MainLog, v.MainExit = v.MainLog, path, nil })
	}
	return path
}

// cancelRunWork ends the work that belongs to the VM's current run: its
// command's follower, or the shutdown after it.
func (w *podWorker) cancelRunWork() {
	if w.runWork != nil {
		w.runWork()
		w.runWork = nil
	}
}

// runMain starts run's command in the guest unless it was, copies its
// output to path from where the copy stopped, and returns its exit code
// once it has exited.
func (p *PodProvider) runMain(ctx context.Context, t GuestTarget, uid string, run int, path, script string) (int, error) {
	exec := func(what, script string, stdin io.Reader, stdout io.Writer) (string, error) {
		var stderr bytes.Buffer
		code, err := p.cfg.Guest.Exec(ctx, t, ExecRequest{Argv: []string{"/bin/sh", "-c", script}, Stdin: stdin, Stdout: stdout, Stderr: &stderr})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d: %s", code, truncate(stderr.String(), 200))
		}
		if err != nil {
			return "", fmt.Errorf("%s the VM's command: %w", what, err)
		}
		return stderr.String(), nil
	}
	if _, err := exec("start", launchScript(uid, run), strings.NewReader(script), io.Discard); err != nil {
		return 0, err
	}
	log, err := openMainLog(path, p.cfg.Now)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	if _, err := exec("follow", followScript(uid, run, log.offset), nil, log); err != nil {
		return 0, err
	}
	out, err := exec("finish", finishScript(uid, run, log.received()), nil, log)
	if err != nil {
		return 0, err
	}
	if err := log.flush(); err != nil {
		return 0, err
	}
	code, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("the VM's command left exit code %q: %w", strings.TrimSpace(out), err)
	}
	return code, nil
}

// mainExited shuts the VM down once its command has exited; the
// container then ends with the command's exit code (see termination).
func (w *podWorker) mainExited(ev event) stage {
	if ev.run != w.run {
		return w.stage
	}
	code := int32(*ev.exit)
	w.setView(func(v *podView) { v.MainExit = &code })
	if code == 0 {
		w.event(corev1.EventTypeNormal, "Completed", "The VM's command exited with code 0; shutting the VM down")
	} else {
		w.event(corev1.EventTypeWarning, "CommandFailed", "The VM's command exited with code %d; shutting the VM down", code)
	}
	w.shutdownVM("its command exited", false)
	return w.stage
}

// mainStampLen is the width of the time stamp that starts each line of a
// command's log on the host, and the layout it is written in.
const (
	mainStampLen    = len("2006-01-02T15:04:05.000000000Z")
	mainStampLayout = "2006-01-02T15:04:05.000000000Z"
)

// mainLog appends a command's output to its log on the host, a line at a
// time, each stamped with the time it arrived. offset counts the bytes of
// output it holds, where the copy goes on from after a restart.
type mainLog struct {
	f       *os.File
	now     func() time.Time
	partial []byte
	offset  int64
}

// openMainLog opens the log at path for appending and finds how much of
// the command's output it holds.
func openMainLog(path string, now func() time.Time) (*mainLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the VM command's log: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read the VM command's log: %w", err)
	}
	// A line cut short by a crash is dropped: its output is copied again.
	whole := bytes.LastIndexByte(b, '\n') + 1
	if whole < len(b) {
		if err := f.Truncate(int64(whole)); err != nil {
			f.Close()
			return nil, fmt.Errorf("repair the VM command's log: %w", err)
		}
	}
	lines := int64(bytes.Count(b[:whole], []byte{'\n'}))
	return &mainLog{f: f, now: now, offset: int64(whole) - lines*int64(mainStampLen+1)}, nil
}

func (l *mainLog) Write(b []byte) (int, error) {
	n := len(b)
	l.partial = append(l.partial, b...)
	end := bytes.LastIndexByte(l.partial, '\n') + 1
	if end == 0 {
		return n, nil
	}
	if err := l.writeLines(l.partial[:end]); err != nil {
		return 0, err
	}
	l.partial = append(l.partial[:0], l.partial[end:]...)
	return n, nil
}

func (l *mainLog) writeLines(b []byte) error {
	stamp := l.now().UTC().Format(mainStampLayout)
	var out bytes.Buffer
	for line := range bytes.Lines(b) {
		out.WriteString(stamp)
		out.WriteByte(' ')
		out.Write(line)
	}
	if _, err := l.f.Write(out.Bytes()); err != nil {
		return fmt.Errorf("write the VM command's log: %w", err)
	}
	l.offset += int64(len(b))
	return nil
}

// received is how much of the output has been copied: the lines written
// and the start of the next.
func (l *mainLog) received() int64 { return l.offset + int64(len(l.partial)) }

// flush writes a last line that has no newline, with one.
func (l *mainLog) flush() error {
	if len(l.partial) == 0 {
		return nil
	}
	err := l.writeLines(append(l.partial, '\n'))
	l.partial = l.partial[:0]
	return err
}

func (l *mainLog) Close() error { return l.f.Close() }

// mainLogs serves `kubectl logs` of a VM container that runs a command:
// the host's copy of its output, so it reads the same after the VM has
// stopped. With follow it ends once the command has exited.
func (p *PodProvider) mainLogs(ctx context.Context, w *podWorker, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	_, view := w.snapshot()
	path := view.MainLog
	if opts.Previous {
		path = view.MainPrevLog
	}
	if path == "" {
		if opts.Previous {
			return nil, errdefs.NotFoundf("previous terminated container %q in pod %s not found", view.Container, w.key)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	if err != nil {
		return nil, fmt.Errorf("logs of the VM's command: %w", err)
	}
	sel := logSelector{tail: opts.Tail, timestamps: opts.Timestamps, since: opts.SinceTime}
	if opts.SinceSeconds > 0 {
		sel.since = p.cfg.Now().Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer f.Close()
		var buf []byte
		first := true
		for {
			// Once the command is done, the file holds all it will.
			done := !opts.Follow || w.mainDone(path)
			b, err := io.ReadAll(f)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			buf = append(buf, b...)
			whole := bytes.LastIndexByte(buf, '\n') + 1
			lines := buf[:whole]
			if first {
				lines = sel.tailOf(lines)
				first = false
			}
			if err := sel.write(pw, lines); err != nil {
				pw.CloseWithError(err)
				return
			}
			buf = append(buf[:0], buf[whole:]...)
			if done {
				pw.Close()
				return
			}
			select {
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return &cancelReader{ReadCloser: limited(pr, opts.LimitBytes), cancel: cancel}, nil
}

// mainDone reports whether the command whose log is at path will write no
// more: it has exited, a later run has begun, or the pod is gone.
func (w *podWorker) mainDone(path string) bool {
	_, view := w.snapshot()
	return view.MainLog != path || view.MainExit != nil || view.Stage == stageTerminated || w.ctx.Err() != nil
}

// Kubelet's limits on a termination message taken from the log.
const (
	fallbackMessageLines = 80
	fallbackMessageBytes = 2048
)

// logTail is the end of the command's log at path, for a container whose
// terminationMessagePolicy is FallbackToLogsOnError: as with the kubelet,
// the last 80 lines and at most 2048 bytes.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	// Enough for 80 lines or 2048 bytes of output but in the rarest cases,
	// and cheap to read.
	const window = 64 << 10
	info, err := f.Stat()
	if err != nil {
		return ""
	}
	cut := info.Size() > window
	if cut {
		if _, err := f.Seek(-window, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	if cut {
		i := bytes.IndexByte(b, '\n')
		if i < 0 || i == len(b)-1 {
			// One line longer than the window: its end.
			b = bytes.TrimSuffix(b, []byte{'\n'})
			return string(b[max(0, len(b)-fallbackMessageBytes+1):]) + "\n"
		}
		b = b[i+1:] // the first line is cut
	}
	sel := logSelector{tail: fallbackMessageLines}
	var out bytes.Buffer
	if err := sel.write(&out, sel.tailOf(b)); err != nil {
		return ""
	}
	msg := out.Bytes()
	return string(msg[max(0, len(msg)-fallbackMessageBytes):])
}

// logSelector picks and renders the lines of a command's log that
// `kubectl logs` asked for.
type logSelector struct {
	tail       int // last lines; 0 all
	timestamps bool
	since      time.Time
}

// tailOf returns the last sel.tail lines of whole lines b that are not
// before since.
func (sel logSelector) tailOf(b []byte) []byte {
	if !sel.since.IsZero() {
		for len(b) > 0 {
			if t, err := time.Parse(mainStampLayout, string(b[:min(mainStampLen, len(b))])); err == nil && !t.Before(sel.since) {
				break
			}
			_, rest, _ := bytes.Cut(b, []byte{'\n'})
			b = rest
		}
	}
	if sel.tail <= 0 {
		return b
	}
	n := bytes.Count(b, []byte{'\n'})
	for ; n > sel.tail; n-- {
		_, b, _ = bytes.Cut(b, []byte{'\n'})
	}
	return b
}

// write renders whole lines b to out: with their time stamps (RFC 3339,
// as the kubelet writes them) or without.
func (sel logSelector) write(out io.Writer, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var r bytes.Buffer
	for line := range bytes.Lines(b) {
		if len(line) <= mainStampLen {
			continue
		}
		if sel.timestamps {
			r.Write(line)
		} else {
			r.Write(line[mainStampLen+1:])
		}
	}
	_, err := out.Write(r.Bytes())
	return err
}
