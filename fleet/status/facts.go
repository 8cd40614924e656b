package status

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/inventory"
)

// Facts is what one SSH poll learns about a host.
type Facts struct {
	MacOS string
	// FreeDiskBytes on the image cache volume; -1 when unknown.
	FreeDiskBytes int64
	// AgentVersion is the installed vz-node's version ("" when none runs).
	AgentVersion string
	// JobLoaded: launchd knows the vz-node job; JobState and JobPID are
	// from `launchctl print`.
	JobLoaded bool
	JobState  string
	JobPID    int
}

// Launchd describes the vz-node job in a few words.
func (f Facts) Launchd() string {
	switch {
	case !f.JobLoaded:
		return "not loaded"
	case f.JobPID > 0:
		return fmt.Sprintf("%s (pid %d)", strings.TrimSpace(f.JobState), f.JobPID)
	case f.JobState != "":
		return f.JobState
	default:
		return "loaded"
	}
}

// Gatherer polls one host. Gather must return soon after ctx ends: the
// poller's timeout and concurrency cap rely on it.
type Gatherer interface {
	Gather(ctx context.Context, h inventory.Host) (Facts, error)
}

// Detailer fetches what the host detail screen shows; it is slower and
// only asked for one host at a time.
type Detailer interface {
	Detail(ctx context.Context, h inventory.Host) (HostDetail, error)
}

// HostDetail is the host detail screen's text from the host itself.
type HostDetail struct {
	// LaunchctlPrint is `launchctl print system/<label>`.
	LaunchctlPrint string
	// LogTail is the end of vz-node's log.
	LogTail string
}

// factsScript prints one "key value" line per fact in one round trip,
// without sudo: status only reads. $1 is the vz-node binary, $2 the image
// cache directory, $3 the launchd service target.
const factsScript = `bin=$1 cache=$2 target=$3
echo "macos $(sw_vers -productVersion 2>/dev/null)"
d=$cache; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "free_kb $(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
if [ -x "$bin" ]; then echo "version $("$bin" version -o json 2>/dev/null | tr -d '\n')"; fi
out=$(launchctl print "$target" 2>/dev/null); rc=$?
echo "launchd_rc $rc"
printf '%s\n' "$out" | sed -n -e 's/^	state = /launchd_state /p' -e 's/^	pid = /launchd_pid /p'
`

// ParseFacts reads the facts script's output.
func ParseFacts(out string) (Facts, error) {
	f := Facts{FreeDiskBytes: -1}
	seen := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), " ")
		val = strings.TrimSpace(val)
		switch key {
		case "macos":
			f.MacOS = val
		case "free_kb":
			if kb, err := strconv.ParseInt(val, 10, 64); err == nil && kb >= 0 && kb < 1<<52 {
				f.FreeDiskBytes = kb * 1024
			}
		case "version":
			var v struct {
				Version string `json:"version"`
			}
			if json.Unmarshal([]byte(val), &v) == nil {
				f.AgentVersion = v.Version
			}
		case "launchd_rc":
			rc, err := strconv.Atoi(val)
			if err != nil {
				return f, fmt.Errorf("facts: bad launchctl exit status %q", val)
			}
			seen = true
			f.JobLoaded = rc == 0
		case "launchd_state":
			f.JobState = val
		case "launchd_pid":
			f.JobPID, _ = strconv.Atoi(val)
		}
	}
	if err := sc.Err(); err != nil {
		return f, fmt.Errorf("facts: reading the output: %w", err)
	}
	if !seen {
		return f, fmt.Errorf("facts: the host's shell printed no launchctl status; output: %.200q", out)
	}
	return f, nil
}

// SSHGatherer gathers facts and details over SSH, keeping one connection
// per host (remote.SSH redials a lost one).
type SSHGatherer struct {
	// Dial opens a host; DialInventoryHost with fixed options fits.
	Dial func(ctx context.Context, h inventory.Host) (remote.Host, error)

	mu    sync.Mutex
	conns map[string]remote.Host
}

func (g *SSHGatherer) conn(ctx context.Context, h inventory.Host) (remote.Host, error) {
	g.mu.Lock()
	c, ok := g.conns[h.Name]
	g.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := g.Dial(ctx, h)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns == nil {
		g.conns = map[string]remote.Host{}
	}
	if old, ok := g.conns[h.Name]; ok {
		c.Close()
		return old, nil
	}
	g.conns[h.Name] = c
	return c, nil
}

// Gather runs the facts script on the host.
func (g *SSHGatherer) Gather(ctx context.Context, h inventory.Host) (Facts, error) {
	c, err := g.conn(ctx, h)
	if err != nil {
		return Facts{}, err
	}
	res, err := c.Run(ctx, remote.Cmd{Args: []string{"sh", "-c", factsScript, "sh", h.Paths.Binary, h.Paths.CacheDir, "system/" + h.Paths.LaunchdLabel}})
	if err != nil {
		return Facts{}, fmt.Errorf("polling facts: %w", err) // remote errors name the host
	}
	f, err := ParseFacts(string(res.Stdout))
	if err != nil {
		return f, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return f, nil
}

// Detail reads `launchctl print` and the tail of vz-node's log.
func (g *SSHGatherer) Detail(ctx context.Context, h inventory.Host) (HostDetail, error) {
	c, err := g.conn(ctx, h)
	if err != nil {
		return HostDetail{}, err
	}
	var d HostDetail
	res, err := c.Run(ctx, remote.Cmd{Args: []string{"launchctl", "print", "system/" + h.Paths.LaunchdLabel}})
	d.LaunchctlPrint = strings.TrimRight(string(res.Stdout)+string(res.Stderr), "\n")
	if err != nil && res.ExitCode == 0 {
		return d, fmt.Errorf("launchctl print: %w", err)
	}
	res, err = c.Run(ctx, remote.Cmd{Args: []string{"tail", "-n", "40", h.Paths.Log}})
	d.LogTail = strings.TrimRight(string(res.Stdout)+string(res.Stderr), "\n")
	if err != nil && res.ExitCode == 0 {
		return d, fmt.Errorf("reading %s: %w", h.Paths.Log, err)
	}
	return d, nil
}

// Close closes every connection.
func (g *SSHGatherer) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, c := range g.conns {
		c.Close()
		delete(g.conns, name)
	}
}

// DialOptions are the SSH settings that do not come from the inventory.
type DialOptions struct {
	SSHConfigFile string
	// Mux, if set, lends the connections earlier runs kept open (see
	// remote.Mux); a poller keeps its own for as long as it runs.
	Mux *remote.Mux
	// ConnectTimeout caps the inventory's connect timeout (a status poll
	// should not wait long for a dead host); 0 keeps the inventory's.
	ConnectTimeout time.Duration
}

// DialInventoryHost returns a Dial function for SSHGatherer that connects
// with the host's inventory settings, verifying host keys strictly and
// trying once per poll (the next poll is the retry).
func DialInventoryHost(o DialOptions) func(ctx context.Context, h inventory.Host) (remote.Host, error) {
	return func(ctx context.Context, h inventory.Host) (remote.Host, error) {
		cfg := remote.Config{
			Name:           h.Name,
			Address:        h.SSH.Address,
			Port:           h.SSH.Port,
			User:           h.SSH.User,
			NoAgent:        !h.SSH.Agent,
			Sudo:           h.SSH.Sudo,
			SSHConfigFile:  o.SSHConfigFile,
			ConnectTimeout: h.SSH.ConnectTimeout,
			DialAttempts:   1,
			Mux:            o.Mux,
		}
		if o.ConnectTimeout > 0 && (cfg.ConnectTimeout <= 0 || cfg.ConnectTimeout > o.ConnectTimeout) {
			cfg.ConnectTimeout = o.ConnectTimeout
		}
		if h.SSH.IdentityFile != "" {
			cfg.IdentityFiles = []string{h.SSH.IdentityFile}
		}
		if h.SSH.KnownHostsFile != "" {
			cfg.KnownHostsFiles = []string{h.SSH.KnownHostsFile}
		}
		if j := h.SSH.JumpHost; j != nil {
			cfg.ProxyJump = j.Addr()
			if j.User != "" {
				cfg.ProxyJump = j.User + "@" + j.Addr()
			}
		}
		return remote.Dial(ctx, cfg)
	}
}
