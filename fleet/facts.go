package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/vzfleet/vzfleet/fleet/remote"
)

// Facts is what fleetctl learns about a host before deciding anything.
type Facts struct {
	Hostname     string
	MacOSVersion string // sw_vers -productVersion
	MacOSBuild   string
	Arch         string // uname -m
	// FreeDiskBytes is free space on the volume of the VM image cache (or
	// its nearest existing parent).
	FreeDiskBytes int64
	// HVSupport: sysctl kern.hv_support (the CPU and macOS offer the
	// hypervisor Virtualization.framework uses); "" when unknown.
	HVSupport string
	// InVM: sysctl kern.hv_vmm_present: the Mac is itself a virtual
	// machine, where nested virtualization is not available.
	InVM string
	// Codesign: codesign is on the PATH.
	Codesign bool
	// Plutil: plutil is on the PATH.
	Plutil bool
	// InstalledVersion is `vz-node version -o json`'s version; "" when no
	// binary is installed or it does not run.
	InstalledVersion string
	// Hashes maps each managed path that exists to its sha256.
	Hashes map[string]string
	// State is what fleetctl installed last time.
	State installState
	// Job is the launchd job.
	Job JobState
}

// factsScript prints one "key value" line per fact. $1 is the binary, $2
// the cache dir, $3 the launchd target, $4 the state file, then the
// managed paths to hash. One round trip gathers everything.
const factsScript = `
sum() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; else shasum -a 256 "$1"; fi; }
bin=$1 cache=$2 target=$3 state=$4; shift 4
echo "hostname $(hostname 2>/dev/null)"
echo "macos $(sw_vers -productVersion 2>/dev/null)"
echo "build $(sw_vers -buildVersion 2>/dev/null)"
echo "arch $(uname -m 2>/dev/null)"
echo "hv_support $(sysctl -n kern.hv_support 2>/dev/null)"
echo "hv_vmm_present $(sysctl -n kern.hv_vmm_present 2>/dev/null)"
d=$cache; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "free_kb $(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
command -v codesign >/dev/null 2>&1 && echo "codesign yes"
command -v plutil >/dev/null 2>&1 && echo "plutil yes"
if [ -x "$bin" ]; then echo "version $("$bin" version -o json 2>/dev/null | tr -d '\n')"; fi
if [ -f "$state" ]; then echo "state $(tr -d '\n' < "$state")"; fi
for f in "$@"; do if [ -f "$f" ]; then echo "sha $(sum "$f" | cut -d' ' -f1) $f"; fi; done
out=$(launchctl print "$target" 2>/dev/null); rc=$?
echo "launchd_rc $rc"
printf '%s\n' "$out" | sed -n -e 's/^	state = /launchd_state /p' -e 's/^	pid = /launchd_pid /p'
`

// gatherFacts runs the facts script (elevated: the secrets are 0600 root).
func gatherFacts(ctx context.Context, h remote.Host, binary, cacheDir, label, configDir string, managed []string) (Facts, error) {
	args := append([]string{"sh", "-c", factsScript, "sh", binary, cacheDir, "system/" + label, statePath(configDir)}, managed...)
	res, err := h.Run(ctx, remote.Cmd{Args: args, Sudo: true})
	if err != nil {
		return Facts{}, fmt.Errorf("gathering facts: %w", err)
	}
	return parseFacts(string(res.Stdout))
}

func parseFacts(out string) (Facts, error) {
	f := Facts{Hashes: map[string]string{}}
	f.State, _ = decodeState(nil)
	launchdRC := -1
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), " ")
		val = strings.TrimSpace(val)
		switch key {
		case "hostname":
			f.Hostname = val
		case "macos":
			f.MacOSVersion = val
		case "build":
			f.MacOSBuild = val
		case "arch":
			f.Arch = val
		case "hv_support":
			f.HVSupport = val
		case "hv_vmm_present":
			f.InVM = val
		case "free_kb":
			if kb, err := strconv.ParseInt(val, 10, 64); err == nil {
				f.FreeDiskBytes = kb * 1024
			} else {
				f.FreeDiskBytes = -1
			}
		case "codesign":
			f.Codesign = true
		case "plutil":
			f.Plutil = true
		case "version":
			var v struct {
				Version string `json:"version"`
			}
			if json.Unmarshal([]byte(val), &v) == nil {
				f.InstalledVersion = v.Version
			}
		case "state":
			s, err := decodeState([]byte(val))
			if err != nil {
				return f, err
			}
			f.State = s
		case "sha":
			sum, p, ok := strings.Cut(val, " ")
			if ok && len(sum) == 64 {
				f.Hashes[p] = sum
			}
		case "launchd_rc":
			launchdRC, _ = strconv.Atoi(val)
		case "launchd_state":
			f.Job.State = val
		case "launchd_pid":
			f.Job.PID, _ = strconv.Atoi(val)
		}
	}
	if err := sc.Err(); err != nil {
		return f, fmt.Errorf("reading facts: %w", err)
	}
	if f.Arch == "" {
		return f, fmt.Errorf("facts: the host printed no architecture; is it a POSIX system with uname? output: %.200q", out)
	}
	f.Job.Loaded = launchdRC == 0
	return f, nil
}
