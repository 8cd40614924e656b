package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newPublicKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// knownHostsFile writes a known_hosts file with n hosts, 10.0.x.y:22, each
// with a key of its own, and returns its path and the last host's key.
func knownHostsFile(t testing.TB, n int) (string, ssh.PublicKey) {
	t.Helper()
	var b strings.Builder
	var key ssh.PublicKey
	for i := range n {
		key = newPublicKey(t)
		b.WriteString(knownhosts.Line([]string{fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)}, key) + "\n")
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

func TestPresentedKeyVerify(t *testing.T) {
	file, key := knownHostsFile(t, 3)
	p := presentedKey{name: "mac-3", address: "10.0.0.3:22", remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 3), Port: 22},
		key: key, files: []string{file}}
	if err := p.verify(); err != nil {
		t.Fatalf("the recorded key: %v", err)
	}
	other := p
	other.key = newPublicKey(t)
	if err := other.verify(); !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("another key: want ErrHostKeyChanged, got %v", err)
	}
	unknown := p
	unknown.address, unknown.remote = "10.0.9.9:22", &net.TCPAddr{IP: net.IPv4(10, 0, 9, 9), Port: 22}
	if err := unknown.verify(); !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("a host not recorded: want ErrHostKeyUnknown, got %v", err)
	}
	revoked, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(revoked, "@revoked * %s", ssh.MarshalAuthorizedKey(key))
	revoked.Close()
	if err := p.verify(); err == nil || !strings.Contains(err.Error(), "@revoked") {
		t.Fatalf("a revoked key: got %v", err)
	}
}

// age makes the file's modification time an hour old, as a known_hosts
// nobody is editing.
func age(t testing.TB, path string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

func TestKnownHostsCacheSeesEveryChange(t *testing.T) {
	a, b := newPublicKey(t), newPublicKey(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	// Both lines have the same length: rewrites keep the file's size.
	write := func(key ssh.PublicKey) {
		if err := os.WriteFile(path, []byte(knownhosts.Line([]string{"10.0.0.1"}, key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := presentedKey{name: "mac-1", address: "10.0.0.1:22", remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 22}, files: []string{path}}
	accepts := func(key, not ssh.PublicKey, when string) {
		t.Helper()
		p.key = key
		if err := p.verify(); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		p.key = not
		if err := p.verify(); !errors.Is(err, ErrHostKeyChanged) {
			t.Fatalf("%s: the other key: want ErrHostKeyChanged, got %v", when, err)
		}
	}
	write(a)
	age(t, path)
	accepts(a, b, "settled, parsed")
	accepts(a, b, "settled, from the cache")
	write(b)
	accepts(b, a, "rewritten")
	// Rewritten again within the same tick of a coarse file clock: the
	// same inode, size and time. Only racyWindow tells.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	write(a)
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	accepts(a, b, "rewritten again at once")
}

// BenchmarkPresentedKeyVerify is what the mux spends checking a held
// connection's key before it lends it: a stat of known_hosts, and parsing
// it when it has changed ("edited": modified within racyWindow, so parsed
// every time).
func BenchmarkPresentedKeyVerify(b *testing.B) {
	for _, n := range []int{30, 1000} {
		for _, edited := range []bool{false, true} {
			b.Run(fmt.Sprintf("known_hosts=%d/edited=%v", n, edited), func(b *testing.B) {
				file, key := knownHostsFile(b, n)
				if !edited {
					age(b, file)
				}
				host := fmt.Sprintf("10.0.%d.%d", (n-1)/250, (n-1)%250+1)
				p := presentedKey{name: "mac", address: host + ":22", remote: &net.TCPAddr{IP: net.ParseIP(host), Port: 22},
					key: key, files: []string{file}}
				for b.Loop() {
					if err := p.verify(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
