package sshd

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func dial(t *testing.T, s *Server, khFile string) (*ssh.Client, error) {
	t.Helper()
	cb, err := knownhosts.New(khFile)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:              s.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
		HostKeyCallback:   cb,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	})
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	kh := s.WriteKnownHosts(t)

	c, err := dial(t, s, kh)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.CombinedOutput("echo hello")
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("echo: %q, %v", out, err)
	}

	// Stop kills the live connection too.
	s.Stop()
	if err := c.Wait(); err == nil {
		t.Log("connection closed cleanly")
	}
	if _, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		t.Fatal("stopped server still accepts connections")
	}

	s.Restart()
	c, err = dial(t, s, kh)
	if err != nil {
		t.Fatalf("dial after restart: %v", err)
	}
	c.Close()

	old := s.HostKey()
	s.RotateHostKey()
	if string(old.Marshal()) == string(s.HostKey().Marshal()) {
		t.Fatal("RotateHostKey kept the key")
	}
	var keyErr *knownhosts.KeyError
	if _, err := dial(t, s, kh); err == nil || !errors.As(err, &keyErr) {
		t.Fatalf("dial with old known_hosts after rotation: want KeyError, got %v", err)
	}
	if !strings.Contains(s.Log(), "Accepted publickey") {
		t.Fatalf("log lacks the accepted login:\n%s", s.Log())
	}
}
