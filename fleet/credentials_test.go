package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca testCA) issue(t *testing.T, subject pkix.Name, usage x509.ExtKeyUsage, validFor time.Duration, ips []net.IP) KeyPair {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor), IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return KeyPair{Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})}
}

// Installed credentials are kept only while they still fit: right node,
// right CA and server, not about to expire, covering the node's address.
func TestInstalledCredentialsReuse(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	year := 365 * 24 * time.Hour
	good := ca.issue(t, NodeSubject("mini-01"), x509.ExtKeyUsageClientAuth, year, nil)
	const server = "https://127.0.0.1:6443"
	kc, err := NodeKubeconfig(server, ca.pem, "mini-01", good)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if !usableNodeKubeconfig(kc, server, ca.pem, "mini-01", now) {
		t.Error("a fitting kubeconfig was not kept")
	}
	for name, ok := range map[string]bool{
		"other server": usableNodeKubeconfig(kc, "https://10.0.0.1:6443", ca.pem, "mini-01", now),
		"other CA":     usableNodeKubeconfig(kc, server, other.pem, "mini-01", now),
		"other node":   usableNodeKubeconfig(kc, server, ca.pem, "mini-02", now),
		"expiring":     usableNodeKubeconfig(kc, server, ca.pem, "mini-01", now.Add(year-24*time.Hour)),
		"garbage":      usableNodeKubeconfig([]byte("not: [a kubeconfig"), server, ca.pem, "mini-01", now),
	} {
		if ok {
			t.Errorf("%s: kubeconfig kept", name)
		}
	}
	wrongKey := ca.issue(t, NodeSubject("mini-01"), x509.ExtKeyUsageClientAuth, year, nil)
	mixed, _ := NodeKubeconfig(server, ca.pem, "mini-01", KeyPair{Cert: good.Cert, Key: wrongKey.Key})
	if usableNodeKubeconfig(mixed, server, ca.pem, "mini-01", now) {
		t.Error("a kubeconfig whose key does not match its certificate was kept")
	}

	ip := net.ParseIP("10.213.0.11")
	serving := ca.issue(t, NodeSubject("mini-01"), x509.ExtKeyUsageServerAuth, year, []net.IP{ip})
	if !certUsable(serving.Cert, ca.pem, "mini-01", []net.IP{ip}, nil, now) {
		t.Error("a fitting serving certificate was not kept")
	}
	if certUsable(serving.Cert, ca.pem, "mini-01", []net.IP{net.ParseIP("10.213.0.12")}, nil, now) {
		t.Error("a serving certificate for another address was kept")
	}
	if certUsable(good.Cert, ca.pem, "mini-01", []net.IP{ip}, nil, now) {
		t.Error("a client certificate was taken for a serving one")
	}
}
