package status

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vzfleet/vzfleet/inventory"
)

// RuntimeVersionPrefix: vz-node reports "vz://<version>" as the node's
// container runtime version.
const RuntimeVersionPrefix = "vz://"

// AnnotationPullProgress on a Node is vz-node's description of the image
// pull under way ("ghcr.io/…:15 42%"); absent when none is.
const AnnotationPullProgress = "vzfleet.dev/pull-progress"

// Thresholds turn ages into freshness markers.
type Thresholds struct {
	// StaleAfter: a row whose oldest source is older than this is STALE.
	StaleAfter time.Duration
	// OfflineAfter: this many failed SSH polls in a row make a host
	// OFFLINE.
	OfflineAfter int
}

// DefaultThresholds suit the default 5s poll interval.
var DefaultThresholds = Thresholds{StaleAfter: 20 * time.Second, OfflineAfter: 1}

// ForInterval scales the thresholds to a poll interval: STALE after
// three missed polls (or the given StaleAfter when larger).
func (t Thresholds) ForInterval(interval time.Duration) Thresholds {
	t.StaleAfter = max(t.StaleAfter, 3*interval)
	if t.OfflineAfter < 1 {
		t.OfflineAfter = 1
	}
	return t
}

// KubeView is what the store reads from Kubernetes.
type KubeView interface {
	// Node returns the node of that name.
	Node(name string) (*corev1.Node, bool)
	// PodsOn returns the pods bound to the node.
	PodsOn(node string) []*corev1.Pod
	// ListNodes returns every node.
	ListNodes() []*corev1.Node
	// Fresh is when the view was last known current: now while its
	// watches run, the moment they broke otherwise; zero before the first
	// sync.
	Fresh() time.Time
}

// StoreOptions configure a Store.
type StoreOptions struct {
	// DesiredVersion is the vz-node version hosts should run; "" turns
	// drift detection off.
	DesiredVersion string
	Thresholds     Thresholds
	// Kube is the Kubernetes side; nil shows SSH facts only.
	Kube KubeView
	// InventoryNodes are the node names of every host in the inventory,
	// those not shown included; a node of vz-node's not among them is a
	// stray. Nil: the shown hosts' names.
	InventoryNodes []string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Store holds the latest data about each host.
type Store struct {
	opts  StoreOptions
	hosts []inventory.Host

	mu  sync.Mutex
	ssh map[string]*sshState
}

type sshState struct {
	facts    Facts
	hasFacts bool
	lastOK   time.Time
	lastTry  time.Time
	failures int
	err      error
}

// NewStore makes a store for the hosts, in the order given.
func NewStore(hosts []inventory.Host, opts StoreOptions) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Thresholds == (Thresholds{}) {
		opts.Thresholds = DefaultThresholds
	}
	if opts.Thresholds.OfflineAfter < 1 {
		opts.Thresholds.OfflineAfter = 1
	}
	s := &Store{opts: opts, hosts: hosts, ssh: make(map[string]*sshState, len(hosts))}
	for _, h := range hosts {
		s.ssh[h.Name] = &sshState{}
	}
	return s
}

// Hosts returns the hosts the store tracks.
func (s *Store) Hosts() []inventory.Host { return s.hosts }

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.opts.Now() }

// Record stores the outcome of one SSH poll of a host that finished at at.
func (s *Store) Record(host string, f Facts, err error, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.ssh[host]
	if !ok {
		return
	}
	st.lastTry = at
	if err != nil {
		st.failures++
		st.err = err
		return
	}
	st.facts, st.hasFacts = f, true
	st.lastOK = at
	st.failures = 0
	st.err = nil
}

// Snapshot computes every row now, in inventory order, with totals.
func (s *Store) Snapshot() Snapshot {
	now := s.opts.Now()
	// Copy the SSH side under the lock and build rows outside it, so
	// polls recording results never wait for a whole snapshot.
	states := make([]sshState, len(s.hosts))
	s.mu.Lock()
	for i, h := range s.hosts {
		states[i] = *s.ssh[h.Name]
	}
	s.mu.Unlock()
	rows := make([]Row, len(s.hosts))
	for i, h := range s.hosts {
		rows[i] = s.row(h, states[i], now)
	}
	return Snapshot{Time: now, Totals: TotalsOf(rows), Rows: rows, Strays: s.strays()}
}

// strays are the nodes of vz-node's (its runtime version says so) that the
// inventory does not name, by name.
func (s *Store) strays() []Stray {
	k := s.opts.Kube
	if k == nil {
		return nil
	}
	known := s.opts.InventoryNodes
	if known == nil {
		for _, h := range s.hosts {
			known = append(known, nodeName(h))
		}
	}
	var strays []Stray
	for _, n := range k.ListNodes() {
		if !strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, RuntimeVersionPrefix) || slices.Contains(known, n.Name) {
			continue
		}
		ready := ReadyUnknown
		if c := readyCondition(n); c != nil {
			ready = string(c.Status)
		}
		strays = append(strays, Stray{Node: n.Name, Ready: ready, Cordoned: n.Spec.Unschedulable, Pods: len(k.PodsOn(n.Name))})
	}
	slices.SortFunc(strays, func(a, b Stray) int { return cmp.Compare(a.Node, b.Node) })
	return strays
}

// nodeName is the name of host h's node.
func nodeName(h inventory.Host) string { return cmp.Or(h.Node.Name, h.Name) }

func (s *Store) row(h inventory.Host, st sshState, now time.Time) Row {
	nodeName := nodeName(h)
	r := Row{
		Host:           h.Name,
		Address:        h.SSH.Addr(),
		Node:           nodeName,
		SSHReachable:   st.hasFacts && st.failures == 0,
		Ready:          NotRegistered,
		DesiredVersion: s.opts.DesiredVersion,
		VMsMax:         h.Node.MaxVMs,
		FreeDiskBytes:  -1,
		LastSeen:       st.lastOK,
		Labels:         h.Node.Labels,
		Pods:           []Pod{},
		Images:         []Image{},
	}
	if st.hasFacts {
		r.AgentVersion = st.facts.AgentVersion
		r.Launchd = st.facts.Launchd()
		r.MacOS = st.facts.MacOS
		r.FreeDiskBytes = st.facts.FreeDiskBytes
	}
	updated := st.lastOK
	if k := s.opts.Kube; k != nil {
		if n, ok := k.Node(nodeName); ok {
			s.fromNode(&r, n)
		}
		s.fromPods(&r, k.PodsOn(nodeName))
		updated = older(updated, k.Fresh())
	}
	if st.err != nil {
		r.LastError = oneLine(st.err.Error())
	}
	r.Drift = r.DesiredVersion != "" && r.AgentVersion != "" && r.AgentVersion != r.DesiredVersion
	r.Updated = updated
	switch {
	case st.failures >= s.opts.Thresholds.OfflineAfter:
		r.Freshness = Offline
	case updated.IsZero() || now.Sub(updated) > s.opts.Thresholds.StaleAfter:
		r.Freshness = Stale
	default:
		r.Freshness = Live
	}
	return r
}

func (s *Store) fromNode(r *Row, n *corev1.Node) {
	r.Ready = ReadyUnknown
	r.Cordoned = n.Spec.Unschedulable
	if c := readyCondition(n); c != nil {
		r.Ready = string(c.Status)
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			r.LastError = oneLine(c.Message)
		}
		if c.LastHeartbeatTime.After(r.LastSeen) {
			r.LastSeen = c.LastHeartbeatTime.Time
		}
	}
	if v, ok := strings.CutPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, RuntimeVersionPrefix); ok && v != "" {
		r.AgentVersion = v
	}
	if q, ok := n.Status.Capacity[corev1.ResourcePods]; ok {
		r.VMsMax = int(q.Value())
	}
	if p := n.Annotations[AnnotationPullProgress]; p != "" {
		r.PullProgress = p
	}
	// The node's labels over the inventory's: fleetctl apply sets the
	// inventory's on the node, and a filter by them works before it has.
	labels := make(map[string]string, len(r.Labels)+len(n.Labels))
	maps.Copy(labels, r.Labels)
	maps.Copy(labels, n.Labels)
	r.Labels = labels
	for _, img := range n.Status.Images {
		if len(img.Names) == 0 {
			continue
		}
		r.Images = append(r.Images, Image{Name: imageName(img.Names), SizeBytes: img.SizeBytes})
	}
	slices.SortFunc(r.Images, func(a, b Image) int { return cmp.Compare(a.Name, b.Name) })
}

// readyCondition is n's Ready condition, nil when it has none.
func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// imageName prefers a tagged name over a digest-only one.
func imageName(names []string) string {
	for _, n := range names {
		if !strings.Contains(n, "@sha256:") {
			return n
		}
	}
	return names[0]
}

func (s *Store) fromPods(r *Row, pods []*corev1.Pod) {
	for _, p := range pods {
		phase := string(p.Status.Phase)
		if p.DeletionTimestamp != nil {
			phase = "Terminating"
		}
		r.Pods = append(r.Pods, Pod{Namespace: p.Namespace, Name: p.Name, Phase: phase})
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			r.VMsUsed++
		}
	}
	slices.SortFunc(r.Pods, func(a, b Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// older is the earlier of two times, a zero time counting as oldest.
func older(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if a.Before(b) {
		return a
	}
	return b
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	return s
}
