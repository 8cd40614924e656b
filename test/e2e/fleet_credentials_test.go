package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vzfleet/vzfleet/fleet"
	"github.com/vzfleet/vzfleet/test/harness"
)

// fleetctl's minted node identity: a client certificate for
// system:node:<name> from the CSR API (approved with the operator's
// credentials, signed by the controller-manager) acts as exactly that node
// under the Node authorizer and NodeRestriction, and the kubelet serving
// certificate carries the node's address.
func TestFleetNodeCredentials(t *testing.T) {
	t.Parallel()
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{ControllerManager: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	caPEM, err := os.ReadFile(cp.CA.CertPath)
	if err != nil {
		t.Fatal(err)
	}

	kp, err := fleet.MintNodeCert(ctx, cp.Client, "mac-csr", nil, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := fleet.NodeKubeconfig(cp.URL, caPEM, "mac-csr", kp)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	nodeClient := kubernetes.NewForConfigOrDie(cfg)
	own := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "mac-csr", Labels: map[string]string{"kubernetes.io/os": "darwin"}}}
	if _, err := nodeClient.CoreV1().Nodes().Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatalf("minted identity creating its own Node: %v", err)
	}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "mac-other"}}
	if _, err := nodeClient.CoreV1().Nodes().Create(ctx, other, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("minted identity creating another Node: %v, want Forbidden", err)
	}

	serving, err := fleet.MintNodeCert(ctx, cp.Client, "mac-csr", []net.IP{net.ParseIP("10.213.9.11")}, []string{"mac-csr.local"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(serving.Cert)
	if block == nil {
		t.Fatal("serving certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "mac-csr.local", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving certificate: %v", err)
	}
	if len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP("10.213.9.11")) || cert.Subject.CommonName != "system:node:mac-csr" {
		t.Errorf("serving certificate names: %v %s", cert.IPAddresses, cert.Subject)
	}

	csrs, err := cp.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(csrs.Items) != 0 {
		t.Errorf("%d CSRs left behind", len(csrs.Items))
	}
}
