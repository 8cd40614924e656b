package image

import (
	"context"
	"errors"
	"io"
)

// The pull pipeline runs each chunk in three stages, so that on several
// cores receiving (and hashing the compressed bytes), decoding, and hashing
// plus writing the decoded bytes overlap:
//
//	network -> asyncReader -> decoder -> asyncWriter -> chunkWriter
//
// Stages pass pipeBufSize buffers through small queues; a queue full of
// unwritten data stops the download instead of growing memory. The buffers
// are kept on a free list rather than in a sync.Pool: the pull's heap is
// small, so garbage collections come often and would empty a pool.
const (
	pipeBufSize = 1 << 20
	pipeDepth   = 2  // buffers queued between two stages
	pipeKeep    = 32 // free buffers kept for the next chunk
)

var pipeFree = make(chan *[]byte, pipeKeep)

func getPipeBuf() *[]byte {
	select {
	case b := <-pipeFree:
		return b
	default:
		b := make([]byte, pipeBufSize)
		return &b
	}
}

func putPipeBuf(b *[]byte) {
	*b = (*b)[:cap(*b)]
	select {
	case pipeFree <- b:
	default:
	}
}

// asyncReader reads src ahead in a goroutine of its own.
type asyncReader struct {
	ch   chan *[]byte // full buffers; closed after the last
	stop chan struct{}
	done chan struct{} // closed when the goroutine has returned
	err  error         // why reading ended; set before ch is closed

	buf  *[]byte // buffer being consumed
	data []byte  // its unread part
}

func newAsyncReader(src io.Reader) *asyncReader {
	r := &asyncReader{ch: make(chan *[]byte, pipeDepth), stop: make(chan struct{}), done: make(chan struct{})}
	go r.run(src)
	return r
}

func (r *asyncReader) run(src io.Reader) {
	defer close(r.done)
	defer close(r.ch)
	for {
		b := getPipeBuf()
		n, err := io.ReadFull(src, *b)
		if n > 0 {
			*b = (*b)[:n]
			select {
			case r.ch <- b:
			case <-r.stop:
				r.err = errStopped
				return
			}
		} else {
			putPipeBuf(b)
		}
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if err != nil {
			r.err = err
			return
		}
	}
}

var errStopped = errors.New("pipeline stopped")

func (r *asyncReader) Read(p []byte) (int, error) {
	for len(r.data) == 0 {
		if r.buf != nil {
			putPipeBuf(r.buf)
			r.buf = nil
		}
		b, ok := <-r.ch
		if !ok {
			return 0, r.err
		}
		r.buf, r.data = b, *b
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// Close stops the reading goroutine and waits for it. Callers unblock a
// read stuck on the network first (by cancelling its context).
func (r *asyncReader) Close() {
	close(r.stop)
	for b := range r.ch {
		putPipeBuf(b)
	}
	<-r.done
	if r.buf != nil {
		putPipeBuf(r.buf)
		r.buf = nil
	}
}

// asyncWriter gathers writes into pipeBufSize buffers and hands them to w
// in a goroutine of its own. After w fails, writes return its error.
type asyncWriter struct {
	w      io.Writer
	ch     chan *[]byte
	failed chan struct{} // closed when w has failed; err is set first
	done   chan struct{}
	err    error

	buf *[]byte // being filled
	n   int
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{w: w, ch: make(chan *[]byte, pipeDepth), failed: make(chan struct{}), done: make(chan struct{})}
	go a.run()
	return a
}

func (a *asyncWriter) run() {
	defer close(a.done)
	for b := range a.ch {
		if a.err == nil {
			if _, err := a.w.Write(*b); err != nil {
				a.err = err
				close(a.failed)
			}
		}
		putPipeBuf(b)
	}
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if a.buf == nil {
			a.buf = getPipeBuf()
			a.n = 0
		}
		k := copy((*a.buf)[a.n:], p)
		a.n += k
		p = p[k:]
		if a.n == len(*a.buf) {
			if err := a.send(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (a *asyncWriter) send() error {
	b := a.buf
	*b = (*b)[:a.n]
	a.buf = nil
	select {
	case a.ch <- b:
		return nil
	case <-a.failed:
		putPipeBuf(b)
		return a.err
	}
}

// Close hands over what is gathered, waits until w has taken everything
// and returns w's error.
func (a *asyncWriter) Close() error {
	var err error
	if a.buf != nil && a.n > 0 {
		err = a.send()
	} else if a.buf != nil {
		putPipeBuf(a.buf)
		a.buf = nil
	}
	close(a.ch)
	<-a.done
	if err != nil {
		return err
	}
	return a.err
}

// ctxReader stops a long copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
