package node

import (
	"context"
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

// procStats remembers the previous sample per process so CPU usage can be
// reported as a rate (nanocores) as well as a counter.
type procStats struct {
	mu   sync.Mutex
	last map[int]procSample
}

func newProcStats() *procStats { return &procStats{last: map[int]procSample{}} }

// sample reads pid and returns it with its CPU rate since the last reading.
func (s *procStats) sample(pid int) (procSample, uint64, bool) {
	cur, err := readProc(pid)
	if err != nil {
		return procSample{}, 0, false
	}
	s.mu.Lock()
	prev, ok := s.last[pid]
	s.last[pid] = cur
	s.mu.Unlock()
	var nano uint64
	if ok && cur.At.After(prev.At) && cur.CPUSeconds >= prev.CPUSeconds {
		nano = uint64((cur.CPUSeconds - prev.CPUSeconds) / cur.At.Sub(prev.At).Seconds() * 1e9)
	}
	return cur, nano, true
}

// vmUsage is one running VM's resource use.
type vmUsage struct {
	Namespace, Pod, UID, Container string
	StartedAt                      time.Time
	Sample                         procSample
	NanoCores                      uint64
}

// usage samples every running VM's supervisor: on macOS it hosts the
// Virtualization.framework VM, under the sim the guest's processes.
func (p *PodProvider) usage() []vmUsage {
	p.mu.Lock()
	ws := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	var out []vmUsage
	for _, w := range ws {
		pod, view := w.snapshot()
		if view.Stage != stageRunning {
			continue
		}
		st, err := supervisor.ReadState(w.dir)
		if err != nil || st.Terminal() {
			continue
		}
		s, nano, ok := p.stats.sample(st.PID)
		if !ok {
			continue
		}
		out = append(out, vmUsage{Namespace: pod.Namespace, Pod: pod.Name, UID: string(pod.UID), Container: view.Container, StartedAt: view.StartedAt.Time, Sample: s, NanoCores: nano})
	}
	return out
}

// GetStatsSummary implements the kubelet's /stats/summary.
func (p *PodProvider) GetStatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
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
	for _, u := range p.usage() {
		cpu := &statsv1alpha1.CPUStats{Time: now, UsageNanoCores: u64(u.NanoCores), UsageCoreNanoSeconds: u64(uint64(u.Sample.CPUSeconds * 1e9))}
		mem := &statsv1alpha1.MemoryStats{Time: now, WorkingSetBytes: u64(u.Sample.RSSBytes), RSSBytes: u64(u.Sample.RSSBytes), UsageBytes: u64(u.Sample.RSSBytes)}
		sum.Pods = append(sum.Pods, statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: u.Pod, Namespace: u.Namespace, UID: u.UID},
			StartTime: metav1.NewTime(u.StartedAt),
			CPU:       cpu,
			Memory:    mem,
			Containers: []statsv1alpha1.ContainerStats{{
				Name: u.Container, StartTime: metav1.NewTime(u.StartedAt), CPU: cpu, Memory: mem,
			}},
		})
	}
	return sum, nil
}

func u64(v uint64) *uint64 { return &v }

// GetMetricsResource implements the kubelet's /metrics/resource, the
// endpoint metrics-server scrapes for `kubectl top`.
func (p *PodProvider) GetMetricsResource(context.Context) ([]*dto.MetricFamily, error) {
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
	for _, u := range p.usage() {
		pl := lbl("namespace", u.Namespace, "pod", u.Pod)
		cl := lbl("container", u.Container, "namespace", u.Namespace, "pod", u.Pod)
		add(podCPU, u.Sample.CPUSeconds, pl)
		add(podMem, float64(u.Sample.RSSBytes), pl)
		add(cCPU, u.Sample.CPUSeconds, cl)
		add(cMem, float64(u.Sample.RSSBytes), cl)
		add(cStart, float64(u.StartedAt.Unix()), cl)
	}
	scrape := fam("scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", gauge)
	zero := 0.0
	scrape.Metric = []*dto.Metric{{Gauge: &dto.Gauge{Value: &zero}}}
	return []*dto.MetricFamily{cCPU, cMem, cStart, nodeCPU, nodeMem, podCPU, podMem, scrape}, nil
}
