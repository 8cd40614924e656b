package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
)

// Signers the controller-manager signs node certificates with.
const (
	// SignerNodeClient issues client certificates for system:node:<name>
	// in group system:nodes (what kubelets use).
	SignerNodeClient = certv1.KubeAPIServerClientKubeletSignerName
	// SignerKubeletServing issues kubelet API serving certificates; it
	// requires the same subject and only DNS/IP names.
	SignerKubeletServing = certv1.KubeletServingSignerName
)

// certRenewBefore: a certificate closer than this to expiry is replaced.
const certRenewBefore = 30 * 24 * time.Hour

// KeyPair is a PEM certificate and its PEM private key.
type KeyPair struct {
	Cert, Key []byte
}

// NodeSubject is the subject a node's certificates carry.
func NodeSubject(node string) pkix.Name {
	return pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}
}

// MintNodeCert gets a certificate for system:node:<node> through the
// CertificateSigningRequest API: it creates the CSR with a fresh ECDSA key,
// approves it with the caller's (operator's) credentials and waits until the
// signer has issued it. With no ips or dnsNames it is a client certificate
// (SignerNodeClient), otherwise a kubelet serving certificate.
func MintNodeCert(ctx context.Context, client kubernetes.Interface, node string, ips []net.IP, dnsNames []string, timeout time.Duration) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, err
	}
	tmpl := &x509.CertificateRequest{Subject: NodeSubject(node), IPAddresses: ips, DNSNames: dnsNames}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("node %s: creating the certificate request: %w", node, err)
	}
	signer, usages, kind := SignerNodeClient, []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}, "client"
	if len(ips)+len(dnsNames) > 0 {
		signer, usages, kind = SignerKubeletServing, []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}, "serving"
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	csr := &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("vzfleet-%s-%s-%s", node, kind, hex.EncodeToString(suffix)),
			Labels: map[string]string{"app.kubernetes.io/managed-by": "fleetctl"},
		},
		Spec: certv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
			SignerName: signer,
			Usages:     usages,
		},
	}
	csrs := client.CertificatesV1().CertificateSigningRequests()
	created, err := csrs.Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		return KeyPair{}, fmt.Errorf("node %s: creating CSR for a %s certificate (signer %s): %w; the operator kubeconfig needs create on certificatesigningrequests", node, kind, signer, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = csrs.Delete(ctx, created.Name, metav1.DeleteOptions{})
	}()
	// kube-controller-manager's approver may update the CSR at the same
	// time: on a conflict, read it again and approve what is there.
	cur := created
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if cur == nil {
			if cur, err = csrs.Get(ctx, created.Name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		if slices.ContainsFunc(cur.Status.Conditions, func(c certv1.CertificateSigningRequestCondition) bool {
			return c.Type == certv1.CertificateApproved && c.Status == corev1.ConditionTrue
		}) {
			return nil
		}
		cur.Status.Conditions = append(cur.Status.Conditions, certv1.CertificateSigningRequestCondition{
			Type: certv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason: "FleetctlApproved", Message: "approved by fleetctl for the inventory's node " + node,
		})
		_, err := csrs.UpdateApproval(ctx, cur.Name, cur, metav1.UpdateOptions{})
		cur = nil
		return err
	})
	if err != nil {
		return KeyPair{}, fmt.Errorf("node %s: approving CSR %s: %w; the operator needs approve on signers %s", node, created.Name, err, signer)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w, err := csrs.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", created.Name).String()})
	if err != nil {
		return KeyPair{}, fmt.Errorf("node %s: watching CSR %s: %w", node, created.Name, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return KeyPair{}, fmt.Errorf("node %s: CSR %s was approved but not signed within %s; is kube-controller-manager running with --cluster-signing-cert-file (signer %s)?", node, created.Name, timeout, signer)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return KeyPair{}, fmt.Errorf("node %s: watch on CSR %s ended", node, created.Name)
			}
			if ev.Type == watch.Error {
				continue
			}
			got, ok := ev.Object.(*certv1.CertificateSigningRequest)
			if !ok {
				continue
			}
			for _, c := range got.Status.Conditions {
				if c.Type == certv1.CertificateFailed || c.Type == certv1.CertificateDenied {
					return KeyPair{}, fmt.Errorf("node %s: CSR %s %s: %s %s", node, created.Name, c.Type, c.Reason, c.Message)
				}
			}
			if len(got.Status.Certificate) > 0 {
				der, err := x509.MarshalECPrivateKey(key)
				if err != nil {
					return KeyPair{}, err
				}
				return KeyPair{Cert: got.Status.Certificate, Key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})}, nil
			}
		}
	}
}

// certUsable reports whether certPEM is a current certificate for the node
// from the CA, covering the wanted names (none for a client certificate).
func certUsable(certPEM, caPEM []byte, node string, ips []net.IP, dnsNames []string, now time.Time) bool {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	if cert.Subject.CommonName != "system:node:"+node || !slices.Contains(cert.Subject.Organization, "system:nodes") {
		return false
	}
	if now.Before(cert.NotBefore) || now.Add(certRenewBefore).After(cert.NotAfter) {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return false
	}
	usage := x509.ExtKeyUsageClientAuth
	if len(ips)+len(dnsNames) > 0 {
		usage = x509.ExtKeyUsageServerAuth
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: now}); err != nil {
		return false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	for _, d := range dnsNames {
		if !slices.Contains(cert.DNSNames, d) {
			return false
		}
	}
	return true
}

// keyMatches reports whether keyPEM is the private key of certPEM.
func keyMatches(certPEM, keyPEM []byte) bool {
	_, err := tlsPair(certPEM, keyPEM)
	return err == nil
}

// NodeKubeconfig builds a kubeconfig for a node's client certificate.
func NodeKubeconfig(server string, caPEM []byte, node string, kp KeyPair) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	user := "system:node:" + node
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.Cert, ClientKeyData: kp.Key}
	cfg.Contexts["node"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: user}
	cfg.CurrentContext = "node"
	return clientcmd.Write(*cfg)
}

// usableNodeKubeconfig reports whether an installed kubeconfig can be kept:
// it points at server, trusts caPEM, and holds a current client certificate
// for the node with its key.
func usableNodeKubeconfig(data []byte, server string, caPEM []byte, node string, now time.Time) bool {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return false
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return false
	}
	cl, ai := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cl == nil || ai == nil || cl.Server != server || string(cl.CertificateAuthorityData) != string(caPEM) {
		return false
	}
	return certUsable(ai.ClientCertificateData, caPEM, node, nil, nil, now) && keyMatches(ai.ClientCertificateData, ai.ClientKeyData)
}

// operatorCluster reads the server URL and CA of the operator kubeconfig.
func operatorCluster(kubeconfigPath string) (server string, caPEM []byte, err error) {
	rc, err := OperatorConfig(kubeconfigPath)
	if err != nil {
		return "", nil, err
	}
	if err := loadCA(rc.TLSClientConfig.CAFile, &rc.TLSClientConfig.CAData); err != nil {
		return "", nil, err
	}
	if len(rc.TLSClientConfig.CAData) == 0 {
		return "", nil, errors.New("operator kubeconfig: the cluster has no certificate-authority; nodes need it to trust the API server")
	}
	return strings.TrimSuffix(rc.Host, "/"), rc.TLSClientConfig.CAData, nil
}
