// Package node is vz-node's Virtual Kubelet provider: it registers the Mac
// as a Kubernetes node, runs each pod's first container as a macOS VM (one
// supervisor process per VM, so VMs outlive the agent), reports pod and node
// status, and serves the kubelet API (exec, attach, logs, stats) with the
// guest reached over SSH.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"google.golang.org/grpc/grpclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/node/supervisor"
	"github.com/vzfleet/vzfleet/node/vm"
)

// ErrStartupTimeout: the node was not registered and running within
// --startup-timeout.
var ErrStartupTimeout = errors.New("vz-node did not start within the startup timeout")

// Option changes what Run wires in.
type Option func(*runDeps)

type runDeps struct {
	images ImageSource
}

// WithImageSource replaces where Run gets VM images (by default the OCI
// pull engine with a cache under --cache-dir, after hand-placed images).
func WithImageSource(src ImageSource) Option { return func(d *runDeps) { d.images = src } }

// quietGRPC silences gRPC's own logging, once per process (its logger is
// global and may not change while gRPC runs). gRPC (the probes' client,
// the trace exporter) logs every failed connection attempt; a failing
// probe already says why in an Event.
var quietGRPC sync.Once

// Run registers the node and serves pods until ctx ends. VMs keep running
// when it returns; the next Run re-adopts them.
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts ...Option) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var deps runDeps
	for _, o := range opts {
		o(&deps)
	}
	vklog.L = vkLogger{log}
	ctx = vklog.WithLogger(ctx, vklog.L)
	quietGRPC.Do(func() {
		grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
	})

	shutdownTracing, err := setupTracing(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.Background()) }()

	client, err := kubeClient(cfg)
	if err != nil {
		return err
	}
	if deps.images == nil {
		progress := newPullProgress(client.CoreV1().Nodes(), cfg.NodeName, log)
		go progress.run(ctx)
		dir := OCICacheDir(cfg.CacheDir)
		pull, err := NewImageCache(dir, ImageCacheOptions{Insecure: cfg.InsecureRegistries, Logger: log, Progress: progress.report})
		if err != nil {
			return fmt.Errorf("VM image cache %s: %w", dir, err)
		}
		deps.images = localFirst{local: LocalDirSource{Root: cfg.CacheDir}, next: pull}
	}
	for _, d := range []string{cfg.CacheDir, cfg.StateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	guest, err := newGuestClient(cfg)
	if err != nil {
		return err
	}
	drvOpts := vm.Options{
		StateDir:     filepath.Join(cfg.StateDir, "driver"),
		LeasesPath:   cfg.LeasesPath,
		BootDelay:    cfg.SimBootDelay.D(),
		MaxRunning:   cfg.MaxVMs,
		GuestLogin:   guest.login(),
		GuestSSHPort: cfg.GuestSSHPort,
	}
	drv, err := vm.New(cfg.Driver, drvOpts)
	if err != nil {
		return fmt.Errorf("--driver %s: %w", cfg.Driver, err)
	}
	facts := readHostFacts()
	host := drv.Host()
	if host.CPUs > 0 {
		facts.CPUs = int(host.CPUs)
	}
	if host.MemoryBytes > 0 {
		facts.MemoryBytes = host.MemoryBytes
	}
	alloc := allocatable{
		CPUs:        uint(max(0, int64(facts.CPUs)-ceilCores(cfg.ReserveCPU))),
		MemoryBytes: uint64(max(0, int64(facts.MemoryBytes)-cfg.ReserveMemory.Value())),
	}
	internalIP := cfg.InternalIP
	if internalIP == "" {
		internalIP = detectIP(client)
	}
	_, portStr, _ := net.SplitHostPort(cfg.ListenAddress)
	port, _ := strconv.Atoi(portStr)
	hostname, _ := os.Hostname()
	nodeObj := buildNode(nodeInputs{
		Name: cfg.NodeName, InternalIP: internalIP, Hostname: hostname, KubeletPort: int32(port),
		Facts: facts, DriverName: drv.Name(), MaxVMs: cfg.MaxVMs, Allocatable: alloc,
		DisableTaint: cfg.DisableTaint,
	})

	binary, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the vz-node binary to run VM supervisors: %w", err)
	}
	launcher := supervisor.NewLauncher(binary, cfg.StateDir)
	defer launcher.Close()

	eb := record.NewBroadcaster()
	eb.StartStructuredLogging(0)
	eb.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: client.CoreV1().Events(corev1.NamespaceAll)})
	defer eb.Shutdown()
	recorder := eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vz-node", Host: cfg.NodeName})

	tlsCfg, err := servingTLS(cfg, internalIP, hostname)
	if err != nil {
		return err
	}
	auth, err := kubeletAuth(ctx, cfg, client)
	if err != nil {
		return err
	}

	mode := vm.NAT
	if cfg.BridgeInterface != "" {
		mode = vm.Bridged
	}
	var docker *sidecar.Client
	if cfg.DockerHost != "" {
		if docker, err = sidecar.New(cfg.DockerHost); err != nil {
			return err
		}
	}
	var provider *PodProvider
	mux := http.NewServeMux()
	newProvider := func(pc nodeutil.ProviderConfig) (nodeutil.Provider, vknode.NodeProvider, error) {
		var err error
		provider, err = NewPodProvider(PodProviderConfig{
			NodeName: cfg.NodeName, HostIP: internalIP, StateDir: cfg.StateDir,
			DriverName: drv.Name(), DriverOptions: drvOpts, Host: host, Allocatable: alloc,
			MaxVMs: cfg.MaxVMs, NetworkMode: mode, BridgeInterface: cfg.BridgeInterface, GuestSSHPort: cfg.GuestSSHPort,
			Images: deps.images, Overlays: overlayMaker{},
			Addresses: leaseFinder{path: cfg.LeasesPath}, Guest: guest, Recorder: recorder,
			Objects: kubeObjects{client}, Docker: docker, SandboxImage: cfg.SandboxImage, Log: log,
			Launch: func(_, id string) (int, error) { return launcher.Launch(id) },
			DeletePod: func(ctx context.Context, pod *corev1.Pod) error {
				return forceDelete(ctx, client, pod)
			},
		})
		if err != nil {
			return nil, nil, err
		}
		checks := []conditionCheck{
			readyCheck,
			diskCheck(cfg.CacheDir, uint64(cfg.DiskPressureFreeBytesMinimum.Value())),
			memoryCheck(uint64(cfg.ReserveMemory.Value())/2, readHostUsage),
			pidCheck,
			networkCheck,
			slotLeakCheck(provider.SlotState),
		}
		if docker != nil {
			checks = append(checks, dockerCheck(docker))
		}
		lister, _ := deps.images.(ImageLister)
		return provider, newNodeStatus(pc.Node, cfg.ConditionCheckInterval.D(), checks, lister), nil
	}

	n, err := nodeutil.NewNode(cfg.NodeName, newProvider,
		nodeutil.WithClient(controllerClient{client}),
		func(c *nodeutil.NodeConfig) error {
			c.NodeSpec = *nodeObj
			c.HTTPListenAddr = cfg.ListenAddress
			c.TLSConfig = tlsCfg
			c.NumWorkers = cfg.PodSyncWorkers
			c.InformerResyncPeriod = cfg.FullResyncPeriod.D()
			c.StreamIdleTimeout = cfg.StreamIdleTimeout.D()
			c.StreamCreationTimeout = cfg.StreamCreationTimeout.D()
			c.EventRecorder = recorder
			// vz-node resolves env references itself, with GETs the Node
			// authorizer allows: virtual-kubelet's resolver reads listers
			// that node credentials cannot fill.
			c.SkipDownwardAPIResolution = true
			c.Handler = nodeutil.WithAuth(auth, mux)
			c.NodeStatusUpdateErrorHandler = recreateNode(client, nodeObj)
			return nil
		},
		nodeutil.AttachProviderRoutes(mux),
	)
	if err != nil {
		return fmt.Errorf("set up node %s: %w", cfg.NodeName, err)
	}
	defer provider.Close()

	go func() { _ = n.Run(ctx) }()
	if err := n.WaitReady(ctx, cfg.StartupTimeout.D()); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("%w (%s): is the API server reachable with %s? %v", ErrStartupTimeout, cfg.StartupTimeout, cfg.Kubeconfig, err)
		}
		return fmt.Errorf("start node %s: %w", cfg.NodeName, err)
	}
	log.Info("node ready", "node", cfg.NodeName, "driver", drv.Name(), "listen", cfg.ListenAddress, "internalIP", internalIP)
	collectOrphans(ctx, client, cfg.NodeName, provider, log)

	<-n.Done()
	if err := n.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// collectOrphans removes VMs whose pods no longer exist in the API.
func collectOrphans(ctx context.Context, client kubernetes.Interface, nodeName string, p *PodProvider, log *slog.Logger) {
	pods, err := client.CoreV1().Pods(corev1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", nodeName).String(),
	})
	if err != nil {
		log.Warn("list pods to collect orphan VMs", "err", err)
		return
	}
	live := make([]*corev1.Pod, 0, len(pods.Items))
	for i := range pods.Items {
		live = append(live, &pods.Items[i])
	}
	p.CollectOrphans(ctx, live)
}

func kubeClient(cfg Config) (kubernetes.Interface, error) {
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.Kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w (set KUBECONFIG)", cfg.Kubeconfig, err)
	}
	rc.UserAgent = "vz-node"
	// client-go's default (5 QPS, burst 10) makes a pod's status wait
	// behind its own events; these are the kubelet's defaults.
	rc.QPS, rc.Burst = cfg.KubeAPIQPS, cfg.KubeAPIBurst
	return kubernetes.NewForConfig(rc)
}

// servingTLS is the kubelet API's TLS config: the certificate files when
// set (reloaded on change), else a self-signed certificate. Client
// certificates are requested and checked by the authenticator, so token
// clients without one still reach it.
func servingTLS(cfg Config, hosts ...string) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	if cfg.CertPath != "" {
		r, err := newCertReloader(cfg.CertPath, cfg.KeyPath)
		if err != nil {
			return nil, err
		}
		t.GetCertificate = r.GetCertificate
		return t, nil
	}
	c, err := selfSignedCert(append(hosts, cfg.NodeName)...)
	if err != nil {
		return nil, fmt.Errorf("self-signed kubelet API certificate: %w", err)
	}
	t.Certificates = []tls.Certificate{*c}
	return t, nil
}

// forceDelete removes a pod whose VM is gone, as the kubelet does once a
// deleted pod's containers have stopped.
func forceDelete(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) error {
	opts := metav1.NewDeleteOptions(0)
	opts.Preconditions = metav1.NewUIDPreconditions(string(pod.UID))
	err := client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, *opts)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// recreateNode registers the node again if someone deleted it.
func recreateNode(client kubernetes.Interface, n *corev1.Node) vknode.ErrorHandler {
	return func(ctx context.Context, err error) error {
		if !apierrors.IsNotFound(err) {
			return err
		}
		fresh := n.DeepCopy()
		fresh.ResourceVersion = ""
		_, cerr := client.CoreV1().Nodes().Create(ctx, fresh, metav1.CreateOptions{})
		return cerr
	}
}

// detectIP picks the address this host uses to reach the API server.
func detectIP(client kubernetes.Interface) string {
	target := "8.8.8.8:53"
	if rc, ok := client.(*kubernetes.Clientset); ok {
		if u := rc.CoreV1().RESTClient().Get().URL(); u != nil && u.Host != "" {
			target = u.Host
			if _, _, err := net.SplitHostPort(target); err != nil {
				target = net.JoinHostPort(target, "443")
			}
		}
	}
	c, err := net.DialTimeout("udp", target, 2*time.Second)
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

func ceilCores(q Quantity) int64 { return (q.MilliValue() + 999) / 1000 }
