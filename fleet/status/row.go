package status

import (
	"time"
)

// Freshness says how far a row can be trusted.
type Freshness string

// Freshness markers, from best to worst.
const (
	// Live: both sources answered recently.
	Live Freshness = "LIVE"
	// Stale: the newest data is older than Thresholds.StaleAfter (or none
	// has arrived yet).
	Stale Freshness = "STALE"
	// Offline: the last Thresholds.OfflineAfter SSH polls failed.
	Offline Freshness = "OFFLINE"
)

// Node readiness as the row shows it.
const (
	ReadyTrue    = "True"
	ReadyFalse   = "False"
	ReadyUnknown = "Unknown"
	// NotRegistered: Kubernetes has no node of that name.
	NotRegistered = "-"
)

// Pod is one VM pod on a host.
type Pod struct {
	Namespace string `json:"namespace" yaml:"namespace"`
	Name      string `json:"name" yaml:"name"`
	Phase     string `json:"phase" yaml:"phase"`
}

// Image is one VM image in the host's cache (node.status.images).
type Image struct {
	Name      string `json:"name" yaml:"name"`
	SizeBytes int64  `json:"sizeBytes" yaml:"sizeBytes"`
}

// Row is everything the status screen knows about one host.
type Row struct {
	Host    string `json:"host" yaml:"host"`
	Address string `json:"address" yaml:"address"`
	Node    string `json:"node" yaml:"node"`
	// SSHReachable: the last SSH poll succeeded.
	SSHReachable bool `json:"sshReachable" yaml:"sshReachable"`
	// Ready is the node's Ready condition (ReadyTrue, ReadyFalse,
	// ReadyUnknown) or NotRegistered.
	Ready string `json:"ready" yaml:"ready"`
	// Cordoned: the node takes no new pods (kubectl cordon, or a
	// fleetctl retire whose drain failed); its free slots are not counted.
	Cordoned bool `json:"cordoned" yaml:"cordoned"`
	// AgentVersion is the vz-node version: the node's reported runtime
	// version when registered, else the installed binary's (SSH).
	AgentVersion   string `json:"agentVersion" yaml:"agentVersion"`
	DesiredVersion string `json:"desiredVersion,omitempty" yaml:"desiredVersion,omitempty"`
	// Drift: the agent runs a version other than the desired one.
	Drift bool `json:"drift" yaml:"drift"`
	// Launchd is the vz-node job's state ("running (pid 42)", "not loaded").
	Launchd string `json:"launchd" yaml:"launchd"`
	MacOS   string `json:"macos,omitempty" yaml:"macos,omitempty"`
	// VMsUsed counts pods holding a VM slot; VMsMax is the node's pods
	// capacity (the inventory's maxVMs before the node registers).
	VMsUsed int   `json:"vmsUsed" yaml:"vmsUsed"`
	VMsMax  int   `json:"vmsMax" yaml:"vmsMax"`
	Pods    []Pod `json:"pods" yaml:"pods"`
	// FreeDiskBytes on the image cache volume; -1 when unknown.
	FreeDiskBytes int64   `json:"freeDiskBytes" yaml:"freeDiskBytes"`
	Images        []Image `json:"images" yaml:"images"`
	// PullProgress is an image pull under way ("" when none).
	PullProgress string `json:"pullProgress,omitempty" yaml:"pullProgress,omitempty"`
	LastError    string `json:"lastError,omitempty" yaml:"lastError,omitempty"`
	// LastSeen is the newest sign of life: an SSH poll that succeeded or
	// the node's Ready heartbeat. Zero when never seen.
	LastSeen  time.Time `json:"lastSeen" yaml:"lastSeen"`
	Freshness Freshness `json:"freshness" yaml:"freshness"`
	// Updated is when the row's data was last refreshed from its sources.
	Updated time.Time         `json:"updated" yaml:"updated"`
	Labels  map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// ReadyText is the node's readiness as the table shows it, with
// ",cordoned" on a cordoned node (kubectl's SchedulingDisabled).
func (r Row) ReadyText() string {
	if r.Cordoned {
		return r.Ready + ",cordoned"
	}
	return r.Ready
}

// VMsRunning counts the row's pods in phase Running.
func (r Row) VMsRunning() int {
	n := 0
	for _, p := range r.Pods {
		if p.Phase == "Running" {
			n++
		}
	}
	return n
}

// Problems scores what is wrong with the host; 0 means healthy. Higher
// scores sort first.
func (r Row) Problems() int {
	score := 0
	switch r.Freshness {
	case Offline:
		score += 100
	case Stale:
		score += 10
	}
	if r.Ready != ReadyTrue {
		score += 50
	}
	if r.Drift {
		score += 20
	}
	if r.LastError != "" {
		score += 10
	}
	if r.FreeDiskBytes >= 0 && r.FreeDiskBytes < LowDiskBytes {
		score += 5
	}
	return score
}

// LowDiskBytes is the free space below which a host counts as a problem.
const LowDiskBytes = 50 << 30

// Totals is the header line over the rows.
type Totals struct {
	Hosts      int `json:"hosts" yaml:"hosts"`
	Ready      int `json:"ready" yaml:"ready"`
	Live       int `json:"live" yaml:"live"`
	Stale      int `json:"stale" yaml:"stale"`
	Offline    int `json:"offline" yaml:"offline"`
	VMsRunning int `json:"vmsRunning" yaml:"vmsRunning"`
	// SlotsFree counts free VM slots on Ready nodes.
	SlotsFree int `json:"slotsFree" yaml:"slotsFree"`
	Drifted   int `json:"drifted" yaml:"drifted"`
}

// Snapshot is the fleet at one moment.
type Snapshot struct {
	Time   time.Time `json:"time" yaml:"time"`
	Totals Totals    `json:"totals" yaml:"totals"`
	Rows   []Row     `json:"hosts" yaml:"hosts"`
	// Strays are the nodes a vz-node registered that no host in the
	// inventory names: a host taken out of the inventory without fleetctl
	// retire, whose vz-node may still run.
	Strays []Stray `json:"strays,omitempty" yaml:"strays,omitempty"`
}

// Stray is a node of vz-node's that the inventory does not name.
type Stray struct {
	Node     string `json:"node" yaml:"node"`
	Ready    string `json:"ready" yaml:"ready"`
	Cordoned bool   `json:"cordoned" yaml:"cordoned"`
	// Pods counts the pods bound to it.
	Pods int `json:"pods" yaml:"pods"`
}

// TotalsOf sums rows.
func TotalsOf(rows []Row) Totals {
	var t Totals
	for _, r := range rows {
		t.Hosts++
		switch r.Freshness {
		case Live:
			t.Live++
		case Stale:
			t.Stale++
		case Offline:
			t.Offline++
		}
		if r.Drift {
			t.Drifted++
		}
		t.VMsRunning += r.VMsRunning()
		if r.Ready == ReadyTrue {
			t.Ready++
			if !r.Cordoned {
				t.SlotsFree += max(r.VMsMax-r.VMsUsed, 0)
			}
		}
	}
	return t
}
