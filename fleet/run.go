package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/inventory"
)

// Mode is how far Run goes.
type Mode int

// Modes.
const (
	// ModeApply makes the hosts match the inventory.
	ModeApply Mode = iota
	// ModePlan shows what apply would change and changes nothing.
	ModePlan
	// ModeDoctor runs the preflight checks only.
	ModeDoctor
	// ModeRetire takes the hosts out of the fleet (see retire.go).
	ModeRetire
)

// Options configure Run.
type Options struct {
	// Binary is the local vz-node (darwin/arm64) to install.
	Binary string
	// Concurrency, MaxUnavailable and ReadyTimeout override the inventory's
	// rollout settings when set.
	Concurrency    int
	MaxUnavailable int
	ReadyTimeout   time.Duration
	// Requirements the preflight checks; zero fields take DefaultRequirements.
	Requirements Requirements
	// AcceptNewHostKeys records unknown hosts' keys (trust on first use).
	AcceptNewHostKeys bool
	// SSHConfigFile is the ssh_config to honour; empty: ~/.ssh/config.
	SSHConfigFile string
	// SSHMux, if set, keeps hosts' connections open between runs.
	SSHMux *remote.Mux
	// CSRTimeout bounds the wait for a node certificate to be signed.
	CSRTimeout time.Duration
	// PhaseTimeout bounds each phase on a host (connect to service, and
	// restoring files in a rollback), so a host that hangs fails alone;
	// default 10m, negative: no bound. Waiting for Ready has a bound of its
	// own; a pre-pull fails when it makes no progress for this long.
	PhaseTimeout time.Duration
	// Out receives progress lines and plans (nil: discarded). Secrets never
	// reach it.
	Out io.Writer
	// Logger receives debug records; default slog.Default().
	Logger *slog.Logger
	// Connect opens a host; default: SSH with the inventory's settings.
	Connect func(ctx context.Context, h inventory.Host) (remote.Host, error)
	// Kube returns the operator's client for a kubeconfig path (empty:
	// $KUBECONFIG or ~/.kube/config); default: client-go's loading rules.
	Kube func(kubeconfig string) (kubernetes.Interface, error)
	// LookupEnv reads secrets from the environment; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// LaunchdPause is the pause between launchctl polls; default 500ms.
	LaunchdPause time.Duration
	// SumCacheFile keeps local files' sha256 by size, mtime and inode, so
	// the binary is not hashed on every run; default: in the user's cache
	// directory; "none": no cache.
	SumCacheFile string
	// MaxPulls caps the hosts pre-pulling their inventory images at once
	// (default 4); PullPolicy is vz-node pull's --policy for them (default
	// IfNotPresent, so re-applying does not go back to the registry);
	// InsecureRegistries are reached over plain HTTP.
	MaxPulls           int
	PullPolicy         string
	InsecureRegistries []string
	// DrainTimeout bounds how long a retire waits for a node's pods to
	// leave (default DefaultDrainTimeout); Purge makes it remove the VM
	// image cache and vz-node's log too.
	DrainTimeout time.Duration
	Purge        bool
	// DryRun makes a retire show what it would do and change nothing.
	DryRun bool
	// Unreachable retires hosts that are gone for good without
	// contacting them (see unreachablePhase).
	Unreachable bool
}

// DefaultPhaseTimeout bounds a phase on a host when Options.PhaseTimeout
// is not set: generous for uploading vz-node over a slow link, short
// enough that a hung host does not keep an apply running for hours.
const DefaultPhaseTimeout = 10 * time.Minute

// Status is a host's outcome.
type Status string

// Host outcomes.
const (
	StatusUnchanged  Status = "unchanged"
	StatusChanged    Status = "changed"
	StatusPlanned    Status = "would change"
	StatusOK         Status = "ok"
	StatusFailed     Status = "FAILED"
	StatusRolledBack Status = "ROLLED BACK"
)

// HostResult is what happened on one host.
type HostResult struct {
	Host   string
	Node   string
	Status Status
	// Phase is the phase that failed.
	Phase string
	Err   error
	Facts Facts
	// Checks are the preflight results.
	Checks []Check
	Plan   Plan
	// Version is the vz-node version the host runs at the end.
	Version string
	// Images are the pre-pulls of the inventory's images, in its order;
	// ImagesListed is how many the inventory lists for the host (0 in
	// plan and doctor modes, which pull nothing).
	Images       []PullProgress
	ImagesListed int
	Duration     time.Duration
	// Phases are the phases that ran, with their wall time.
	Phases []PhaseTime
}

// PhaseTime is how long one phase took on a host.
type PhaseTime struct {
	Phase    string
	Duration time.Duration
}

// Failed reports whether the host did not reach its desired state.
func (r HostResult) Failed() bool { return r.Status == StatusFailed || r.Status == StatusRolledBack }

// Report is the outcome for every selected host, in inventory order.
type Report struct {
	Mode  Mode
	Hosts []HostResult
}

// Run works through the hosts: every phase of mode for each host, hosts
// in parallel, one host's failure never stopping the others.
func Run(ctx context.Context, mode Mode, inv *inventory.Inventory, hosts []inventory.Host, opts Options) *Report {
	r := newRunner(mode, inv, len(hosts), opts)
	rep := &Report{Mode: mode, Hosts: make([]HostResult, len(hosts))}
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(r.concurrency, len(hosts)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rep.Hosts[i] = r.host(ctx, hosts[i])
			}
		}()
	}
	for i := range hosts {
		work <- i
	}
	close(work)
	wg.Wait()
	return rep
}

type runner struct {
	mode        Mode
	opts        Options
	concurrency int
	timeout     time.Duration
	req         Requirements
	// budget holds one token per host allowed to restart at once.
	budget chan struct{}
	// pulls holds one token per host allowed to pre-pull at once.
	pulls chan struct{}
	out   *lockedWriter
	log   *slog.Logger

	binOnce    sync.Once
	binarySum  string
	binarySize int64
	binErr     error

	scanOnce    sync.Once
	maybeSigned bool
	scanErr     error

	kubeMu   sync.Mutex
	kube     map[string]kubernetes.Interface
	clusters map[string]func() (apiServer, error)

	sharedMu    sync.Mutex
	sharedV     map[string]string
	sharedLocks map[string]*sync.Mutex
}

// shared runs fn with what an earlier host learned under key ("" for
// nothing yet) and keeps what fn returns for the next hosts. Hosts asking
// for a key nobody answered yet wait for the first, so only one does the
// work; after a failure the next host tries itself. An empty key shares
// nothing.
func (r *runner) shared(key string, fn func(known string) (string, error)) error {
	if key == "" {
		_, err := fn("")
		return err
	}
	r.sharedMu.Lock()
	l, ok := r.sharedLocks[key]
	if !ok {
		l = &sync.Mutex{}
		r.sharedLocks[key] = l
	}
	r.sharedMu.Unlock()

	l.Lock()
	if known := r.sharedValue(key); known != "" {
		l.Unlock()
		_, err := fn(known)
		return err
	}
	defer l.Unlock()
	v, err := fn("")
	if err == nil && v != "" {
		r.setShared(key, v)
	}
	return err
}

func (r *runner) sharedValue(key string) string {
	r.sharedMu.Lock()
	defer r.sharedMu.Unlock()
	return r.sharedV[key]
}

func (r *runner) setShared(key, v string) {
	r.sharedMu.Lock()
	defer r.sharedMu.Unlock()
	r.sharedV[key] = v
}

func newRunner(mode Mode, inv *inventory.Inventory, n int, opts Options) *runner {
	r := &runner{mode: mode, opts: opts, kube: map[string]kubernetes.Interface{}, clusters: map[string]func() (apiServer, error){}, sharedV: map[string]string{}, sharedLocks: map[string]*sync.Mutex{}}
	r.concurrency, r.timeout = opts.Concurrency, opts.ReadyTimeout
	unavailable := opts.MaxUnavailable
	if inv != nil {
		if r.concurrency <= 0 {
			r.concurrency = inv.Rollout.Concurrency
		}
		if r.timeout <= 0 {
			r.timeout = inv.Rollout.ReadyTimeout
		}
		if unavailable <= 0 {
			unavailable = inv.Rollout.MaxUnavailable.Of(n)
		}
	}
	r.concurrency = max(r.concurrency, 1)
	if r.timeout <= 0 {
		r.timeout = 5 * time.Minute
	}
	r.budget = make(chan struct{}, max(unavailable, 1))
	if r.opts.MaxPulls <= 0 {
		r.opts.MaxPulls = 4
	}
	r.pulls = make(chan struct{}, r.opts.MaxPulls)
	r.req = opts.Requirements
	if r.req.MinMacOS == "" {
		r.req.MinMacOS = DefaultRequirements.MinMacOS
	}
	if r.req.MinFreeDisk == 0 {
		r.req.MinFreeDisk = DefaultRequirements.MinFreeDisk
	}
	if r.opts.PhaseTimeout == 0 {
		r.opts.PhaseTimeout = DefaultPhaseTimeout
	}
	if r.opts.CSRTimeout <= 0 {
		r.opts.CSRTimeout = time.Minute
	}
	if r.opts.DrainTimeout <= 0 {
		r.opts.DrainTimeout = DefaultDrainTimeout
	}
	if r.opts.LaunchdPause <= 0 {
		r.opts.LaunchdPause = 500 * time.Millisecond
	}
	switch r.opts.SumCacheFile {
	case "":
		r.opts.SumCacheFile = defaultSumCache()
	case "none":
		r.opts.SumCacheFile = ""
	}
	if r.opts.LookupEnv == nil {
		r.opts.LookupEnv = os.LookupEnv
	}
	r.log = opts.Logger
	if r.log == nil {
		r.log = slog.Default()
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	r.out = &lockedWriter{w: out}
	if r.opts.Connect == nil {
		r.opts.Connect = r.dialSSH
	}
	if r.opts.Kube == nil {
		r.opts.Kube = defaultKube
	}
	return r
}

func (r *runner) dialSSH(ctx context.Context, h inventory.Host) (remote.Host, error) {
	cfg := remote.Config{
		Name:              h.Name,
		Address:           h.SSH.Address,
		Port:              h.SSH.Port,
		User:              h.SSH.User,
		NoAgent:           !h.SSH.Agent,
		Sudo:              h.SSH.Sudo,
		AcceptNewHostKeys: r.opts.AcceptNewHostKeys,
		SSHConfigFile:     r.opts.SSHConfigFile,
		ConnectTimeout:    h.SSH.ConnectTimeout,
		Mux:               r.opts.SSHMux,
		Logger:            r.log,
	}
	if h.SSH.IdentityFile != "" {
		cfg.IdentityFiles = []string{h.SSH.IdentityFile}
	}
	if h.SSH.KnownHostsFile != "" {
		cfg.KnownHostsFiles = []string{h.SSH.KnownHostsFile}
	}
	if j := h.SSH.JumpHost; j != nil {
		cfg.ProxyJump = fmt.Sprintf("%s@%s", j.User, j.Addr())
		if j.User == "" {
			cfg.ProxyJump = j.Addr()
		}
	}
	return remote.Dial(ctx, cfg)
}

func (r *runner) kubeFor(h inventory.Host) (kubernetes.Interface, error) {
	r.kubeMu.Lock()
	defer r.kubeMu.Unlock()
	if c, ok := r.kube[h.Cluster.OperatorKubeconfig]; ok {
		return c, nil
	}
	c, err := r.opts.Kube(h.Cluster.OperatorKubeconfig)
	if err != nil {
		return nil, err
	}
	r.kube[h.Cluster.OperatorKubeconfig] = c
	return c, nil
}

// cluster is the API server and CA of an operator kubeconfig, read once
// for all the hosts that share it.
func (r *runner) cluster(kubeconfig string) (server string, caPEM []byte, err error) {
	r.kubeMu.Lock()
	read, ok := r.clusters[kubeconfig]
	if !ok {
		read = sync.OnceValues(func() (apiServer, error) {
			server, caPEM, err := operatorCluster(kubeconfig)
			return apiServer{server, caPEM}, err
		})
		r.clusters[kubeconfig] = read
	}
	r.kubeMu.Unlock()
	a, err := read()
	return a.server, a.caPEM, err
}

type apiServer struct {
	server string
	caPEM  []byte
}

// binaryInfo is the vz-node binary's sha256 and size, from the local sum
// cache while the file is unchanged: planning needs no more.
func (r *runner) binaryInfo() (string, int64, error) {
	r.binOnce.Do(func() {
		if r.opts.Binary == "" {
			r.binErr = errors.New("no vz-node binary given: pass --vz-node PATH (a darwin/arm64 build, e.g. bin/darwin-arm64/vz-node from make build)")
			return
		}
		var version string
		r.binarySum, r.binarySize, version, r.binErr = fileSHA256(r.opts.Binary, r.opts.SumCacheFile)
		if r.binErr != nil {
			r.binErr = fmt.Errorf("reading the vz-node binary to install: %w", r.binErr)
			return
		}
		if version != "" {
			r.setShared("version "+r.binarySum, version)
		}
	})
	return r.binarySum, r.binarySize, r.binErr
}

// openBinary opens the binary for one host's upload. Its content streams
// from the file (through the page cache), not from a copy in memory, so no
// host waits for the whole file to be read before it starts sending; each
// host checks what arrived against the planned sha256.
func (r *runner) openBinary() (*os.File, int64, error) {
	sum, size, err := r.binaryInfo()
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(r.opts.Binary)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the vz-node binary to install: %w", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		f.Close()
		return nil, 0, fmt.Errorf("the vz-node binary %s changed during the apply (planned with sha256 %s, %d bytes); run apply again", r.opts.Binary, sum, size)
	}
	return f, size, nil
}

// binaryMaybeSigned tells whether the binary's bytes hold the
// virtualization entitlement's name (a binary without it cannot be signed
// with it), reading the file once for every host.
func (r *runner) binaryMaybeSigned() (bool, error) {
	r.scanOnce.Do(func() {
		r.maybeSigned, r.scanErr = fileContains(r.opts.Binary, []byte(virtualizationEntitlement))
		if r.scanErr != nil {
			r.scanErr = fmt.Errorf("reading the vz-node binary to install: %w", r.scanErr)
		}
	})
	return r.maybeSigned, r.scanErr
}

// fileContains tells whether the file holds needle, reading it in pieces.
func fileContains(name string, needle []byte) (bool, error) {
	f, err := os.Open(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	keep := 0 // bytes carried over: a match may straddle two reads
	for {
		n, err := io.ReadFull(f, buf[keep:])
		data := buf[:keep+n]
		if bytes.Contains(data, needle) {
			return true, nil
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		keep = min(len(needle)-1, len(data))
		copy(buf, data[len(data)-keep:])
	}
}

// lockedWriter serialises progress lines from parallel hosts.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, args...)
}

func (l *lockedWriter) write(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
}
