package node

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/vzfleet/vzfleet/node/supervisor"
)

// procSample is one reading of a process tree's resource use.
type procSample struct {
	CPUSeconds float64 // cumulative user+system time
	RSSBytes   uint64
	At         time.Time
}

// procStats remembers the previous CPU reading per process or container so
// CPU usage can be reported as a rate (nanocores) as well as a counter.
type procStats struct {
	mu   sync.Mutex
	last map[string]procSample
}

func newProcStats() *procStats { return &procStats{last: map[string]procSample{}} }

// sample reads pid and returns it with its CPU rate since the last reading.
func (s *procStats) sample(pid int) (procSample, uint64, bool) {
	cur, err := readProc(pid)
	if err != nil {
		return procSample{}, 0, false
	}
	return cur, s.rate("pid:"+strconv.Itoa(pid), cur), true
}

// rate records cur for key and returns the CPU rate since key's last one.
func (s *procStats) rate(key string, cur procSample) uint64 {
	s.mu.Lock()
	prev, ok := s.last[key]
	s.last[key] = cur
	s.mu.Unlock()
	if ok && cur.At.After(prev.At) && cur.CPUSeconds >= prev.CPUSeconds {
		return uint64((cur.CPUSeconds - prev.CPUSeconds) / cur.At.Sub(prev.At).Seconds() * 1e9)
	}
	return 0
}

// containerUsage is one running container's resource use: the VM's
// supervisor process tree, or a sidecar as Docker counts it.
type containerUsage struct {
	Name      string
	StartedAt time.Time
	Sample    procSample
	NanoCores uint64
}

// podUsage is a pod's running containers' resource use.
type podUsage struct {
	Namespace, Pod, UID string
	StartedAt           time.Time
	Containers          []containerUsage
}

// total sums the pod's containers.
func (u podUsage) total() (cpuSeconds float64, nanoCores, rss uint64) {
	for _, c := range u.Containers {
		cpuSeconds += c.Sample.CPUSeconds
		nanoCores += c.NanoCores
		rss += c.Sample.RSSBytes
	}
	return cpuSeconds, nanoCores, rss
}

// usage samples every running VM's supervisor (on macOS it hosts the
// Virtualization.framework VM, under the sim the guest's processes) and
// every running sidecar.
func (p *PodProvider) usage(ctx context.Context) []podUsage {
	p.mu.Lock()
	ws := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	sort.Slice(ws, func(i, j int) bool { return ws[i].key < ws[j].key })
	var out []podUsage
	for _, w := range ws {
		pod, view := w.snapshot()
		u := podUsage{Namespace: pod.Namespace, Pod: pod.Name, UID: string(pod.UID), StartedAt: view.Accepted.Time}
		if view.Stage == stageRunning {
			if st, err := supervisor.ReadState(w.dir); err == nil && !st.Terminal() {
				if s, nano, ok := p.stats.sample(st.PID); ok {
					u.Containers = append(u.Containers, containerUsage{Name: view.Container, StartedAt: view.StartedAt.Time, Sample: s, NanoCores: nano})
				}
			}
		}
		for _, sc := range append(slices.Clone(view.InitContainers), view.Sidecars...) {
			if sc.State.Running == nil || p.cfg.Docker == nil {
				continue
			}
			id := strings.TrimPrefix(sc.ContainerID, "docker://")
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			d, err := p.cfg.Docker.Stats(ctx, id)
			cancel()
			if err != nil {
				continue
			}
			s := procSample{CPUSeconds: float64(d.CPUNanoseconds) / 1e9, RSSBytes: d.MemoryBytes, At: d.Time}
			u.Containers = append(u.Containers, containerUsage{Name: sc.Name, StartedAt: sc.State.Running.StartedAt.Time, Sample: s, NanoCores: p.stats.rate("docker:"+id, s)})
		}
		if len(u.Containers) > 0 {
			out = append(out, u)
		}
	}
	return out
}

// GetStatsSummary implements the kubelet's /stats/summary.
func (p *PodProvider) GetStatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	now := metav1.NewTime(p.cfg.Now())
	host := readHostUsage()
	sum := &statsv1alpha1.Summary{
		Node: statsv1alpha1.NodeStats{
			NodeName:  p.cfg.NodeName,
			StartTime: metav1.NewTime(host.Boot),
			CPU:       &statsv1alpha1.CPUStats{Time: now, UsageCoreNanoSeconds: u64(uint64(host.CPUSeconds * 1e9))},
			Memory:    &statsv1alpha1.MemoryStats{Time: now, WorkingSetBytes: u64(host.MemoryUsedBytes), AvailableBytes: u64(host.MemoryAvailableBytes)},
		},
	}
	for _, u := range p.usage(ctx) {
		cpuSeconds, nano, rss := u.total()
		ps := statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: u.Pod, Namespace: u.Namespace, UID: u.UID},
			StartTime: metav1.NewTime(u.StartedAt),
			CPU:       &statsv1alpha1.CPUStats{Time: now, UsageNanoCores: u64(nano), UsageCoreNanoSeconds: u64(uint64(cpuSeconds * 1e9))},
			Memory:    &statsv1alpha1.MemoryStats{Time: now, WorkingSetBytes: u64(rss), RSSBytes: u64(rss), UsageBytes: u64(rss)},
		}
		for _, c := range u.Containers {
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
				Name: c.Name, StartTime: metav1.NewTime(c.StartedAt),
				CPU:    &statsv1alpha1.CPUStats{Time: now, UsageNanoCores: u64(c.NanoCores), UsageCoreNanoSeconds: u64(uint64(c.Sample.CPUSeconds * 1e9))},
				Memory: &statsv1alpha1.MemoryStats{Time: now, WorkingSetBytes: u64(c.Sample.RSSBytes), RSSBytes: u64(c.Sample.RSSBytes), UsageBytes: u64(c.Sample.RSSBytes)},
			})
		}
		sum.Pods = append(sum.Pods, ps)
	}
	return sum, nil
}

func u64(v uint64) *uint64 { return &v }

// GetMetricsResource implements the kubelet's /metrics/resource, the
// endpoint metrics-server scrapes for `kubectl top`.
func (p *PodProvider) GetMetricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	ts := p.cfg.Now().UnixMilli()
	host := readHostUsage()
	gauge := dto.MetricType_GAUGE
	counter := dto.MetricType_COUNTER
	fam := func(name, help string, t dto.MetricType) *dto.MetricFamily {
		return &dto.MetricFamily{Name: &name, Help: &help, Type: &t}
	}
	lbl := func(kv ...string) []*dto.LabelPair {
		var out []*dto.LabelPair
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, &dto.LabelPair{Name: &kv[i], Value: &kv[i+1]})
		}
		return out
	}
	add := func(f *dto.MetricFamily, v float64, labels []*dto.LabelPair) {
		m := &dto.Metric{Label: labels, TimestampMs: &ts}
		if f.GetType() == dto.MetricType_COUNTER {
			m.Counter = &dto.Counter{Value: &v}
		} else {
			m.Gauge = &dto.Gauge{Value: &v}
		}
		f.Metric = append(f.Metric, m)
	}
	nodeCPU := fam("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", counter)
	add(nodeCPU, host.CPUSeconds, nil)
	nodeMem := fam("node_memory_working_set_bytes", "Current working set of the node in bytes", gauge)
	add(nodeMem, float64(host.MemoryUsedBytes), nil)
	podCPU := fam("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", counter)
	podMem := fam("pod_memory_working_set_bytes", "Current working set of the pod in bytes", gauge)
	cCPU := fam("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", counter)
	cMem := fam("container_memory_working_set_bytes", "Current working set of the container in bytes", gauge)
	cStart := fam("container_start_time_seconds", "Start time of the container since unix epoch in seconds", gauge)
	for _, u := range p.usage(ctx) {
		pl := lbl("namespace", u.Namespace, "pod", u.Pod)
		cpuSeconds, _, rss := u.total()
		add(podCPU, cpuSeconds, pl)
		add(podMem, float64(rss), pl)
		for _, c := range u.Containers {
			cl := lbl("container", c.Name, "namespace", u.Namespace, "pod", u.Pod)
			add(cCPU, c.Sample.CPUSeconds, cl)
			add(cMem, float64(c.Sample.RSSBytes), cl)
			add(cStart, float64(c.StartedAt.Unix()), cl)
		}
	}
	scrape := fam("scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", gauge)
	zero := 0.0
	scrape.Metric = []*dto.Metric{{Gauge: &dto.Gauge{Value: &zero}}}
	return []*dto.MetricFamily{cCPU, cMem, cStart, nodeCPU, nodeMem, podCPU, podMem, scrape}, nil
}
