package image

import (
	"context"
	"errors"
	"io"
)

// The pull pipeline runs each chunk in two stages, so that on several
// cores receiving overlaps with decoding, hashing and writing:
//
//	network -> asyncReader -> decoder -> chunkWriter
//
// The decoder hands the chunkWriter its output in spans of up to 1 MiB
// straight from its own buffer (applelz4.Reader.WriteTo), without a copy.
// The reader passes pipeBufSize buffers through a small queue; a queue
// full of undecoded data stops the download instead of growing memory. The
// buffers are kept on a free list rather than in a sync.Pool: the pull's
// heap is small, so garbage collections come often and would empty a pool.
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
