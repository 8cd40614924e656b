package fleet

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vzfleet/vzfleet/fleet/remote"
)

// Facts is what fleetctl learns about a host before deciding anything.
type Facts struct {
	Hostname     string // sysctl kern.hostname (uname -n)
	MacOSVersion string // sysctl kern.osproductversion (sw_vers -productVersion)
	MacOSBuild   string // sysctl kern.osversion (sw_vers -buildVersion)
	Arch         string // sysctl hw.machine (uname -m)
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

// factsScript prints the facts in sections, each after a line
// "<marker> <name>" (the marker is random per run, so no output can fake
// one): the sysctl values the facts need, df of the image cache's volume,
// launchctl print of the job, "key value" lines the shell itself knows
// (launchctl's exit code, which tools exist), the stat of the managed
// files and of the files to read (GNU's, or BSD's when GNU's fails), and
// last the files to read (readFilesScript's output): the installed
// credentials and fleetctl's state file. $1 is the cache dir (an absolute
// path), $2 the launchd target, $3 the files to read (one per line), $4
// the marker, then the paths to stat.
//
// A fleet applies in parallel, so every process on every host counts: one
// round trip runs one program per fact (sysctl, df, launchctl, stat, and
// cat for the files), with no subshells, and no file is read by the
// shell's read (byte by byte in dash); fleetctl parses what they print.
const factsScript = `cache=$1 target=$2 reads=$3 m=$4; shift 4
printf '\n%s sysctl\n' "$m"
sysctl ` + factsSysctls + ` 2>/dev/null
d=$cache; while [ ! -d "$d" ]; do d=${d%/*}; [ -n "$d" ] || d=/; done
printf '\n%s df\n' "$m"
df -Pk "$d" 2>/dev/null
printf '\n%s launchctl\n' "$m"
launchctl print "$target" 2>/dev/null
rc=$?
printf '\n%s facts\nlaunchd_rc %s\n' "$m" "$rc"
command -v codesign >/dev/null 2>&1 && echo "codesign yes"
command -v plutil >/dev/null 2>&1 && echo "plutil yes"
n=$#; for f do if [ -f "$f" ]; then set -- "$@" "$f"; fi; done; shift $n
if [ $# -gt 0 ]; then
	printf '\n%s stat\n' "$m"
	stat -c '%s %Y %i %n' "$@" 2>/dev/null || { printf '\n%s stat\n' "$m"; stat -f '%z %m %i %N' "$@" 2>/dev/null; }
fi
printf '\n%s files\n' "$m"
set -f; IFS='
'; set -- $reads; unset IFS; set +f
` + readFilesScript

// factsSysctls are the sysctl names the facts read; the macOS versions
// that can run macOS VMs (12 and later) have all of them.
const factsSysctls = "kern.hostname hw.machine kern.osproductversion kern.osversion kern.hv_support kern.hv_vmm_present"

// legacyFactsScript is for a host whose sysctl did not tell its
// architecture and macOS version (not a Mac, or an old one): uname's
// "hostname arch", then sw_vers when there is one.
const legacyFactsScript = `uname -nm; sw_vers 2>/dev/null; exit 0`

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

// gatherFacts runs the facts script (elevated: the secrets are 0600 root)
// and returns the facts and the content of the files in read that exist
// (the installed credentials, in the same round trip; the command is
// sensitive, so they never reach errors or logs). fleetctl's state file
// comes in the same way.
// Files whose size, mtime and inode are what fleetctl recorded when it
// installed them keep the recorded sha256; only the others are hashed (in
// a second round trip, skipped when there are none), so an unchanged host
// is not made to hash its binary on every apply.
func gatherFacts(ctx context.Context, h remote.Host, binary, cacheDir, label, configDir string, managed, read []string) (Facts, map[string][]byte, error) {
	marker := "vzfleet-" + rand.Text()
	state, sensitive := statePath(configDir), len(read) > 0
	read = append(slices.Clip(read), state)
	args := append([]string{"sh", "-c", factsScript, "sh", cacheDir, "system/" + label, strings.Join(read, "\n"), marker}, managed...)
	var readOnly []string
	for _, p := range read {
		if !slices.Contains(managed, p) {
			readOnly = append(readOnly, p)
			args = append(args, p)
		}
	}
	res, err := h.Run(ctx, remote.Cmd{Args: args, Sudo: true, Sensitive: sensitive})
	if err != nil {
		return Facts{}, nil, fmt.Errorf("gathering facts: %w", err)
	}
	f, filesOut, err := parseFacts(res.Stdout, marker)
	if err != nil {
		return f, nil, err
	}
	if f.Arch == "" || f.MacOSVersion == "" {
		res, err := h.Run(ctx, remote.Cmd{Args: []string{"sh", "-c", legacyFactsScript}})
		if err != nil {
			return f, nil, fmt.Errorf("gathering facts (uname, sw_vers): %w", err)
		}
		f.parseLegacy(string(res.Stdout))
		if f.Arch == "" {
			return f, nil, fmt.Errorf("facts: the host printed no architecture; is it a POSIX system with uname? output: %.200q", res.Stdout)
		}
	}
	files, err := parseReadFiles(read, filesOut, f.Stats)
	if err != nil {
		return f, nil, err
	}
	for _, p := range readOnly {
		delete(f.Stats, p) // stat'ed for its size only
	}
	if f.State, err = decodeState(files[state]); err != nil {
		return f, nil, err
	}
	delete(files, state)
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
	hashed := newFacts()
	if err := hashed.parseLines(string(res.Stdout)); err != nil {
		return f, nil, fmt.Errorf("hashing managed files: %w", err)
	}
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
	var v struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(res.Stdout, &v) != nil || v.Version == "" {
		return "", fmt.Errorf("`%s version -o json` printed no version: %.200q", binary, res.Stdout)
	}
	return v.Version, nil
}

func newFacts() Facts {
	f := Facts{Hashes: map[string]string{}, Stats: map[string]string{}}
	f.State, _ = decodeState(nil)
	return f
}

// parseFacts reads factsScript's output: its sections, each after a line
// "<marker> <name>". It returns the facts and what came after the "files"
// section's line (readFilesScript's output, raw bytes).
func parseFacts(out []byte, marker string) (Facts, []byte, error) {
	f := newFacts()
	f.FreeDiskBytes = -1
	head, files, found := bytes.Cut(out, []byte("\n"+marker+" files\n"))
	if !found {
		return f, nil, fmt.Errorf("facts: the output ends early (no files section); got %.200q", head)
	}
	launchdRC := -1
	for _, sec := range strings.Split(string(head), "\n"+marker+" ")[1:] {
		name, body, _ := strings.Cut(sec, "\n")
		for l := range strings.Lines(body) {
			l = strings.TrimRight(l, "\r\n")
			switch name {
			case "sysctl":
				f.parseSysctl(l)
			case "df":
				// Filesystem 1024-blocks Used Available Capacity Mounted on
				if fields := strings.Fields(l); len(fields) >= 6 && fields[0] != "Filesystem" {
					if kb, err := strconv.ParseInt(fields[3], 10, 64); err == nil && kb >= 0 && kb <= math.MaxInt64/1024 {
						f.FreeDiskBytes = kb * 1024
					}
				}
			case "launchctl":
				// Only the service's own properties: one tab deep.
				if v, ok := strings.CutPrefix(l, "\tstate = "); ok {
					f.Job.State = v
				} else if v, ok := strings.CutPrefix(l, "\tpid = "); ok {
					f.Job.PID, _ = strconv.Atoi(v)
				}
			case "stat":
				// The lines of a failed attempt are not of stat's form.
				f.parseStat(l)
			case "facts":
				if v, ok := strings.CutPrefix(l, "launchd_rc "); ok {
					launchdRC, _ = strconv.Atoi(v)
				} else if err := f.parseLines(l); err != nil {
					return f, nil, err
				}
			}
		}
	}
	f.Job.Loaded = launchdRC == 0
	return f, files, nil
}

// parseSysctl reads one line of macOS's `sysctl name...`: "name: value".
func (f *Facts) parseSysctl(l string) {
	name, val, ok := strings.Cut(l, ": ")
	if !ok {
		return
	}
	dst := map[string]*string{
		"kern.hostname":         &f.Hostname,
		"hw.machine":            &f.Arch,
		"kern.osproductversion": &f.MacOSVersion,
		"kern.osversion":        &f.MacOSBuild,
		"kern.hv_support":       &f.HVSupport,
		"kern.hv_vmm_present":   &f.InVM,
	}
	if p, ok := dst[name]; ok {
		*p = strings.TrimSpace(val)
	}
}

// parseLegacy reads legacyFactsScript's output: uname's "hostname arch",
// then sw_vers's "Key:<tab>value" lines.
func (f *Facts) parseLegacy(out string) {
	first, rest, _ := strings.Cut(out, "\n")
	if host, arch, ok := strings.Cut(strings.TrimSpace(first), " "); ok {
		f.Hostname, f.Arch = cmp.Or(f.Hostname, host), cmp.Or(f.Arch, arch)
	}
	for l := range strings.Lines(rest) {
		key, val, _ := strings.Cut(l, ":")
		switch val = strings.TrimSpace(val); key {
		case "ProductVersion":
			f.MacOSVersion = val
		case "BuildVersion":
			f.MacOSBuild = val
		}
	}
}

// parseLines reads "key value" lines: what the shell prints in the facts
// section ("codesign yes", "plutil yes", "state <json>") and what
// hashScript and installedScript print ("sha <sum> <path>", "stat <size>
// <mtime> <inode> <path>").
func (f *Facts) parseLines(out string) error {
	for l := range strings.Lines(out) {
		key, val, _ := strings.Cut(strings.TrimRight(l, "\r\n"), " ")
		switch key {
		case "codesign":
			f.Codesign = true
		case "plutil":
			f.Plutil = true
		case "sha":
			sum, p, ok := strings.Cut(val, " ")
			if ok && len(sum) == 64 {
				f.Hashes[p] = sum
			}
		case "stat":
			f.parseStat(val)
		}
	}
	return nil
}

// parseStat records a line "size mtime inode path" (the path may hold
// spaces) in f.Stats; a line not of that form is ignored.
func (f *Facts) parseStat(l string) {
	parts := strings.SplitN(l, " ", 4)
	if len(parts) != 4 || parts[3] == "" {
		return
	}
	for _, n := range parts[:3] {
		if n == "" || strings.Trim(n, "0123456789") != "" {
			return
		}
	}
	f.Stats[parts[3]] = strings.Join(parts[:3], " ")
}
