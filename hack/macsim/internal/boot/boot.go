// Package boot turns a fresh mount and UTS namespace into a simulated Mac's
// view of the machine — the host's own directories bind-mounted over
// /Library, /usr/local/bin, /var/db, ...; the macOS command stand-ins laid
// over /usr/bin and /usr/sbin; its host name — and then runs its launchd.
// test/harness/machost writes the Config and starts `macsim boot` inside
// `unshare --mount --uts --propagation private`.
package boot

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Mount is one mount made at boot, in order.
type Mount struct {
	// Kind is "bind" (Source over Target) or "overlay" (a read-only union of
	// Lower, first on top, mounted at Target).
	Kind   string   `json:"kind"`
	Source string   `json:"source,omitempty"`
	Target string   `json:"target"`
	Lower  []string `json:"lower,omitempty"`
}

// Config is what `macsim boot --config FILE` reads.
type Config struct {
	Hostname string  `json:"hostname"`
	Mounts   []Mount `json:"mounts"`
	// Launchd settings; the paths are as seen after the mounts.
	LaunchdSocket      string        `json:"launchdSocket"`
	LaunchdStateDir    string        `json:"launchdStateDir"`
	LaunchdLog         string        `json:"launchdLog"`
	LaunchdThrottle    time.Duration `json:"launchdThrottle"`
	LaunchdExitTimeout time.Duration `json:"launchdExitTimeout"`
	// LaunchdLoadDirs are bootstrapped when launchd starts.
	LaunchdLoadDirs []string `json:"launchdLoadDirs,omitempty"`
}

// Load reads a boot configuration.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("boot config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("boot config %s: %w", path, err)
	}
	return &c, nil
}
