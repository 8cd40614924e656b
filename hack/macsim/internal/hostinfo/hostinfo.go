// Package hostinfo answers the macOS commands that describe a host — sw_vers,
// uname, sysctl and scutil — from a small per-host JSON file, the way an
// Apple Silicon Mac answers them.
package hostinfo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// DefaultConfigPath is where a simulated host keeps its description; the
// directory is private to each host. MACSIM_HOST_CONFIG overrides it.
const DefaultConfigPath = "/var/macsim/host.json"

// ConfigEnv names the environment variable that overrides DefaultConfigPath.
const ConfigEnv = "MACSIM_HOST_CONFIG"

// Config describes one simulated Mac. Zero fields take the defaults of a
// Mac mini (2023) with an M2 Pro running macOS 15.3.
type Config struct {
	Name           string `json:"name,omitempty"`
	ProductVersion string `json:"productVersion,omitempty"`
	BuildVersion   string `json:"buildVersion,omitempty"`
	CPUs           int    `json:"cpus,omitempty"`
	MemoryBytes    int64  `json:"memoryBytes,omitempty"`
	CPUBrand       string `json:"cpuBrand,omitempty"`
	Model          string `json:"model,omitempty"`
	// HVSupport is kern.hv_support (Virtualization.framework available);
	// nil means 1.
	HVSupport *bool `json:"hvSupport,omitempty"`
	// VMMPresent is kern.hv_vmm_present: the host is itself a VM.
	VMMPresent bool `json:"vmmPresent,omitempty"`
}

// Defaults of a simulated host.
const (
	DefaultProductVersion = "15.3"
	DefaultCPUs           = 10
	DefaultMemoryBytes    = 16 << 30
	DefaultCPUBrand       = "Apple M2 Pro"
	DefaultModel          = "Mac14,12"
)

// Load reads the host description from path ("" means the environment or
// the default path). A missing file yields the defaults.
func Load(path string) (Config, error) {
	if path == "" {
		path = os.Getenv(ConfigEnv)
	}
	if path == "" {
		path = DefaultConfigPath
	}
	var c Config
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("reading the simulated host description %s: %w", path, err)
	}
	if err == nil {
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("parsing the simulated host description %s: %w", path, err)
		}
	}
	c.fill()
	return c, nil
}

func (c *Config) fill() {
	if c.ProductVersion == "" {
		c.ProductVersion = DefaultProductVersion
	}
	if c.BuildVersion == "" {
		c.BuildVersion = BuildFor(c.ProductVersion)
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	if c.CPUBrand == "" {
		c.CPUBrand = DefaultCPUBrand
	}
	if c.Model == "" {
		c.Model = DefaultModel
	}
}

// builds are the public build numbers of recent macOS releases.
var builds = map[string]string{
	"13.0": "22A380", "13.6": "22G120", "13.7": "22H123",
	"14.0": "23A344", "14.5": "23F79", "14.6": "23G80", "14.7": "23H124",
	"15.0": "24A335", "15.1": "24B83", "15.2": "24C101", "15.3": "24D60",
	"15.3.1": "24D70", "15.4": "24E248", "15.5": "24F74", "15.6": "24G84",
}

// BuildFor returns the build number of a macOS version, or a made-up one in
// Apple's format (darwin major, minor letter, number) for unknown versions.
func BuildFor(version string) string {
	if b, ok := builds[version]; ok {
		return b
	}
	major, minor := versionParts(version)
	return fmt.Sprintf("%d%c%d", DarwinMajor(major), 'A'+rune(minor%26), 100+minor)
}

func versionParts(version string) (major, minor int) {
	parts := strings.Split(version, ".")
	major, _ = strconv.Atoi(parts[0])
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major, minor
}

// DarwinMajor maps a macOS major version to its Darwin kernel major version
// (macOS 11 is Darwin 20, ..., macOS 15 is Darwin 24, macOS 26 is Darwin 25).
func DarwinMajor(macOSMajor int) int {
	if macOSMajor >= 26 {
		return macOSMajor - 1
	}
	return macOSMajor + 9
}

// DarwinRelease is `uname -r`: e.g. 24.3.0 for macOS 15.3.
func (c Config) DarwinRelease() string {
	major, minor := versionParts(c.ProductVersion)
	return fmt.Sprintf("%d.%d.0", DarwinMajor(major), minor)
}

// KernelVersion is `uname -v`.
func (c Config) KernelVersion() string {
	return fmt.Sprintf("Darwin Kernel Version %s: Thu Jan  2 20:24:23 PST 2025; root:xnu-11215.81.4~3/RELEASE_ARM64_T6020", c.DarwinRelease())
}

func (c Config) hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return c.Name
}

// SwVers implements sw_vers(1).
func SwVers(c Config, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stdout, "ProductName:\t\tmacOS\nProductVersion:\t\t%s\nBuildVersion:\t\t%s\n", c.ProductVersion, c.BuildVersion)
		return 0
	}
	for _, a := range args {
		switch strings.TrimLeft(a, "-") {
		case "productName":
			fmt.Fprintln(stdout, "macOS")
		case "productVersion":
			fmt.Fprintln(stdout, c.ProductVersion)
		case "buildVersion":
			fmt.Fprintln(stdout, c.BuildVersion)
		case "productVersionExtra":
			// Only Rapid Security Responses have an extra version.
		default:
			fmt.Fprintf(stderr, "usage: sw_vers [-productName|-productVersion|-productVersionExtra|-buildVersion]\n")
			return 1
		}
	}
	return 0
}

// Uname implements the BSD uname(1) of an Apple Silicon Mac.
func Uname(c Config, args []string, stdout, stderr io.Writer) int {
	var want []byte
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			fmt.Fprintln(stderr, "usage: uname [-amnoprsv]")
			return 1
		}
		for _, f := range a[1:] {
			if !strings.ContainsRune("amnoprsv", f) {
				fmt.Fprintf(stderr, "uname: illegal option -- %c\nusage: uname [-amnoprsv]\n", f)
				return 1
			}
			want = append(want, byte(f))
		}
	}
	has := func(f byte) bool {
		for _, w := range want {
			if w == f || w == 'a' && f != 'p' && f != 'o' {
				return true
			}
		}
		return false
	}
	if len(want) == 0 {
		want = []byte{'s'}
	}
	var out []string
	if has('s') || has('o') {
		out = append(out, "Darwin")
	}
	if has('n') {
		out = append(out, c.hostname())
	}
	if has('r') {
		out = append(out, c.DarwinRelease())
	}
	if has('v') {
		out = append(out, c.KernelVersion())
	}
	if has('m') {
		out = append(out, "arm64")
	}
	if has('p') {
		out = append(out, "arm")
	}
	fmt.Fprintln(stdout, strings.Join(out, " "))
	return 0
}

// Sysctls returns the sysctl names and values the simulated host knows.
func (c Config) Sysctls() map[string]string {
	hv := "1"
	if c.HVSupport != nil && !*c.HVSupport {
		hv = "0"
	}
	vmm := "0"
	if c.VMMPresent {
		vmm = "1"
	}
	perf := c.CPUs * 6 / 10
	ncpu := strconv.Itoa(c.CPUs)
	return map[string]string{
		"hw.ncpu":                     ncpu,
		"hw.logicalcpu":               ncpu,
		"hw.physicalcpu":              ncpu,
		"hw.activecpu":                ncpu,
		"hw.perflevel0.physicalcpu":   strconv.Itoa(perf),
		"hw.perflevel1.physicalcpu":   strconv.Itoa(c.CPUs - perf),
		"hw.memsize":                  strconv.FormatInt(c.MemoryBytes, 10),
		"hw.pagesize":                 "16384",
		"hw.model":                    c.Model,
		"hw.machine":                  "arm64",
		"hw.optional.arm64":           "1",
		"machdep.cpu.brand_string":    c.CPUBrand,
		"machdep.cpu.core_count":      ncpu,
		"machdep.cpu.thread_count":    ncpu,
		"kern.hv_support":             hv,
		"kern.hv_vmm_present":         vmm,
		"kern.ostype":                 "Darwin",
		"kern.osrelease":              c.DarwinRelease(),
		"kern.osproductversion":       c.ProductVersion,
		"kern.osversion":              c.BuildVersion,
		"kern.version":                c.KernelVersion(),
		"kern.hostname":               c.hostname(),
		"sysctl.proc_translated":      "0",
		"kern.secure_kernel":          "0",
		"hw.optional.arm.FEAT_SHA256": "1",
	}
}

// Sysctl implements the read side of sysctl(8): `sysctl [-n] name...` and
// `sysctl -a`.
func Sysctl(c Config, args []string, stdout, stderr io.Writer) int {
	vals := c.Sysctls()
	noNames, all := false, false
	var names []string
	for _, a := range args {
		switch {
		case a == "-n":
			noNames = true
		case a == "-a":
			all = true
		case a == "-an" || a == "-na":
			noNames, all = true, true
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(stderr, "sysctl: illegal option -- %s\nusage: sysctl [-bdehiNnoqx] name[=value] ...\n       sysctl [-bdehNnoqx] -a\n", strings.TrimLeft(a, "-"))
			return 1
		case strings.Contains(a, "="):
			fmt.Fprintf(stderr, "sysctl: %s: Operation not permitted\n", a[:strings.Index(a, "=")])
			return 1
		default:
			names = append(names, a)
		}
	}
	if all {
		names = names[:0]
		for k := range vals {
			names = append(names, k)
		}
		sort.Strings(names)
	}
	if len(names) == 0 {
		fmt.Fprintln(stderr, "usage: sysctl [-bdehiNnoqx] name[=value] ...\n       sysctl [-bdehNnoqx] -a")
		return 1
	}
	code := 0
	for _, n := range names {
		v, ok := vals[n]
		if !ok {
			// Prefixes list every name below them, as on macOS.
			var below []string
			for k := range vals {
				if strings.HasPrefix(k, n+".") {
					below = append(below, k)
				}
			}
			if len(below) == 0 {
				fmt.Fprintf(stderr, "sysctl: unknown oid '%s'\n", n)
				code = 1
				continue
			}
			sort.Strings(below)
			for _, k := range below {
				printSysctl(stdout, k, vals[k], noNames)
			}
			continue
		}
		printSysctl(stdout, n, v, noNames)
	}
	return code
}

func printSysctl(w io.Writer, name, value string, noNames bool) {
	if noNames {
		fmt.Fprintln(w, value)
		return
	}
	fmt.Fprintf(w, "%s: %s\n", name, value)
}

// Scutil implements `scutil --get ComputerName|LocalHostName|HostName`.
func Scutil(c Config, args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "--get" {
		fmt.Fprintln(stderr, "usage: scutil --get ComputerName|LocalHostName|HostName (macsim answers only --get)")
		return 1
	}
	switch args[1] {
	case "ComputerName", "LocalHostName":
		fmt.Fprintln(stdout, c.hostname())
		return 0
	case "HostName":
		// A Mac mini out of the box has no HostName preference set.
		fmt.Fprintln(stdout, "HostName: not set")
		return 1
	default:
		fmt.Fprintf(stdout, "%s: not set\n", args[1])
		return 1
	}
}
