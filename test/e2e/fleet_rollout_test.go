package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// --max-unavailable bounds how many hosts restart at once, seen from the
// outside. Every host gets a new maxVMs (a small config change, so all
// reach their restart together and only the budget holds them back); each
// host's restart window runs from the start of its new vz-node process
// (the pid the simulated launchd spawned, its start time read from /proc)
// to the moment the test's own watch sees the node Ready with the new pod
// capacity. With K=1 the windows follow one another; with K=2 no more
// than two overlap.
func TestFleetRolloutMaxUnavailable(t *testing.T) {
	fl := startFleetLab(t)
	if out, code := fl.apply("v0.1.0-e2e"); code != 0 {
		t.Fatalf("cold apply exited %d:\n%s", code, out)
	}

	windows := fl.rollout(1, 1)
	order := byStart(windows)
	for i := 1; i < len(order); i++ {
		prev, next := windows[order[i-1]], windows[order[i]]
		if next.start < prev.ready-readyLag {
			t.Errorf("K=1: %s started restarting at %.2fs, before %s was Ready again at %.2fs", order[i], next.start, order[i-1], prev.ready)
		}
	}
	if got := maxOverlap(windows); got != 1 {
		t.Errorf("K=1: %d hosts were restarting at once", got)
	}

	windows = fl.rollout(2, 2)
	if got := maxOverlap(windows); got > 2 {
		t.Errorf("K=2: %d hosts were restarting at once", got)
	}
}

// readyLag allows for the test's watch seeing a node Ready a little after
// fleetctl's own watch did, which is when fleetctl frees the host's slot.
const readyLag = 0.1

// window is one host's restart, in seconds since boot.
type window struct{ start, ready float64 }

func (w window) String() string { return fmt.Sprintf("[%.2fs, %.2fs]", w.start, w.ready) }

// rollout applies maxVMs to every host with --max-unavailable k and
// returns each host's restart window.
func (fl *fleetLab) rollout(maxVMs, k int) map[string]window {
	t := fl.t
	t.Helper()
	extra := map[string]string{}
	for _, h := range fl.lab.Hosts {
		extra[h.Name] = fmt.Sprintf("    node:\n      maxVMs: %d\n", maxVMs)
	}
	fl.writeInventory(extra)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, err := fl.cp.Client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	ready := map[string]float64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok || ev.Type == watch.Deleted || n.Status.Capacity.Pods().Value() != int64(maxVMs) {
				continue
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					now := uptime(t)
					mu.Lock()
					if _, seen := ready[n.Name]; !seen {
						ready[n.Name] = now
					}
					mu.Unlock()
				}
			}
		}
	}()
	spawnedBefore := map[string]int{}
	for _, h := range fl.lab.Hosts {
		spawnedBefore[h.Name] = len(spawnedPIDs(h.LaunchdLog()))
	}
	out, code := fl.apply("v0.1.0-e2e", "--max-unavailable", strconv.Itoa(k))
	if code != 0 {
		t.Fatalf("apply maxVMs %d --max-unavailable %d exited %d", maxVMs, k, code)
	}
	if n := strings.Count(out, "launchctl kickstart"); n != len(fl.lab.Hosts) {
		t.Fatalf("apply maxVMs %d kickstarted %d hosts, want %d", maxVMs, n, len(fl.lab.Hosts))
	}
	w.Stop()
	<-done

	windows := map[string]window{}
	for _, h := range fl.lab.Hosts {
		pids := spawnedPIDs(h.LaunchdLog())[spawnedBefore[h.Name]:]
		if len(pids) != 1 {
			t.Fatalf("%s: launchd spawned %v during the rollout, want one new vz-node", h.Name, pids)
		}
		mu.Lock()
		r, ok := ready[h.Name]
		mu.Unlock()
		if !ok {
			t.Fatalf("%s: the watch never saw the node Ready with %d pods", h.Name, maxVMs)
		}
		windows[h.Name] = window{start: processStart(t, pids[0]), ready: r}
		if windows[h.Name].start > r {
			t.Fatalf("%s: vz-node pid %d started at %.2fs, after its node was seen Ready at %.2fs", h.Name, pids[0], windows[h.Name].start, r)
		}
	}
	t.Logf("--max-unavailable %d: restart windows (seconds since boot): %v", k, windows)
	return windows
}

var spawnedRE = regexp.MustCompile(`spawned pid (\d+)`)

// spawnedPIDs lists the pids a host's launchd log says it spawned, in order.
func spawnedPIDs(log string) []int {
	var pids []int
	for _, m := range spawnedRE.FindAllStringSubmatch(log, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	return pids
}

// uptime is the time since boot (CLOCK_BOOTTIME, 10 ms resolution), the
// clock /proc/<pid>/stat's start times count in.
func uptime(t *testing.T) float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Error(err)
		return 0
	}
	v, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		t.Error(err)
	}
	return v
}

// processStart is when pid started, in seconds since boot.
func processStart(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("vz-node pid %d: %v", pid, err)
	}
	// Fields after the command name (which may hold spaces) start at
	// field 3; starttime is field 22, in clock ticks (USER_HZ, 100).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ticks, err := strconv.ParseFloat(fields[22-3], 64)
	if err != nil {
		t.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return ticks / 100
}

// byStart lists the hosts by the start of their windows.
func byStart(ws map[string]window) []string {
	var names []string
	for n := range ws {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if ws[a].start < ws[b].start {
			return -1
		}
		return 1
	})
	return names
}

// maxOverlap is the largest number of windows open at one instant.
func maxOverlap(ws map[string]window) int {
	best := 0
	for _, w := range ws {
		// The most windows open just after some window starts.
		n := 0
		for _, o := range ws {
			if o.start <= w.start && w.start < o.ready-readyLag {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}
