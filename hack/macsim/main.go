// Command macsim stands in for the macOS commands that fleetctl uses on a Mac
// — sw_vers, uname, sysctl, scutil, codesign, plutil and launchctl — and
// runs the per-host launchd behind launchctl. One binary serves them all: it
// dispatches on the name it was started as (the stand-ins are symlinks to
// it), or on its first argument (`macsim sw_vers -productVersion`).
//
// `macsim boot --config FILE` prepares a simulated host's mount view and
// host name and then runs its launchd; test/harness/machost starts it in the
// host's namespaces.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vzfleet/vzfleet/hack/macsim/internal/boot"
	"github.com/vzfleet/vzfleet/hack/macsim/internal/codesign"
	"github.com/vzfleet/vzfleet/hack/macsim/internal/hostinfo"
	"github.com/vzfleet/vzfleet/hack/macsim/internal/launchd"
	"github.com/vzfleet/vzfleet/hack/macsim/internal/plutil"
)

// Commands lists the macOS commands macsim answers, with the directory each
// lives in on a Mac.
var Commands = map[string]string{
	"sw_vers":   "/usr/bin",
	"uname":     "/usr/bin",
	"codesign":  "/usr/bin",
	"plutil":    "/usr/bin",
	"sysctl":    "/usr/sbin",
	"scutil":    "/usr/sbin",
	"launchctl": "/bin",
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(argv []string, stdout, stderr io.Writer) int {
	name := filepath.Base(argv[0])
	args := argv[1:]
	if name == "macsim" {
		if len(args) == 0 {
			fmt.Fprintln(stderr, "usage: macsim <command> [args...]  (commands: sw_vers uname sysctl scutil codesign plutil launchctl launchd boot)")
			return 64
		}
		name, args = args[0], args[1:]
	}
	hostCmd := func(f func(hostinfo.Config, []string, io.Writer, io.Writer) int) int {
		c, err := hostinfo.Load("")
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		return f(c, args, stdout, stderr)
	}
	switch name {
	case "sw_vers":
		return hostCmd(hostinfo.SwVers)
	case "uname":
		return hostCmd(hostinfo.Uname)
	case "sysctl":
		return hostCmd(hostinfo.Sysctl)
	case "scutil":
		return hostCmd(hostinfo.Scutil)
	case "codesign":
		return codesign.Main(args, stdout, stderr)
	case "plutil":
		return plutil.Main(args, stdout, stderr)
	case "launchctl":
		return launchd.Launchctl(args, stdout, stderr)
	case "launchd":
		return runLaunchd(args, stderr)
	case "boot":
		return runBoot(args, stderr)
	}
	fmt.Fprintf(stderr, "macsim: unknown command %q\n", name)
	return 64
}

func runLaunchd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("launchd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("socket", launchd.DefaultSocket, "unix socket launchctl connects to")
	state := fs.String("state", "", "directory for the enable/disable overrides")
	throttle := fs.Duration("throttle", 10*time.Second, "minimum time between launches of a KeepAlive job")
	exitTimeout := fs.Duration("exit-timeout", 20*time.Second, "time between SIGTERM and SIGKILL when stopping a job")
	if err := fs.Parse(args); err != nil {
		return 64
	}
	return serve(launchd.Options{Socket: *sock, StateDir: *state, Throttle: *throttle, ExitTimeout: *exitTimeout,
		Log: log.New(stderr, "", log.LstdFlags)}, stderr)
}

func runBoot(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("boot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "boot configuration written by test/harness/machost")
	if err := fs.Parse(args); err != nil || *cfgPath == "" {
		fmt.Fprintln(stderr, "usage: macsim boot --config FILE")
		return 64
	}
	c, err := boot.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "macsim boot:", err)
		return 1
	}
	if err := boot.Apply(c); err != nil {
		fmt.Fprintln(stderr, "macsim boot:", err)
		return 1
	}
	logw := stderr
	if c.LaunchdLog != "" {
		f, err := os.OpenFile(c.LaunchdLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "macsim boot: launchd log:", err)
			return 1
		}
		defer f.Close()
		logw = io.MultiWriter(stderr, f)
	}
	fmt.Fprintf(stderr, "macsim boot: %s is up\n", c.Hostname)
	return serve(launchd.Options{Socket: c.LaunchdSocket, StateDir: c.LaunchdStateDir,
		Throttle: c.LaunchdThrottle, ExitTimeout: c.LaunchdExitTimeout, LoadDirs: c.LaunchdLoadDirs,
		Log: log.New(logw, "", log.LstdFlags)}, stderr)
}

// serve runs launchd until SIGTERM or SIGINT, then stops its jobs.
func serve(opts launchd.Options, stderr io.Writer) int {
	d, err := launchd.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- d.Serve() }()
	select {
	case sig := <-sigs:
		fmt.Fprintf(stderr, "launchd: %v: stopping all jobs\n", sig)
		d.Close()
		return 0
	case err := <-errc:
		fmt.Fprintln(stderr, err)
		d.Close()
		return 1
	}
}
