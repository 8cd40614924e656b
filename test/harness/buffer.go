package harness

import (
	"bytes"
	"sync"
)

// LockedBuffer collects a process's or stream's output while a test reads
// it: a bytes.Buffer safe for one writer and concurrent readers.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
