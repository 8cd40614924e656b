// Package sshsession opens SSH sessions without the hang
// golang.org/x/crypto/ssh has when a connection dies at the wrong moment.
//
// x/crypto/ssh can wait forever for the answer to a channel open sent just
// as its connection's read loop ended: the connection forgets its channels
// when that loop ends, and a channel added a moment later is never told.
// canonical/spread#226 works around the same hang. fleetctl met it when an
// SSH connection was cut during an upload and the cleanup opened a session
// on it.
package sshsession

import (
	"context"
	"errors"
	"io"

	"golang.org/x/crypto/ssh"
)

// ErrConnectionEnded: the connection ended while a session or channel was
// opening.
var ErrConnectionEnded = errors.New("the connection ended")

// Ended returns a channel closed when c's connection has ended. Call it
// once per connection: it starts a goroutine that lives as long as c.
func Ended(c *ssh.Client) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		_ = c.Wait()
		close(done)
	}()
	return done
}

// Open opens a session or channel with open (a client's NewSession, say),
// or fails when the connection ends (ended is closed) or ctx ends first.
// The goroutine left waiting in the library then is not given back:
// x/crypto/ssh offers no way to end it. What opens after all is closed.
func Open[T io.Closer](ctx context.Context, open func() (T, error), ended <-chan struct{}) (T, error) {
	type opened struct {
		v   T
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		v, err := open()
		ch <- opened{v, err}
	}()
	var err error
	select {
	case o := <-ch:
		return o.v, o.err
	case <-ended:
		err = ErrConnectionEnded
	case <-ctx.Done():
		err = ctx.Err()
	}
	go func() {
		if o := <-ch; o.err == nil {
			o.v.Close()
		}
	}()
	var zero T
	return zero, err
}
