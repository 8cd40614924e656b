package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vzfleet/vzfleet/fleet/remote"
)

// ServiceAction is what the launchd job needs after the upload.
type ServiceAction int

// Service actions, mildest first.
const (
	// ServiceNone: nothing vz-node reads changed.
	ServiceNone ServiceAction = iota
	// ServiceKickstart: files changed that vz-node reads at start (binary,
	// config, credentials); `launchctl kickstart -k` restarts it.
	ServiceKickstart
	// ServiceReload: the plist changed (or the job is not loaded); launchd
	// must read it again: bootout, wait until gone, enable, bootstrap.
	ServiceReload
)

func (a ServiceAction) String() string {
	switch a {
	case ServiceKickstart:
		return "kickstart"
	case ServiceReload:
		return "reload"
	default:
		return "none"
	}
}

// launchctlCode is what fleetctl knows about one launchctl exit status.
type launchctlCode struct {
	meaning string
	// notLoaded: the service is not in the domain (fine for bootout and
	// print; a reason to bootstrap for kickstart).
	notLoaded bool
	// retry: launchd may still be tearing the previous instance down.
	retry bool
	fix   string
}

// launchctlCodes are the exit statuses launchctl uses for the subcommands
// fleetctl runs (errno values below 107, launchd's own errors above).
var launchctlCodes = map[int]launchctlCode{
	1:   {meaning: "operation not permitted", fix: "run launchctl as root (ssh.sudo: true, or connect as root)"},
	3:   {meaning: "no such process: the service is not loaded", notLoaded: true},
	5:   {meaning: "input/output error: launchd is still tearing the previous instance down, or refused the plist", retry: true, fix: "check the plist with `plutil -lint` and that it is owned by root:wheel, mode 0644"},
	37:  {meaning: "operation already in progress", retry: true},
	109: {meaning: "invalid property list", fix: "check the plist with `plutil -lint`"},
	111: {meaning: "invalid or missing Program/ProgramArguments"},
	112: {meaning: "could not find the domain", fix: "system daemons need the system domain: connect as root or with sudo"},
	113: {meaning: "could not find the service in the domain: it is not loaded", notLoaded: true},
	119: {meaning: "the service is disabled", fix: "`launchctl enable system/<label>` (fleetctl enables it on reload)"},
	122: {meaning: "the plist has bad ownership or permissions", fix: "the plist must be owned by root:wheel and not writable by others"},
	125: {meaning: "the domain does not support the action", fix: "system daemons belong in the system domain; check paths.plist is under /Library/LaunchDaemons"},
	133: {meaning: "launchd refused to load the service in this domain/session", fix: "see `launchctl error 133` and the system log on the host"},
}

// LaunchctlError is a failed launchctl call, with what its exit status
// means.
type LaunchctlError struct {
	Host    string
	Args    []string
	Code    int
	Meaning string
	Fix     string
	Stderr  string
}

func (e *LaunchctlError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "host %s: launchctl %s exited %d", e.Host, strings.Join(e.Args, " "), e.Code)
	if e.Meaning != "" {
		fmt.Fprintf(&b, " (%s)", e.Meaning)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, ": %s", s)
	}
	if e.Fix != "" {
		fmt.Fprintf(&b, "; %s", e.Fix)
	}
	return b.String()
}

// NotLoaded reports whether the status means the service is not loaded.
func (e *LaunchctlError) NotLoaded() bool { return launchctlCodes[e.Code].notLoaded }

func (e *LaunchctlError) retryable() bool { return launchctlCodes[e.Code].retry }

// launchd drives one host's vz-node job.
type launchd struct {
	host  remote.Host
	label string
	plist string
	// pause between retries and polls; tests shorten it.
	pause time.Duration
}

func (l launchd) target() string { return "system/" + l.label }

func (l launchd) run(ctx context.Context, args ...string) (string, error) {
	res, err := l.host.Run(ctx, remote.Cmd{Args: append([]string{"launchctl"}, args...), Sudo: true})
	var exit *remote.ExitError
	if errors.As(err, &exit) {
		c := launchctlCodes[exit.Code]
		return string(res.Stdout), &LaunchctlError{Host: l.host.Name(), Args: args, Code: exit.Code, Meaning: c.meaning, Fix: c.fix, Stderr: exit.Stderr}
	}
	if err != nil {
		return "", fmt.Errorf("launchctl %s: %w", strings.Join(args, " "), err)
	}
	return string(res.Stdout), nil
}

// JobState is the launchd job as `launchctl print` shows it.
type JobState struct {
	Loaded bool
	State  string // running, not running, ...
	PID    int
}

// Running reports whether the job has a live process.
func (s JobState) Running() bool { return s.Loaded && s.PID > 0 }

func (s JobState) String() string {
	switch {
	case !s.Loaded:
		return "not loaded"
	case s.PID > 0:
		return fmt.Sprintf("%s (pid %d)", s.State, s.PID)
	case s.State != "":
		return s.State
	default:
		return "loaded"
	}
}

// parsePrint reads the top-level `state = ` and `pid = ` lines of
// `launchctl print`.
func parsePrint(out string) JobState {
	st := JobState{Loaded: true}
	for _, line := range strings.Split(out, "\n") {
		// Nested blocks are indented by two tabs or more; the job's own
		// properties by one.
		if strings.HasPrefix(line, "\t\t") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), " = ")
		if !ok {
			continue
		}
		switch k {
		case "state":
			st.State = v
		case "pid":
			st.PID, _ = strconv.Atoi(v)
		}
	}
	return st
}

// state returns the job's state; not loaded is not an error.
func (l launchd) state(ctx context.Context) (JobState, error) {
	out, err := l.run(ctx, "print", l.target())
	var le *LaunchctlError
	if errors.As(err, &le) && le.NotLoaded() {
		return JobState{}, nil
	}
	if err != nil {
		return JobState{}, err
	}
	return parsePrint(out), nil
}

// apply performs the action. A kickstart of a job that is not loaded
// becomes a reload.
func (l launchd) apply(ctx context.Context, a ServiceAction) error {
	switch a {
	case ServiceNone:
		return nil
	case ServiceKickstart:
		_, err := l.run(ctx, "kickstart", "-k", l.target())
		var le *LaunchctlError
		if errors.As(err, &le) && le.NotLoaded() {
			return l.reload(ctx)
		}
		return err
	default:
		return l.reload(ctx)
	}
}

// reload boots the job out (if loaded), waits until launchd has let it go,
// enables it and bootstraps the plist, retrying launchd's transient
// refusals.
func (l launchd) reload(ctx context.Context) error {
	_, err := l.run(ctx, "bootout", l.target())
	var le *LaunchctlError
	switch {
	case errors.As(err, &le) && le.NotLoaded():
		// Nothing was loaded: there is nothing to wait for.
	case err != nil:
		return err
	default:
		if err := l.waitGone(ctx, 30*time.Second); err != nil {
			return err
		}
	}
	if _, err := l.run(ctx, "enable", l.target()); err != nil {
		return err
	}
	for attempt := 0; attempt < 5; attempt++ {
		if _, err = l.run(ctx, "bootstrap", "system", l.plist); err == nil {
			return nil
		}
		if !errors.As(err, &le) || !le.retryable() {
			return err
		}
		if serr := sleep(ctx, l.pause*time.Duration(attempt+1)); serr != nil {
			return serr
		}
	}
	return err
}

func (l launchd) waitGone(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := l.state(ctx)
		if err != nil {
			return err
		}
		if !st.Loaded {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("host %s: %s is still loaded %s after bootout (%s); check the job with `launchctl print %s`", l.host.Name(), l.label, limit, st, l.target())
		}
		if err := sleep(ctx, l.pause); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
