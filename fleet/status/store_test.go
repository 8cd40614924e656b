package status

import (
	"errors"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/inventory"
)

func rowOf(t *testing.T, snap Snapshot, host string) Row {
	t.Helper()
	for _, r := range snap.Rows {
		if r.Host == host {
			return r
		}
	}
	t.Fatalf("no row for %s", host)
	return Row{}
}

func TestRowsMergeKubernetesAndSSH(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	snap := fleetFixture(c).Snapshot()
	tests := []struct {
		host      string
		fresh     Freshness
		ready     string
		agent     string
		drift     bool
		vms       string
		launchd   string
		freeGiB   int64
		lastError string
	}{
		{"mini-01", Live, ReadyTrue, "0.4.0", false, "2/2", "running (pid 412)", 412, ""},
		{"mini-02", Live, ReadyTrue, "0.3.0", true, "0/2", "running (pid 412)", 31, ""},
		{"mini-03", Offline, ReadyFalse, "0.4.0", false, "0/2", "running (pid 412)", 200, "host mini-03: dial tcp 10.20.0.13:22: connect: no route to host"},
		{"mini-04", Live, NotRegistered, "", false, "0/2", "not loaded", 800, ""},
	}
	for _, tt := range tests {
		r := rowOf(t, snap, tt.host)
		if r.Freshness != tt.fresh || r.Ready != tt.ready || r.AgentVersion != tt.agent || r.Drift != tt.drift ||
			Columns[7].Value(r, snap.Time) != tt.vms || r.Launchd != tt.launchd || r.FreeDiskBytes != tt.freeGiB<<30 || r.LastError != tt.lastError {
			t.Errorf("%s: got %s ready=%s agent=%q drift=%v vms=%d/%d launchd=%q free=%d err=%q",
				tt.host, r.Freshness, r.Ready, r.AgentVersion, r.Drift, r.VMsUsed, r.VMsMax, r.Launchd, r.FreeDiskBytes, r.LastError)
		}
	}
	r1 := rowOf(t, snap, "mini-01")
	if len(r1.Pods) != 3 || r1.Pods[0].Name != "build-1" || r1.VMsRunning() != 1 {
		t.Errorf("mini-01 pods = %+v", r1.Pods)
	}
	if len(r1.Images) != 1 || r1.Images[0].Name != "ghcr.io/cirruslabs/macos-sequoia-base:latest" {
		t.Errorf("mini-01 images = %+v, want the tagged name", r1.Images)
	}
	if r1.Labels["kubernetes.io/os"] != "darwin" || r1.Labels["vzfleet.dev/pool"] != "ci" || len(r1.Labels) != 2 {
		t.Errorf("mini-01 labels %v, want the node's over the inventory's", r1.Labels)
	}
	if !r1.LastSeen.Equal(t0.Add(-time.Second)) {
		t.Errorf("mini-01 last seen %v, want the newer of SSH and heartbeat", r1.LastSeen)
	}
	if r2 := rowOf(t, snap, "mini-02"); r2.PullProgress != "macos-sonoma:latest 42%" || r2.Labels["vzfleet.dev/pool"] != "release" || !r2.Cordoned || r2.ReadyText() != "True,cordoned" {
		t.Errorf("mini-02 pull %q labels %v cordoned %v (%q)", r2.PullProgress, r2.Labels, r2.Cordoned, r2.ReadyText())
	}
	if r1.Cordoned {
		t.Error("mini-01 is not cordoned")
	}
	// The cordoned mini-02's two free slots take no pods.
	want := Totals{Hosts: 4, Ready: 2, Live: 3, Offline: 1, VMsRunning: 1, SlotsFree: 0, Drifted: 1}
	if snap.Totals != want {
		t.Errorf("totals = %+v, want %+v", snap.Totals, want)
	}
}

// TestFreshnessTransitions walks one host through LIVE -> STALE ->
// OFFLINE -> LIVE.
func TestFreshnessTransitions(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	kubeFresh := t0
	kube := &fakeKube{fresh: func() time.Time { return kubeFresh }}
	s := NewStore([]inventory.Host{host("mini-01", "10.0.0.1", nil)}, StoreOptions{Kube: kube, Now: c.Now,
		Thresholds: Thresholds{StaleAfter: 10 * time.Second, OfflineAfter: 2}})
	fail := errors.New("connection refused")
	steps := []struct {
		name  string
		do    func()
		want  Freshness
		sshOK bool
	}{
		{"no data yet", func() {}, Stale, false},
		{"first poll", func() { s.Record("mini-01", facts("1", 100), nil, c.Now()) }, Live, true},
		{"within StaleAfter", func() { c.Advance(10 * time.Second) }, Live, true},
		{"past StaleAfter without polls", func() { c.Advance(time.Second) }, Stale, true},
		{"fresh poll", func() { s.Record("mini-01", facts("1", 100), nil, c.Now()); kubeFresh = c.Now() }, Live, true},
		{"kube watch broke long ago", func() { c.Advance(11 * time.Second); s.Record("mini-01", facts("1", 100), nil, c.Now()) }, Stale, true},
		{"kube back", func() { kubeFresh = c.Now() }, Live, true},
		{"one failed poll", func() { s.Record("mini-01", Facts{}, fail, c.Now()) }, Live, false},
		{"second failed poll", func() { s.Record("mini-01", Facts{}, fail, c.Now()) }, Offline, false},
		{"still failing much later", func() { c.Advance(time.Hour); kubeFresh = c.Now(); s.Record("mini-01", Facts{}, fail, c.Now()) }, Offline, false},
		{"back", func() { s.Record("mini-01", facts("1", 100), nil, c.Now()) }, Live, true},
	}
	for _, st := range steps {
		st.do()
		r := s.Snapshot().Rows[0]
		if r.Freshness != st.want || r.SSHReachable != st.sshOK {
			t.Fatalf("%s: freshness %s ssh %v, want %s ssh %v", st.name, r.Freshness, r.SSHReachable, st.want, st.sshOK)
		}
	}
}

func TestThresholdsForInterval(t *testing.T) {
	t.Parallel()
	got := Thresholds{StaleAfter: 5 * time.Second}.ForInterval(10 * time.Second)
	if got.StaleAfter != 30*time.Second || got.OfflineAfter != 1 {
		t.Errorf("ForInterval = %+v", got)
	}
	if got := DefaultThresholds.ForInterval(time.Second); got != DefaultThresholds {
		t.Errorf("a short interval changed the defaults: %+v", got)
	}
}

func TestRecordIgnoresUnknownHosts(t *testing.T) {
	t.Parallel()
	s := NewStore([]inventory.Host{host("a", "10.0.0.1", nil)}, StoreOptions{})
	s.Record("b", facts("1", 1), nil, time.Now())
	if snap := s.Snapshot(); len(snap.Rows) != 1 || snap.Rows[0].Host != "a" {
		t.Errorf("rows = %+v", snap.Rows)
	}
}
