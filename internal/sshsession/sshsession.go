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

	"golang.org/x/crypto/ssh"
)

// ErrConnectionEnded: the connection ended while a session was opening.
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

// Open opens a session with open (a client's NewSession), or fails when
// the connection ends (ended is closed) or ctx ends first. The goroutine
// left waiting in the library then is not given back: x/crypto/ssh offers
// no way to end it. A session that opens after all is closed.
func Open(ctx context.Context, open func() (*ssh.Session, error), ended <-chan struct{}) (*ssh.Session, error) {
	type opened struct {
		sess *ssh.Session
		err  error
	}
	ch := make(chan opened, 1)
	go func() {
		sess, err := open()
		ch <- opened{sess, err}
	}()
	var err error
	select {
	case o := <-ch:
		return o.sess, o.err
	case <-ended:
		err = ErrConnectionEnded
	case <-ctx.Done():
		err = ctx.Err()
	}
	go func() {
		if o := <-ch; o.sess != nil {
			o.sess.Close()
		}
	}()
	return nil, err
}
