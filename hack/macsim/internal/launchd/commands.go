package launchd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Exit codes and messages of launchctl. The numbers are launchd's error
// codes (`launchctl error <n>` prints the message); which command returns
// which was checked against reports from real Macs:
//   - bootstrap of a loaded service: "Bootstrap failed: 5: Input/output error"
//     (DeterminateSystems/nix-installer#1157, lslqtz/bclm_loop#2 on 15.3.1;
//     kxn/codex-remote-feishu#916: also while a booted-out job is still exiting)
//   - bootout system/<label> of an unloaded service: "Boot-out failed: 3: No
//     such process"; bootout system <plist> of one: "Boot-out failed: 5:
//     Input/output error" (nix-installer#1148, nix-community/home-manager#9585)
//   - kickstart/print of an unknown service: exit 113, `Could not find service
//     "<label>" in domain for system` (nix-installer#960, NixOS/nix#6499)
//   - a disabled service: "119: Service is disabled" (NixOS/nix#6499)
//   - a gui/<uid> domain from a headless SSH session: "125: Domain does not
//     support specified action" (NousResearch/hermes-agent#23387,
//     buildkite/docs#1770 for enable)
//   - usage errors exit 64 (pingdotgg/t3code#11995: bootout --wait)
//   - 133 "Multiple errors were returned; see stderr", 134 "Service cannot
//     load in requested session" (launchd's error table; chilcote/outset#108)
const (
	ExitIO         = 5
	ExitNoProcess  = 3
	ExitNoService  = 113
	ExitDisabled   = 119
	ExitDomain     = 125
	ExitMultiple   = 133
	ExitUsage      = 64
	ExitNoSuchFile = 2
)

var errorText = map[int]string{
	1: "Operation not permitted", 2: "No such file or directory", 3: "No such process",
	5: "Input/output error", 17: "File exists", 22: "Invalid argument", 37: "Operation already in progress",
	64: "Command line usage error", 78: "Function not implemented",
	107: "Malformed bundle", 108: "Invalid path", 109: "Invalid property list",
	110: "Invalid or missing service identifier", 111: "Invalid or missing Program/ProgramArguments",
	112: "Could not find specified domain", 113: "Could not find specified service",
	114: "The specified username does not exist", 115: "The specified group does not exist",
	119: "Service is disabled", 122: "Path had bad ownership/permissions", 124: "Domain is tearing down",
	125: "Domain does not support specified action", 133: "Multiple errors were returned; see stderr",
	134: "Service cannot load in requested session", 137: "Service does not support the specified action",
}

// ErrorText is launchd's message for an error code (`launchctl error`).
func ErrorText(code int) string {
	if s, ok := errorText[code]; ok {
		return s
	}
	return "Unknown error: " + fmt.Sprint(code)
}

const usageText = `Usage: launchctl <subcommand> ... | help [subcommand]
Subcommands supported by macsim:
	bootstrap       Bootstraps a domain or a service into a domain.
	bootout         Tears down a domain or removes a service from a domain.
	enable          Enables an existing service.
	disable         Disables an existing service.
	kickstart       Forces an existing service to start.
	print           Prints a description of a domain or service.
	print-disabled  Prints which services are disabled.
	list            Lists information about services.
	load/unload     Legacy: bootstrap/bootout a plist.
	error           Prints a description of an error.
	version         Prints the launchd version.
`

type out struct {
	stdout, stderr bytes.Buffer
	code           int
}

func (o *out) errf(code int, format string, args ...any) {
	fmt.Fprintf(&o.stderr, format+"\n", args...)
	if o.code == 0 {
		o.code = code
	}
}

// Handle runs one launchctl command.
func (d *Daemon) Handle(req Request) Response {
	o := &out{}
	args := req.Args
	if len(args) == 0 {
		o.stderr.WriteString(usageText)
		o.code = ExitUsage
		return o.resp()
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) || req.Cwd == "" {
			return p
		}
		return filepath.Join(req.Cwd, p)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "bootstrap":
		if len(rest) < 2 {
			o.errf(ExitUsage, "Usage: launchctl bootstrap <domain-target> [service-path, service-path2, ...]")
			break
		}
		if !d.domainOK(o, rest[0], "Bootstrap failed") {
			break
		}
		paths := make([]string, len(rest)-1)
		for i, p := range rest[1:] {
			paths[i] = abs(p)
		}
		d.bootstrap(o, paths, "Bootstrap failed")
	case "load":
		var paths []string
		for _, a := range rest {
			if !strings.HasPrefix(a, "-") {
				paths = append(paths, abs(a))
			}
		}
		if len(paths) == 0 {
			o.errf(ExitUsage, "Usage: launchctl load <service-path, service-path2, ...>")
			break
		}
		d.bootstrap(o, paths, "Load failed")
	case "bootout", "unload":
		d.bootout(o, cmd, rest, abs)
	case "enable", "disable":
		if len(rest) != 1 {
			o.errf(ExitUsage, "Usage: launchctl %s <service-target>", cmd)
			break
		}
		label, ok := d.serviceTarget(o, rest[0], "Could not "+cmd+" service")
		if !ok {
			break
		}
		d.mu.Lock()
		d.disabled[label] = cmd == "disable"
		d.saveOverrides()
		d.mu.Unlock()
	case "kickstart":
		d.kickstart(o, rest)
	case "print":
		d.print(o, rest)
	case "print-disabled":
		if len(rest) != 1 || !d.domainOK(o, rest[0], "Could not print disabled services") {
			if o.code == 0 {
				o.errf(ExitUsage, "Usage: launchctl print-disabled <domain-target>")
			}
			break
		}
		d.mu.Lock()
		labels := make([]string, 0, len(d.disabled))
		for l := range d.disabled {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		fmt.Fprintf(&o.stdout, "disabled services = {\n")
		for _, l := range labels {
			state := "enabled"
			if d.disabled[l] {
				state = "disabled"
			}
			fmt.Fprintf(&o.stdout, "\t%q => %s\n", l, state)
		}
		fmt.Fprintf(&o.stdout, "}\n")
		d.mu.Unlock()
	case "list":
		d.list(o, rest)
	case "error":
		for _, a := range rest {
			var n int
			if _, err := fmt.Sscanf(a, "%d", &n); err != nil {
				o.errf(ExitUsage, "Usage: launchctl error <code>")
				break
			}
			fmt.Fprintf(&o.stdout, "%d: %s\n", n, ErrorText(n))
		}
	case "version":
		fmt.Fprintln(&o.stdout, "Darwin Bootstrapper Version 7.0.0: macsim (simulated launchd)")
	case "help":
		o.stdout.WriteString(usageText)
	default:
		o.errf(ExitUsage, "Unrecognized subcommand: %s\n%s", cmd, usageText)
	}
	return o.resp()
}

func (o *out) resp() Response {
	return Response{Stdout: o.stdout.String(), Stderr: o.stderr.String(), Exit: o.code}
}

// domainOK accepts the system domain; other domains do not exist for a
// daemon-only host reached over SSH.
func (d *Daemon) domainOK(o *out, target, failed string) bool {
	if target == "system" || target == "system/" {
		return true
	}
	for _, p := range []string{"gui/", "user/", "login/", "pid/"} {
		if strings.HasPrefix(target, p) {
			o.errf(ExitDomain, "%s: %d: %s", failed, ExitDomain, ErrorText(ExitDomain))
			return false
		}
	}
	o.errf(ExitUsage, "Unrecognized target specifier.")
	return false
}

// serviceTarget parses system/<label>.
func (d *Daemon) serviceTarget(o *out, target, failed string) (string, bool) {
	domain, label, ok := strings.Cut(target, "/")
	if domain == "system" && ok && label != "" && !strings.Contains(label, "/") {
		return label, true
	}
	if domain == "gui" || domain == "user" || domain == "login" || domain == "pid" {
		o.errf(ExitDomain, "%s: %d: %s", failed, ExitDomain, ErrorText(ExitDomain))
		return "", false
	}
	o.errf(ExitUsage, "Unrecognized target specifier.\n<service-target> takes a form of <domain-target>/<service-id>.")
	return "", false
}

func (d *Daemon) bootstrap(o *out, paths []string, failed string) {
	type failure struct {
		path string
		code int
	}
	var fails []failure
	for _, p := range paths {
		code := d.bootstrapOne(p)
		if code != 0 {
			fails = append(fails, failure{p, code})
		}
	}
	switch {
	case len(fails) == 1:
		o.errf(fails[0].code, "%s: %d: %s", failed, fails[0].code, ErrorText(fails[0].code))
	case len(fails) > 1:
		for _, f := range fails {
			fmt.Fprintf(&o.stderr, "%s: %s\n", f.path, ErrorText(f.code))
		}
		o.errf(ExitMultiple, "%s: %d: %s", failed, ExitMultiple, ErrorText(ExitMultiple))
	}
}

func (d *Daemon) bootstrapOne(path string) int {
	job, err := LoadJob(path)
	if err != nil {
		d.opts.Log.Printf("launchd: bootstrap %s: %v", path, err)
		if errors.Is(err, os.ErrNotExist) {
			return ExitNoSuchFile
		}
		return ExitIO
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, loaded := d.services[job.Label]; loaded {
		d.opts.Log.Printf("launchd: bootstrap %s: service %s is already loaded (or still exiting)", path, job.Label)
		return ExitIO
	}
	if d.isDisabled(job) {
		return ExitDisabled
	}
	s := &service{job: job, state: "not running"}
	d.services[job.Label] = s
	d.opts.Log.Printf("launchd: bootstrapped %s from %s", job.Label, path)
	if job.RunAtLoad || job.KeepAlive.Wanted() {
		d.spawnLocked(s)
	}
	return 0
}

func (d *Daemon) bootout(o *out, cmd string, rest []string, abs func(string) string) {
	failed := "Boot-out failed"
	if cmd == "unload" {
		failed = "Unload failed"
	}
	var labels []string
	byPath := false
	switch {
	case cmd == "unload":
		for _, a := range rest {
			if !strings.HasPrefix(a, "-") {
				labels = append(labels, abs(a))
			}
		}
		byPath = true
	case len(rest) == 1 && strings.Contains(strings.TrimSuffix(rest[0], "/"), "/"):
		label, ok := d.serviceTarget(o, rest[0], failed)
		if !ok {
			return
		}
		labels = []string{label}
	case len(rest) >= 2:
		if !d.domainOK(o, rest[0], failed) {
			return
		}
		for _, p := range rest[1:] {
			labels = append(labels, abs(p))
		}
		byPath = true
	case len(rest) == 1:
		// Tearing down the whole system domain would stop every daemon.
		if d.domainOK(o, rest[0], failed) {
			o.errf(1, "%s: 1: %s (macsim refuses to tear down the system domain)", failed, ErrorText(1))
		}
		return
	default:
		o.errf(ExitUsage, "Usage: launchctl bootout <domain-target> [service-path1, service-path2, ...] | <service-target>")
		return
	}
	for _, l := range labels {
		notLoaded := ExitNoProcess
		if byPath {
			// A plist path names its service by the Label inside.
			notLoaded = ExitIO
			job, err := LoadJob(l)
			if err != nil {
				d.opts.Log.Printf("launchd: bootout %s: %v", l, err)
				o.errf(ExitIO, "%s: %d: %s", failed, ExitIO, ErrorText(ExitIO))
				continue
			}
			l = job.Label
		}
		d.mu.Lock()
		s, ok := d.services[l]
		if !ok || s.bootingOut {
			d.mu.Unlock()
			o.errf(notLoaded, "%s: %d: %s", failed, notLoaded, ErrorText(notLoaded))
			continue
		}
		// bootout returns once the job is signalled; the service stays
		// registered (state SIGTERMed) until its process has exited.
		s.bootingOut, s.stopping = true, true
		if s.restart != nil {
			s.restart.Stop()
		}
		if s.cmd == nil {
			delete(d.services, l)
		} else {
			s.state = "SIGTERMed"
			d.stopLocked(s)
		}
		d.opts.Log.Printf("launchd: bootout %s", l)
		d.mu.Unlock()
	}
}

func (d *Daemon) kickstart(o *out, rest []string) {
	kill, printPID := false, false
	var target string
	for _, a := range rest {
		if strings.HasPrefix(a, "-") {
			for _, f := range a[1:] {
				switch f {
				case 'k':
					kill = true
				case 'p':
					printPID = true
				case 's':
				default:
					o.errf(ExitUsage, "Usage: launchctl kickstart [-k] [-p] [-s] <service-target>")
					return
				}
			}
			continue
		}
		target = a
	}
	if target == "" {
		o.errf(ExitUsage, "Usage: launchctl kickstart [-k] [-p] [-s] <service-target>")
		return
	}
	label, ok := d.serviceTarget(o, target, fmt.Sprintf("Could not kickstart service %q", strings.TrimPrefix(target, "gui/")))
	if !ok {
		return
	}
	d.mu.Lock()
	s, ok := d.services[label]
	if !ok || s.bootingOut {
		d.mu.Unlock()
		o.errf(ExitNoService, "Could not find service %q in domain for system", label)
		return
	}
	if d.isDisabled(s.job) {
		d.mu.Unlock()
		o.errf(ExitDisabled, "Could not kickstart service %q: %d: %s", label, ExitDisabled, ErrorText(ExitDisabled))
		return
	}
	if s.cmd != nil && kill {
		s.stopping = true
		done := d.stopLocked(s)
		d.mu.Unlock()
		<-done
		d.mu.Lock()
		s.stopping = false
		if d.services[label] != s || s.bootingOut {
			d.mu.Unlock()
			o.errf(ExitNoService, "Could not find service %q in domain for system", label)
			return
		}
	}
	if s.restart != nil {
		s.restart.Stop()
	}
	if s.cmd == nil {
		d.spawnLocked(s)
	}
	pid := s.pid
	d.mu.Unlock()
	if printPID && pid != 0 {
		fmt.Fprintf(&o.stdout, "service spawned with pid: %d\n", pid)
	}
}

func (d *Daemon) print(o *out, rest []string) {
	if len(rest) != 1 {
		o.errf(ExitUsage, "Usage: launchctl print <domain-target> | <service-target>")
		return
	}
	t := strings.TrimSuffix(rest[0], "/")
	if t == "system" {
		d.printDomain(o)
		return
	}
	label, ok := d.serviceTarget(o, t, "Could not print service")
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.services[label]
	if !ok {
		o.errf(ExitNoService, "Could not find service %q in domain for system", label)
		return
	}
	d.describe(&o.stdout, s)
}

func (d *Daemon) printDomain(o *out) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := &o.stdout
	fmt.Fprintf(w, "system = {\n\ttype = system\n\thandle = 0\n\tactive count = %d\n\tservice count = %d\n\n\tservices = {\n", d.activeLocked(), len(d.services))
	for _, l := range d.labelsLocked() {
		s := d.services[l]
		fmt.Fprintf(w, "\t\t%8d\t%-10s\t%s\n", s.pid, s.status(), l)
	}
	fmt.Fprintf(w, "\t}\n\n\tdisabled services = {\n")
	keys := make([]string, 0, len(d.disabled))
	for l := range d.disabled {
		keys = append(keys, l)
	}
	sort.Strings(keys)
	for _, l := range keys {
		state := "enabled"
		if d.disabled[l] {
			state = "disabled"
		}
		fmt.Fprintf(w, "\t\t%q => %s\n", l, state)
	}
	fmt.Fprintf(w, "\t}\n}\n")
}

func (d *Daemon) activeLocked() int {
	n := 0
	for _, s := range d.services {
		if s.cmd != nil {
			n++
		}
	}
	return n
}

func (d *Daemon) labelsLocked() []string {
	labels := make([]string, 0, len(d.services))
	for l := range d.services {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	return labels
}

// describe writes `launchctl print system/<label>` in launchd's layout.
func (d *Daemon) describe(w *bytes.Buffer, s *service) {
	j := s.job
	prog := j.Program
	if prog == "" {
		prog = j.ProgramArguments[0]
	}
	active := 0
	if s.cmd != nil {
		active = 1
	}
	fmt.Fprintf(w, "system/%s = {\n\tactive count = %d\n\tpath = %s\n\ttype = LaunchDaemon\n\tstate = %s\n\n", j.Label, active, j.Path, s.state)
	fmt.Fprintf(w, "\tprogram = %s\n\targuments = {\n", prog)
	for _, a := range j.ProgramArguments {
		fmt.Fprintf(w, "\t\t%s\n", a)
	}
	fmt.Fprintf(w, "\t}\n\n")
	if j.WorkingDirectory != "" {
		fmt.Fprintf(w, "\tworking directory = %s\n", j.WorkingDirectory)
	}
	if j.StandardOutPath != "" {
		fmt.Fprintf(w, "\tstdout path = %s\n", j.StandardOutPath)
	}
	if j.StandardErrorPath != "" {
		fmt.Fprintf(w, "\tstderr path = %s\n", j.StandardErrorPath)
	}
	fmt.Fprintf(w, "\tdefault environment = {\n\t\tPATH => %s\n\t}\n\n\tenvironment = {\n", DefaultPATH)
	keys := append([]string(nil), j.EnvKeys...)
	keys = append(keys, "XPC_SERVICE_NAME")
	sort.Strings(keys)
	for _, k := range keys {
		v := j.Env[k]
		if k == "XPC_SERVICE_NAME" {
			v = j.Label
		}
		fmt.Fprintf(w, "\t\t%s => %s\n", k, v)
	}
	throttle := d.opts.Throttle
	if j.ThrottleInterval >= 0 {
		throttle = time.Duration(j.ThrottleInterval) * time.Second
	}
	exitTimeout := d.opts.ExitTimeout
	if j.ExitTimeOut >= 0 {
		exitTimeout = time.Duration(j.ExitTimeOut) * time.Second
	}
	fmt.Fprintf(w, "\t}\n\n\tdomain = system\n\tminimum runtime = %d\n\texit timeout = %d\n\truns = %d\n", int(throttle.Seconds()), int(exitTimeout.Seconds()), s.runs)
	if s.pid != 0 {
		fmt.Fprintf(w, "\tpid = %d\n", s.pid)
	}
	if s.exitSignal != 0 {
		fmt.Fprintf(w, "\tlast terminating signal = %s\n", s.lastExit())
	} else {
		fmt.Fprintf(w, "\tlast exit code = %s\n", s.lastExit())
	}
	fmt.Fprintf(w, "\n\tspawn type = daemon (3)\n\tjob state = %s\n\n", s.state)
	var props []string
	if j.KeepAlive.Wanted() {
		props = append(props, "keepalive")
	}
	if j.RunAtLoad {
		props = append(props, "runatload")
	}
	if j.Program == "" {
		props = append(props, "inferred program")
	}
	if d.isDisabled(j) {
		props = append(props, "disabled")
	}
	fmt.Fprintf(w, "\tproperties = %s\n}\n", strings.Join(props, " | "))
}

// list implements the legacy `launchctl list [label]`.
func (d *Daemon) list(o *out, rest []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(rest) == 0 {
		fmt.Fprintf(&o.stdout, "PID\tStatus\tLabel\n")
		for _, l := range d.labelsLocked() {
			s := d.services[l]
			pid := "-"
			if s.pid != 0 {
				pid = fmt.Sprint(s.pid)
			}
			fmt.Fprintf(&o.stdout, "%s\t%s\t%s\n", pid, s.status(), l)
		}
		return
	}
	label := rest[len(rest)-1]
	s, ok := d.services[label]
	if !ok {
		o.errf(ExitNoService, "Could not find service %q in domain for port", label)
		return
	}
	w := &o.stdout
	fmt.Fprintf(w, "{\n\t\"LimitLoadToSessionType\" = \"System\";\n\t\"Label\" = %q;\n\t\"OnDemand\" = %t;\n", label, !s.job.KeepAlive.Wanted())
	if s.exitedOnce {
		fmt.Fprintf(w, "\t\"LastExitStatus\" = %s;\n", s.status())
	}
	if s.pid != 0 {
		fmt.Fprintf(w, "\t\"PID\" = %d;\n", s.pid)
	}
	prog := s.job.Program
	if prog == "" {
		prog = s.job.ProgramArguments[0]
	}
	fmt.Fprintf(w, "\t\"Program\" = %q;\n\t\"ProgramArguments\" = (\n", prog)
	for _, a := range s.job.ProgramArguments {
		fmt.Fprintf(w, "\t\t%q;\n", a)
	}
	fmt.Fprintf(w, "\t);\n};\n")
}
