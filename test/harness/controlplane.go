package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ControlPlaneOptions selects the optional controllers.
type ControlPlaneOptions struct {
	// Scheduler and ControllerManager make Deployments schedule onto nodes.
	Scheduler         bool
	ControllerManager bool
	// MetricsServer serves metrics.k8s.io from the nodes' kubelet API
	// (/metrics/resource), so `kubectl top` works.
	MetricsServer bool
	// ServiceAccounts enables the ServiceAccount admission plugin, which
	// mounts a service account token volume into every pod, as real
	// clusters do. It needs ControllerManager (default service accounts,
	// kube-root-ca.crt).
	ServiceAccounts bool
	// Log receives progress lines (nil: silent).
	Log func(format string, args ...any)
}

// ControlPlane is a running etcd + kube-apiserver (+ scheduler and
// controller-manager) on loopback.
type ControlPlane struct {
	Dir string
	// URL is the apiserver's https URL.
	URL string
	CA  *CA
	// AdminKubeconfig is a kubeconfig for a system:masters client.
	AdminKubeconfig string
	// Client is a clientset for the admin.
	Client kubernetes.Interface
	// KubeletClient is the certificate the apiserver presents to kubelets.
	KubeletClient *KeyPair
	procs         []*Process
}

// StartControlPlane starts the control plane in dir (which must exist).
func StartControlPlane(ctx context.Context, dir string, opts ControlPlaneOptions) (cp *ControlPlane, err error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	started := &ControlPlane{Dir: dir}
	cp = started
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, err
	}
	if cp.CA, err = NewCA(pki, "vzfleet-test-ca"); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cp.URL = "https://" + hostPort(port)

	logf("harness: starting etcd")
	etcdURL, err := cp.startEtcd(ctx)
	if err != nil {
		return nil, err
	}
	logf("harness: starting kube-apiserver on %s", cp.URL)
	if err := cp.startAPIServer(ctx, port, etcdURL, opts.ServiceAccounts); err != nil {
		return nil, err
	}
	if opts.Scheduler {
		logf("harness: starting kube-scheduler")
		if err := cp.startComponent(ctx, "kube-scheduler", nil); err != nil {
			return nil, err
		}
	}
	if opts.ControllerManager {
		logf("harness: starting kube-controller-manager")
		if err := cp.startComponent(ctx, "kube-controller-manager", []string{
			"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
			"--root-ca-file=" + cp.CA.CertPath,
			"--cluster-signing-cert-file=" + cp.CA.CertPath,
			"--cluster-signing-key-file=" + cp.CA.KeyPath,
			"--use-service-account-credentials=false",
			"--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
		}); err != nil {
			return nil, err
		}
	}
	if opts.MetricsServer {
		logf("harness: starting metrics-server")
		if err := cp.startMetricsServer(ctx); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

func (cp *ControlPlane) start(name string, args []string) (*Process, error) {
	bin, err := Tool(name)
	if err != nil {
		return nil, err
	}
	p, err := StartProcess(name, filepath.Join(cp.Dir, name+".log"), bin, args, nil)
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, p)
	return p, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context) (string, error) {
	clientPort, err := FreePort()
	if err != nil {
		return "", err
	}
	peerPort, err := FreePort()
	if err != nil {
		return "", err
	}
	clientURL := "http://" + hostPort(clientPort)
	peerURL := "http://" + hostPort(peerPort)
	p, err := cp.start("etcd", []string{
		"--name=harness",
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=harness=" + peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return clientURL, p.waitFor(ctx, "etcd healthy", func() error { return httpOK(http.DefaultClient, clientURL+"/health") })
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, port int, etcdURL string, serviceAccounts bool) error {
	pki := filepath.Join(cp.Dir, "pki")
	// Without the plugin, pods get no token volume and need no service
	// account to exist.
	admission := "--disable-admission-plugins=ServiceAccount"
	if serviceAccounts {
		admission = "--enable-admission-plugins=ServiceAccount"
	}
	serving, err := cp.CA.Issue(pki, "apiserver", CertRequest{
		CommonName: "kube-apiserver",
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		Server:     true,
	})
	if err != nil {
		return err
	}
	if cp.KubeletClient, err = cp.CA.Issue(pki, "apiserver-kubelet-client", CertRequest{
		CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true,
	}); err != nil {
		return err
	}
	// The aggregation layer (metrics APIs) authenticates the apiserver's
	// proxy with its own CA; NewCA names its files ca.*, so keep it apart.
	proxyDir := filepath.Join(pki, "front-proxy")
	if err := os.MkdirAll(proxyDir, 0o700); err != nil {
		return err
	}
	proxyCA, err := NewCA(proxyDir, "front-proxy-ca")
	if err != nil {
		return err
	}
	proxyClient, err := proxyCA.Issue(proxyDir, "front-proxy-client", CertRequest{CommonName: "front-proxy-client", Client: true})
	if err != nil {
		return err
	}
	saKey, err := newServiceAccountKey(pki)
	if err != nil {
		return err
	}
	admin, err := cp.CA.Issue(pki, "admin", CertRequest{CommonName: "admin", Organization: []string{"system:masters"}, Client: true})
	if err != nil {
		return err
	}
	cp.AdminKubeconfig = filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := cp.writeKubeconfig(cp.AdminKubeconfig, "admin", admin); err != nil {
		return err
	}
	p, err := cp.start("kube-apiserver", []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + serving.CertPath,
		"--tls-private-key-file=" + serving.KeyPath,
		"--client-ca-file=" + cp.CA.CertPath,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		admission,
		"--endpoint-reconciler-type=none",
		"--kubelet-client-certificate=" + cp.KubeletClient.CertPath,
		"--kubelet-client-key=" + cp.KubeletClient.KeyPath,
		"--kubelet-certificate-authority=" + cp.CA.CertPath,
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--requestheader-client-ca-file=" + proxyCA.CertPath,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + proxyClient.CertPath,
		"--proxy-client-key-file=" + proxyClient.KeyPath,
		"--profiling=false",
	})
	if err != nil {
		return err
	}
	client, err := tlsClient(cp.CA.CertPEM, admin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := p.waitFor(ctx, "kube-apiserver ready", func() error { return httpOK(client, cp.URL+"/readyz") }); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig)
	if err != nil {
		return err
	}
	// Tests and benchmarks poll; client-go's default 5 QPS would make them
	// measure their own throttling.
	cfg.QPS, cfg.Burst = 500, 1000
	cp.Client, err = kubernetes.NewForConfig(cfg)
	return err
}

func (cp *ControlPlane) startComponent(ctx context.Context, name string, extra []string) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	args := append([]string{
		"--kubeconfig=" + cp.AdminKubeconfig,
		"--authentication-kubeconfig=" + cp.AdminKubeconfig,
		"--authorization-kubeconfig=" + cp.AdminKubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
	}, extra...)
	p, err := cp.start(name, args)
	if err != nil {
		return err
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return p.waitFor(ctx, name+" healthy", func() error { return httpOK(insecure, "https://"+hostPort(port)+"/healthz") })
}

// startMetricsServer runs metrics-server on loopback and registers it with
// the aggregation layer. An ExternalName service lets the apiserver reach it
// at 127.0.0.1, which Endpoints would refuse as a loopback address.
func (cp *ControlPlane) startMetricsServer(ctx context.Context) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	p, err := cp.start("metrics-server", []string{
		"--kubeconfig=" + cp.AdminKubeconfig,
		"--authentication-kubeconfig=" + cp.AdminKubeconfig,
		"--authorization-kubeconfig=" + cp.AdminKubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(cp.Dir, "metrics-server"),
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-use-node-status-port",
		"--kubelet-certificate-authority=" + cp.CA.CertPath,
		"--kubelet-client-certificate=" + cp.KubeletClient.CertPath,
		"--kubelet-client-key=" + cp.KubeletClient.KeyPath,
		"--metric-resolution=10s",
		"--kubelet-request-timeout=5s",
	})
	if err != nil {
		return err
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	wait, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.waitFor(wait, "metrics-server live", func() error { return httpOK(insecure, "https://"+hostPort(port)+"/livez") }); err != nil {
		return err
	}
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec: {type: ExternalName, externalName: 127.0.0.1, ports: [{name: https, port: %[1]d}]}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  service: {name: metrics-server, namespace: kube-system, port: %[1]d}
  group: metrics.k8s.io
  version: v1beta1
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
`, port)
	if out, err := cp.Apply(ctx, manifest); err != nil {
		return fmt.Errorf("registering metrics-server: %w: %s", err, out)
	}
	return p.waitFor(wait, "metrics.k8s.io served through the apiserver", func() error {
		_, err := cp.Client.Discovery().ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1")
		return err
	})
}

// NodeKubeconfig mints a client certificate for system:node:<name> (group
// system:nodes), so the Node authorizer and NodeRestriction treat its holder
// as that node, and writes a kubeconfig (0600) for it.
func (cp *ControlPlane) NodeKubeconfig(name string) (string, *KeyPair, error) {
	dir := filepath.Join(cp.Dir, "nodes", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	kp, err := cp.CA.Issue(dir, "client", CertRequest{
		CommonName: "system:node:" + name, Organization: []string{"system:nodes"}, Client: true,
	})
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, kp, cp.writeKubeconfig(path, "system:node:"+name, kp)
}

// KubeletServingCert issues the certificate a node's kubelet API serves,
// valid for the given addresses, signed by the cluster CA that the apiserver
// verifies kubelets with.
func (cp *ControlPlane) KubeletServingCert(name string, ips ...net.IP) (*KeyPair, error) {
	dir := filepath.Join(cp.Dir, "nodes", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return cp.CA.Issue(dir, "kubelet", CertRequest{
		CommonName: "system:node:" + name, Organization: []string{"system:nodes"},
		DNSNames: []string{name, "localhost"}, IPs: ips, Server: true,
	})
}

// Kubectl runs the kubectl built by hack/tools against the control plane as
// the admin and returns its combined output.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return cp.kubectl(ctx, "", args)
}

// Apply runs `kubectl apply -f -` with manifest on standard input.
func (cp *ControlPlane) Apply(ctx context.Context, manifest string) ([]byte, error) {
	return cp.kubectl(ctx, manifest, []string{"apply", "-f", "-"})
}

func (cp *ControlPlane) kubectl(ctx context.Context, stdin string, args []string) ([]byte, error) {
	bin, err := Tool("kubectl")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig=" + cp.AdminKubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %v: %w: %s", args, err, out)
	}
	return out, nil
}

// Stop stops every component, newest first.
func (cp *ControlPlane) Stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		cp.procs[i].Stop()
	}
	cp.procs = nil
}

func (cp *ControlPlane) writeKubeconfig(path, user string, kp *KeyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["harness"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: cp.CA.CertPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts["harness"] = &clientcmdapi.Context{Cluster: "harness", AuthInfo: user}
	cfg.CurrentContext = "harness"
	return clientcmd.WriteToFile(*cfg, path)
}

func tlsClient(caPEM []byte, kp *KeyPair) (*http.Client, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}, nil
}

func httpOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
