package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/vzfleet/vzfleet/node/sidecar"
	"github.com/vzfleet/vzfleet/node/supervisor"
	"github.com/vzfleet/vzfleet/node/vm"
)

// PodProviderConfig wires a PodProvider.
type PodProviderConfig struct {
	NodeName string
	HostIP   string
	// StateDir holds one directory per pod UID (node/supervisor layout).
	StateDir        string
	DriverName      string
	DriverOptions   vm.Options
	Host            vm.HostInfo
	Allocatable     allocatable
	MaxVMs          int
	NetworkMode     vm.NetworkMode
	BridgeInterface string
	// GuestSSHPort is the guests' SSH port (22).
	GuestSSHPort int
	// AddressTimeout bounds the wait for a guest's DHCP lease.
	AddressTimeout time.Duration

	Images    ImageSource
	Overlays  Overlayer
	Addresses AddressFinder
	Guest     Guest
	Recorder  record.EventRecorder
	// Objects reads the Secrets and ConfigMaps pods reference (pull
	// secrets, env, volumes) and the Services whose variables containers
	// get; nil means pods cannot reference any and get no Service
	// variables.
	Objects Objects
	// Docker runs the pods' sidecars; nil means pods with sidecars fail.
	Docker *sidecar.Client
	// SandboxImage is the pause image of each pod's sandbox container.
	SandboxImage string
	// Launch starts the supervisor of VM id (supervisor.Launch with the
	// vz-node binary).
	Launch func(stateDir, id string) (int, error)
	// DeletePod removes a pod whose VM is gone from the API (grace period 0,
	// UID precondition), as the kubelet does.
	DeletePod func(ctx context.Context, pod *corev1.Pod) error
	Log       *slog.Logger
	Now       func() time.Time
}

// PodProvider runs each pod's VM. It implements virtual-kubelet's
// PodLifecycleHandler and PodNotifier plus the kubelet API's exec, attach,
// logs and stats (see api.go).
type PodProvider struct {
	cfg    PodProviderConfig
	slots  *slots
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	notes  *notifier

	mu      sync.Mutex
	workers map[string]*podWorker // by namespace/name
	stats   *procStats
	loops   sync.WaitGroup // the workers' loops
}

// NewPodProvider builds the provider and re-adopts the VMs recorded under
// cfg.StateDir: running ones are followed, not restarted.
func NewPodProvider(cfg PodProviderConfig) (*PodProvider, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.GuestSSHPort == 0 {
		cfg.GuestSSHPort = 22
	}
	if cfg.AddressTimeout == 0 {
		cfg.AddressTimeout = 3 * time.Minute
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "vms"), 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &PodProvider{
		cfg:     cfg,
		slots:   newSlots(cfg.MaxVMs),
		ctx:     ctx,
		cancel:  cancel,
		log:     cfg.Log,
		workers: map[string]*podWorker{},
		stats:   newProcStats(),
		notes:   newNotifier(),
	}
	// Volumes that pods finished before vz-node stopped kept for their
	// sidecars: those are gone, or orphans about to be removed.
	if err := os.RemoveAll(p.releasedVolumes()); err != nil {
		p.log.Warn("remove released volumes", "err", err)
	}
	if err := p.recover(); err != nil {
		cancel()
		return nil, err
	}
	if cfg.Docker != nil {
		go p.watchSidecars()
		go p.collectSidecarOrphans()
	}
	return p, nil
}

// Close stops the provider's goroutines and waits for the pod workers'
// loops, so the state they last recorded is on disk for the next provider.
// VMs keep running.
func (p *PodProvider) Close() {
	p.cancel()
	p.loops.Wait()
}

func key(ns, name string) string { return ns + "/" + name }

// recover loads every VM directory. Pods whose record is unreadable are
// orphans: their VM is stopped and their files removed.
func (p *PodProvider) recover() error {
	ids, err := supervisor.List(p.cfg.StateDir)
	if err != nil {
		return err
	}
	for _, id := range ids {
		dir := supervisor.Dir(p.cfg.StateDir, id)
		var rec podRecord
		if err := supervisor.ReadJSON(filepath.Join(dir, recordFile), &rec); err != nil || rec.Pod == nil {
			p.log.Warn("removing orphan VM state without a pod record", "dir", dir, "err", err)
			p.removeOrphan(dir)
			continue
		}
		w := p.newWorker(rec.Pod)
		w.view, w.run, w.resolved = rec.View, rec.Run, !rec.Unconfigured
		// Tokens may have expired while vz-node was down.
		w.renewVolumes = time.Now()
		w.mac, _ = net.ParseMAC(rec.MAC)
		st, serr := supervisor.ReadState(dir)
		switch {
		case rec.View.Final != "":
			w.stage = stTerminated
			p.start(w, event{kind: evUpdate, pod: rec.Pod})
		case serr == nil:
			// Follow the VM: a running one is adopted; one that stopped
			// (or whose supervisor died) while vz-node was down goes
			// through restartPolicy as if it had just stopped. Its slot is
			// taken now, before any waiting pod can claim it.
			p.slots.hold(w.uid)
			p.start(w, event{kind: evAdopt})
		default:
			// Never launched (or its supervisor died unrecorded): start over.
			p.start(w, event{kind: evStart})
		}
		p.log.Info("recovered pod", "pod", w.key, "uid", id, "vm", st.Phase)
	}
	return nil
}

// removeOrphan stops an orphan VM's supervisor and deletes its files.
func (p *PodProvider) removeOrphan(dir string) {
	if st, err := supervisor.ReadState(dir); err == nil && !st.Terminal() {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		if err := (supervisor.Client{Socket: supervisor.SocketPath(dir)}).Stop(ctx); err != nil {
			_ = supervisor.Kill(st.PID)
		}
		cancel()
		deadline := time.Now().Add(10 * time.Second)
		for supervisor.Alive(st.PID) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		p.log.Warn("remove orphan VM state", "dir", dir, "err", err)
	}
}

// CollectOrphans deletes the VMs of pods that no longer exist in the API
// (pods lists the pods bound to this node).
func (p *PodProvider) CollectOrphans(ctx context.Context, pods []*corev1.Pod) {
	live := map[types.UID]bool{}
	for _, pod := range pods {
		live[pod.UID] = true
	}
	p.mu.Lock()
	var orphans []*podWorker
	for _, w := range p.workers {
		if !live[types.UID(w.uid)] {
			orphans = append(orphans, w)
		}
	}
	p.mu.Unlock()
	for _, w := range orphans {
		p.log.Info("collecting orphan VM of a pod that is gone", "pod", w.key, "uid", w.uid)
		w.post(event{kind: evDelete})
	}
}

func (p *PodProvider) newWorker(pod *corev1.Pod) *podWorker {
	ctx, cancel := context.WithCancel(p.ctx)
	uid := string(pod.UID)
	w := &podWorker{
		p:      p,
		key:    key(pod.Namespace, pod.Name),
		uid:    uid,
		dir:    supervisor.Dir(p.cfg.StateDir, uid),
		log:    p.log.With("pod", key(pod.Namespace, pod.Name)),
		events: make(chan event, 32),
		ctx:    ctx,
		cancel: cancel,
		pod:    pod.DeepCopy(),
	}
	return w
}

// start registers w and runs its loop with a first event.
func (p *PodProvider) start(w *podWorker, first event) {
	p.mu.Lock()
	p.workers[w.key] = w
	p.mu.Unlock()
	// Read before the loop starts: it owns these from then on.
	pod, _ := w.snapshot()
	keep, renew := w.resolved && len(pod.Spec.Volumes) > 0, w.renewVolumes
	w.events <- first
	p.loops.Go(w.loop)
	if keep {
		go w.keepVolumes(renew)
	}
}

// finished forgets w and removes its pod from the API.
func (p *PodProvider) finished(w *podWorker) {
	p.mu.Lock()
	if p.workers[w.key] == w {
		delete(p.workers, w.key)
	}
	p.mu.Unlock()
	pod, _ := w.snapshot()
	if p.cfg.DeletePod != nil && pod.DeletionTimestamp != nil {
		ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
		defer cancel()
		if err := p.cfg.DeletePod(ctx, pod); err != nil {
			w.log.Warn("remove terminated pod from the API", "err", err)
		}
	}
}

func (p *PodProvider) worker(ns, name string) *podWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.workers[key(ns, name)]
}

// CreatePod implements node.PodLifecycleHandler. Everything happens in the
// pod's worker, which resolves the environment and writes the volumes
// first; its errors show in the pod's status, never here (virtual-kubelet
// would fail a restartPolicy Never pod for an error returned here, where
// the kubelet waits for a missing Secret).
func (p *PodProvider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	if w := p.worker(pod.Namespace, pod.Name); w != nil {
		if w.uid == string(pod.UID) {
			w.post(event{kind: evUpdate, pod: pod})
			return nil
		}
		// A new pod with the name of one still being removed.
		w.post(event{kind: evDelete})
	}
	w := p.newWorker(pod)
	w.setView(func(v *podView) {
		v.HostIP = p.cfg.HostIP
		v.Accepted = metav1.NewTime(p.cfg.Now().UTC().Truncate(time.Second))
		v.ScheduledSince = v.Accepted
		v.ReadySince = v.Accepted
		v.QOSClass = pod.Status.QOSClass
		v.WaitingReason = ReasonContainerCreating
		if len(pod.Spec.Containers) > 0 {
			v.Container, v.Image = pod.Spec.Containers[0].Name, pod.Spec.Containers[0].Image
		}
	})
	p.start(w, event{kind: evStart})
	return nil
}

// UpdatePod implements node.PodLifecycleHandler. Only metadata changes apply:
// a VM cannot change its image or size while it runs.
func (p *PodProvider) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	w := p.worker(pod.Namespace, pod.Name)
	if w == nil || w.uid != string(pod.UID) {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	w.post(event{kind: evUpdate, pod: pod})
	return nil
}

// DeletePod implements node.PodLifecycleHandler: the VM is stopped within
// the grace period and its files removed; the final status follows through
// NotifyPods.
func (p *PodProvider) DeletePod(_ context.Context, pod *corev1.Pod) error {
	w := p.worker(pod.Namespace, pod.Name)
	if w == nil || pod.UID != "" && w.uid != string(pod.UID) {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	w.post(event{kind: evDelete, pod: pod})
	return nil
}

// GetPod implements node.PodLifecycleHandler.
func (p *PodProvider) GetPod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	w := p.worker(ns, name)
	if w == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", ns, name)
	}
	pod, view := w.snapshot()
	pod.Status = renderStatus(view)
	return pod, nil
}

// GetPodStatus implements node.PodLifecycleHandler.
func (p *PodProvider) GetPodStatus(ctx context.Context, ns, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods implements node.PodLifecycleHandler. It leaves out pods still
// waiting for their environment or volumes: nothing of theirs runs, and
// virtual-kubelet's own resolver never hands such pods to a provider (its
// suite checks that they are not listed).
func (p *PodProvider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	ws := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	sort.Slice(ws, func(i, j int) bool { return ws[i].key < ws[j].key })
	pods := make([]*corev1.Pod, 0, len(ws))
	for _, w := range ws {
		w.mu.Lock()
		resolved := w.resolved
		w.mu.Unlock()
		if !resolved {
			continue
		}
		pod, view := w.snapshot()
		pod.Status = renderStatus(view)
		pods = append(pods, pod)
	}
	return pods, nil
}

// NotifyPods implements node.PodNotifier.
func (p *PodProvider) NotifyPods(ctx context.Context, f func(*corev1.Pod)) {
	p.notes.start(ctx, f)
}

func (p *PodProvider) notify(pod *corev1.Pod) { p.notes.publish(pod) }

// SlotState reports the VM slots in use, the pods waiting for one, and the
// UIDs of slot holders that no pod worker or live supervisor accounts for.
func (p *PodProvider) SlotState() (used, waiting int, leaked []string) {
	held, waiting := p.slots.snapshot()
	p.mu.Lock()
	byUID := map[string]bool{}
	for _, w := range p.workers {
		byUID[w.uid] = true
	}
	p.mu.Unlock()
	for _, uid := range held {
		if !byUID[uid] {
			leaked = append(leaked, uid)
		}
	}
	// Supervisors running for VMs no pod owns also hold a host slot.
	ids, _ := supervisor.List(p.cfg.StateDir)
	for _, id := range ids {
		if byUID[id] {
			continue
		}
		if st, err := supervisor.ReadState(supervisor.Dir(p.cfg.StateDir, id)); err == nil && !st.Terminal() && supervisor.Alive(st.PID) {
			leaked = append(leaked, id)
		}
	}
	return len(held), waiting, leaked
}

// target names the guest of VM uid for the Guest client.
func (p *PodProvider) target(uid, dir, ip string) GuestTarget {
	return GuestTarget{
		VMID:           uid,
		Addr:           net.JoinHostPort(ip, strconv.Itoa(p.cfg.GuestSSHPort)),
		KnownHostsPath: filepath.Join(dir, "known_hosts"),
	}
}

// waitAddress polls the address finder until the guest has an address.
func (p *PodProvider) waitAddress(ctx context.Context, mac net.HardwareAddr) (net.IP, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.AddressTimeout)
	defer cancel()
	for {
		ip, err := p.cfg.Addresses.Lookup(ctx, mac)
		if err == nil && ip != nil {
			return ip, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("no DHCP lease or ARP entry")
			}
			return nil, fmt.Errorf("no address for the guest with MAC %s within %s: %w", mac, p.cfg.AddressTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pullAuth reads the pod's imagePullSecrets (dockerconfigjson).
func (p *PodProvider) pullAuth(ctx context.Context, pod *corev1.Pod) []RegistryAuth {
	if p.cfg.Objects == nil {
		return nil
	}
	var out []RegistryAuth
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := p.cfg.Objects.Secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			p.log.Warn("read an image pull secret", "pod", key(pod.Namespace, pod.Name), "secret", ref.Name, "err", err)
			continue
		}
		out = append(out, parseDockerConfig(s)...)
	}
	return out
}

func parseDockerConfig(s *corev1.Secret) []RegistryAuth {
	data := s.Data[corev1.DockerConfigJsonKey]
	if len(data) == 0 {
		return nil
	}
	var cfg struct {
		Auths map[string]struct {
			Username      string `json:"username"`
			Password      string `json:"password"`
			Auth          string `json:"auth"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
	}
	if json.Unmarshal(data, &cfg) != nil {
		return nil
	}
	var out []RegistryAuth
	for reg, a := range cfg.Auths {
		ra := RegistryAuth{Registry: reg, Username: a.Username, Password: a.Password, Token: a.IdentityToken}
		if ra.Username == "" && a.Auth != "" {
			if u, pw, ok := decodeBasic(a.Auth); ok {
				ra.Username, ra.Password = u, pw
			}
		}
		out = append(out, ra)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Registry < out[j].Registry })
	return out
}
