package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
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
	// Stats maps each managed path that exists to "size mtime inode".
	Stats map[string]string
	// State is what fleetctl installed last time.
	State installState
	// Job is the launchd job.
	Job JobState
}

// statFunc defines st: "size mtime inode" of a file, with GNU or BSD stat.
const statFunc = `if stat -c %s / >/dev/null 2>&1; then st() { stat -c '%s %Y %i' "$1"; }; else st() { stat -f '%z %m %i' "$1"; }; fi
`

// factsScript prints one "key value" line per fact. $1 is unused, $2
// the cache dir, $3 the launchd target, $4 the state file, $5 the files
// to read (one per line), then the managed paths to stat. After the facts
// and a "--- files" line come the files read (readFilesScript's output). One round trip gathers everything, with as few
// programs started as the facts allow (a fleet applies in parallel, so
// every exec on every host counts): shell builtins parse what the
// commands print.
const factsScript = `cache=$2 target=$3 state=$4 reads=$5; shift 5
nl='
'
{ u=$(uname -nm 2>/dev/null); printf '%s\n' "hostname ${u% *}${nl}arch ${u##* }"; } &
{ out=$(sw_vers 2>/dev/null); o=
while IFS= read -r l; do case $l in
	ProductVersion:*) o="${o}macos ${l##*[	 ]}$nl";;
	BuildVersion:*) o="${o}build ${l##*[	 ]}$nl";;
esac; done <<END
$out
END
printf '%s' "$o"; } &
{ o=$(sysctl kern.hv_support kern.hv_vmm_present 2>/dev/null); printf '%s\n' "$o"; } &
{ d=$cache; while [ ! -d "$d" ]; do d=${d%/*}; [ -n "$d" ] || d=/; done
df -Pk "$d" 2>/dev/null | { read -r _; read -r _ _ _ avail _; echo "free_kb $avail"; }; } &
if [ $# -gt 0 ]; then {
	out=$(stat -c '%s %Y %i %n' / "$@" 2>/dev/null)
	case $out in [0-9]*) ;; *) out=$(stat -f '%z %m %i %N' / "$@" 2>/dev/null);; esac
	o= first=1
	while IFS= read -r l; do if [ $first = 1 ]; then first=0; else o="${o}stat $l$nl"; fi; done <<END
$out
END
	printf '%s' "$o"
} & fi
{ out=$(launchctl print "$target" 2>/dev/null); o="launchd_rc $?$nl"
while IFS= read -r l; do case $l in
	"	state = "*) o="${o}launchd_state ${l#*= }$nl";;
	"	pid = "*) o="${o}launchd_pid ${l#*= }$nl";;
esac; done <<END
$out
END
printf '%s' "$o"; } &
command -v codesign >/dev/null 2>&1 && echo "codesign yes"
command -v plutil >/dev/null 2>&1 && echo "plutil yes"
wait
if [ -f "$state" ]; then IFS= read -r s < "$state"; echo "state $s"; fi
echo "` + filesMarker + `"
set -f; IFS='
'; set -- $reads; unset IFS; set +f
` + readFilesScript

// filesMarker separates the facts from the files the facts script read.
const filesMarker = "--- files"

// hashCmd picks the fastest sha256 tool the host has: openssl (LibreSSL
// on macOS, OpenSSL elsewhere) hashes several times faster than
// coreutils' sha256sum or macOS's shasum (Perl). Each prints the hex
// digest first.
const hashCmd = `if command -v openssl >/dev/null 2>&1; then sum() { openssl dgst -sha256 -r "$1"; }
elif command -v sha256sum >/dev/null 2>&1; then sum() { sha256sum "$1"; }
else sum() { shasum -a 256 "$1"; }; fi
`

// hashScript prints "sha <sum> <path>" for each existing file.
const hashScript = hashCmd + `for f in "$@"; do if [ -f "$f" ]; then echo "sha $(sum "$f" | cut -d' ' -f1) $f"; fi; done
`

// statScript prints "stat <size> <mtime> <inode> <path>" for each file.
const statScript = statFunc + `for f in "$@"; do if [ -f "$f" ]; then echo "stat $(st "$f") $f"; fi; done
`

// gatherFacts runs the facts script (elevated: the secrets are 0600 root)
// and returns the facts and the content of the files in read that exist
// (the installed credentials, in the same round trip; the command is
// sensitive, so they never reach errors or logs).
// Files whose size, mtime and inode are what fleetctl recorded when it
// installed them keep the recorded sha256; only the others are hashed (in
// a second round trip, skipped when there are none), so an unchanged host
// is not made to hash its binary on every apply.
func gatherFacts(ctx context.Context, h remote.Host, binary, cacheDir, label, configDir string, managed, read []string) (Facts, map[string][]byte, error) {
	args := append([]string{"sh", "-c", factsScript, "sh", binary, cacheDir, "system/" + label, statePath(configDir), strings.Join(read, "\n")}, managed...)
	res, err := h.Run(ctx, remote.Cmd{Args: args, Sudo: true, Sensitive: len(read) > 0})
	if err != nil {
		return Facts{}, nil, fmt.Errorf("gathering facts: %w", err)
	}
	factsOut, filesOut, _ := strings.Cut(string(res.Stdout), "\n"+filesMarker+"\n")
	f, err := parseFacts(factsOut)
	if err != nil {
		return f, nil, err
	}
	files, err := parseReadFiles(read, []byte(filesOut))
	if err != nil {
		return f, nil, err
	}
	if rec, ok := f.State.Files[binary]; ok && rec.Stat != "" && rec.Stat == f.Stats[binary] && f.State.Version != "" {
		f.InstalledVersion = f.State.Version
	} else if _, ok := f.Stats[binary]; ok {
		// A binary that does not run has no version; one that does not
		// answer before the phase ends is the error.
		v, err := binaryVersion(ctx, h, binary)
		if err != nil && ctx.Err() != nil {
			return f, nil, fmt.Errorf("asking the installed vz-node its version: %w", err)
		}
		f.InstalledVersion = v
	}
	var hash []string
	for p, st := range f.Stats {
		if rec, ok := f.State.Files[p]; ok && rec.Stat != "" && rec.Stat == st {
			f.Hashes[p] = rec.Installed
			continue
		}
		hash = append(hash, p)
	}
	if len(hash) == 0 {
		return f, files, nil
	}
	sort.Strings(hash)
	res, err = h.Run(ctx, remote.Cmd{Args: append([]string{"sh", "-c", hashScript, "sh"}, hash...), Sudo: true})
	if err != nil {
		return f, nil, fmt.Errorf("hashing managed files: %w", err)
	}
	hashed, _ := parseFacts("arch -\n" + string(res.Stdout))
	maps.Copy(f.Hashes, hashed.Hashes)
	return f, files, nil
}

// binaryVersion asks an installed vz-node for its version.
func binaryVersion(ctx context.Context, h remote.Host, binary string) (string, error) {
	res, err := h.Run(ctx, remote.Cmd{Args: []string{binary, "version", "-o", "json"}, Sudo: true})
	if err != nil && ctx.Err() != nil {
		return "", fmt.Errorf("the installed vz-node did not answer: %w", err)
	}
	if err != nil {
		return "", fmt.Errorf("the installed vz-node does not run (is it a darwin/arm64 build?): %w", err)
	}
	f, _ := parseFacts("arch -\nversion " + strings.ReplaceAll(string(res.Stdout), "\n", ""))
	if f.InstalledVersion == "" {
		return "", fmt.Errorf("`%s version -o json` printed no version: %.200q", binary, res.Stdout)
	}
	return f.InstalledVersion, nil
}

// statFiles returns "size mtime inode" of each existing file.
func statFiles(ctx context.Context, h remote.Host, files []string) (map[string]string, error) {
	res, err := h.Run(ctx, remote.Cmd{Args: append([]string{"sh", "-c", statScript, "sh"}, files...), Sudo: true})
	if err != nil {
		return nil, fmt.Errorf("stat of installed files: %w", err)
	}
	f, _ := parseFacts("arch -\n" + string(res.Stdout))
	return f.Stats, nil
}

func parseFacts(out string) (Facts, error) {
	f := Facts{Hashes: map[string]string{}, Stats: map[string]string{}}
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
		case "kern.hv_support:":
			f.HVSupport = val
		case "kern.hv_vmm_present:":
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
		case "stat":
			// size mtime inode path (the path may hold spaces)
			if parts := strings.SplitN(val, " ", 4); len(parts) == 4 {
				f.Stats[parts[3]] = strings.Join(parts[:3], " ")
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
