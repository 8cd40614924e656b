package remote

import (
	"bytes"
	"io"
	"strconv"
	"sync"
)

// pidMarker starts the line a remote command line writes to stderr before
// anything else runs: the shell's pid, which is also its process group
// (sshd starts every session with setsid), so a cancelled command can be
// killed together with its children, even where sshd ignores signals.
const pidMarker = "\x00vzfleet-pid:"

// reportPID is prepended to SSH command lines.
const reportPID = `printf '\000vzfleet-pid:%s\n' "$$" >&2; `

// pidCatcher passes stderr through, minus the pid line. Lines before it
// (a chatty shell startup file) pass unchanged; after 4 KiB without the
// marker it gives up looking.
type pidCatcher struct {
	w       io.Writer
	mu      sync.Mutex
	pending []byte
	seen    int
	done    bool
	pid     int
}

func (p *pidCatcher) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	if p.done {
		_, err := p.w.Write(b)
		return n, err
	}
	p.pending = append(p.pending, b...)
	p.seen += len(b)
	for !p.done {
		i := bytes.IndexByte(p.pending, '\n')
		if i < 0 {
			if p.seen > 4096 {
				p.done = true
			}
			break
		}
		line := p.pending[:i]
		if rest, ok := bytes.CutPrefix(line, []byte(pidMarker)); ok {
			if pid, err := strconv.Atoi(string(rest)); err == nil && pid > 1 {
				p.pid = pid
			}
			p.pending = p.pending[i+1:]
			p.done = true
			break
		}
		if _, err := p.w.Write(p.pending[:i+1]); err != nil {
			return n, err
		}
		p.pending = p.pending[i+1:]
	}
	if p.done && len(p.pending) > 0 {
		rest := p.pending
		p.pending = nil
		if _, err := p.w.Write(rest); err != nil {
			return n, err
		}
	}
	return n, nil
}

// flush passes on a partial line held back when the stream ended.
func (p *pidCatcher) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) > 0 {
		_, _ = p.w.Write(p.pending)
		p.pending = nil
	}
	p.done = true
}

// PID is the remote shell's pid, 0 until known.
func (p *pidCatcher) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}
