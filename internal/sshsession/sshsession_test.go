package sshsession

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Open gives up when the connection ends or the context does, even though
// the library may never answer.
func TestOpenDoesNotWaitForever(t *testing.T) {
	never := func() (*ssh.Session, error) { select {} }
	ended := make(chan struct{})
	close(ended)
	if _, err := Open(context.Background(), never, ended); !errors.Is(err, ErrConnectionEnded) {
		t.Fatalf("connection ended: got %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Open(ctx, never, make(chan struct{})); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("context ended: got %v", err)
	}
	failed := errors.New("open failed")
	if _, err := Open(context.Background(), func() (*ssh.Session, error) { return nil, failed }, make(chan struct{})); !errors.Is(err, failed) {
		t.Fatalf("open's own error: got %v", err)
	}
}
