package node

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A rotated serving certificate is served without a restart.
func TestCertReloaderPicksUpNewFiles(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(host string, mod time.Time) {
		c, err := selfSignedCert(host)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{certPath, keyPath} {
			if err := os.Chtimes(p, mod, mod); err != nil {
				t.Fatal(err)
			}
		}
	}
	served := func(r *certReloader) string {
		r.mu.Lock()
		r.checked = time.Time{} // skip the once-a-second throttle
		r.mu.Unlock()
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.DNSNames[0]
	}
	write("first.example", time.Now().Add(-time.Hour))
	r, err := newCertReloader(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := served(r); got != "first.example" {
		t.Fatalf("serving %s", got)
	}
	write("second.example", time.Now())
	if got := served(r); got != "second.example" {
		t.Fatalf("after rotation serving %s, want second.example", got)
	}
	// A half-written pair keeps the last good certificate.
	if err := os.WriteFile(keyPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(r); got != "second.example" {
		t.Fatalf("with a broken key serving %s", got)
	}
}
