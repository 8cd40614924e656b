package launchd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newDaemon(t *testing.T) (*Daemon, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := New(Options{Socket: filepath.Join(dir, "launchd.sock"), StateDir: filepath.Join(dir, "state"),
		Throttle: 300 * time.Millisecond, ExitTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, dir
}

func run(d *Daemon, args ...string) Response { return d.Handle(Request{Args: args, Cwd: "/"}) }

// writeJob writes a script and a LaunchDaemon plist for it.
func writeJob(t *testing.T, dir, label, script, extra string) string {
	t.Helper()
	sh := filepath.Join(dir, label+".sh")
	if err := os.WriteFile(sh, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, label+".plist")
	doc := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0">
<dict>
	<key>Label</key><string>%s</string>
	<key>ProgramArguments</key><array><string>/bin/sh</string><string>%s</string></array>
	<key>StandardOutPath</key><string>%s</string>
	<key>StandardErrorPath</key><string>%s</string>
	<key>WorkingDirectory</key><string>%s</string>
	%s
</dict>
</plist>
`, label, sh, filepath.Join(dir, label+".log"), filepath.Join(dir, label+".log"), dir, extra)
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func expect(t *testing.T, r Response, code int, stderr string) {
	t.Helper()
	if r.Exit != code || !strings.Contains(r.Stderr, stderr) {
		t.Fatalf("got exit %d stderr %q stdout %q; want exit %d and stderr containing %q", r.Exit, r.Stderr, r.Stdout, code, stderr)
	}
}

// pidOf reads the pid from `launchctl print`, 0 when not running.
func pidOf(t *testing.T, d *Daemon, label string) int {
	t.Helper()
	r := run(d, "print", "system/"+label)
	for _, line := range strings.Split(r.Stdout, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "pid = "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie (killed, not yet reaped by
// whoever inherited it) counts as gone.
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func TestKeepAliveLifecycle(t *testing.T) {
	d, dir := newDaemon(t)
	out := filepath.Join(dir, "env.out")
	p := writeJob(t, dir, "dev.test.keep", `echo "$GREETING $$ $XPC_SERVICE_NAME $PWD" >> `+out+"\nexec sleep 300\n",
		`<key>EnvironmentVariables</key><dict><key>GREETING</key><string>hello world</string></dict>
	<key>KeepAlive</key><true/>`)

	expect(t, run(d, "bootstrap", "system", p), 0, "")
	var pid int
	waitFor(t, "the job to start", 5*time.Second, func() bool { pid = pidOf(t, d, "dev.test.keep"); return alive(pid) })
	waitFor(t, "the job's output", 5*time.Second, func() bool {
		b, _ := os.ReadFile(out)
		return strings.Contains(string(b), "hello world")
	})
	b, _ := os.ReadFile(out)
	if want := fmt.Sprintf("hello world %d dev.test.keep %s\n", pid, dir); string(b) != want {
		t.Fatalf("job saw %q, want %q", b, want)
	}

	// Already loaded.
	expect(t, run(d, "bootstrap", "system", p), ExitIO, "Bootstrap failed: 5: Input/output error")

	r := run(d, "print", "system/dev.test.keep")
	for _, want := range []string{"system/dev.test.keep = {", "state = running", "path = " + p, "GREETING => hello world", "properties = keepalive"} {
		if !strings.Contains(r.Stdout, want) {
			t.Fatalf("print lacks %q:\n%s", want, r.Stdout)
		}
	}

	// kickstart -k restarts it with a new pid.
	expect(t, run(d, "kickstart", "-k", "system/dev.test.keep"), 0, "")
	newPID := pidOf(t, d, "dev.test.keep")
	if newPID == pid || !alive(newPID) {
		t.Fatalf("kickstart -k: pid %d -> %d", pid, newPID)
	}
	waitFor(t, "the old process to be gone", 5*time.Second, func() bool { return !alive(pid) })

	// A killed KeepAlive job comes back after the throttle.
	_ = syscall.Kill(newPID, syscall.SIGKILL)
	waitFor(t, "KeepAlive to relaunch the job", 5*time.Second, func() bool {
		p := pidOf(t, d, "dev.test.keep")
		return p != 0 && p != newPID && alive(p)
	})
	r = run(d, "print", "system/dev.test.keep")
	if !strings.Contains(r.Stdout, "last terminating signal = Killed: 9") {
		t.Fatalf("print after SIGKILL:\n%s", r.Stdout)
	}
	last := pidOf(t, d, "dev.test.keep")

	// bootout stops and unloads it.
	expect(t, run(d, "bootout", "system/dev.test.keep"), 0, "")
	waitFor(t, "bootout to stop the job", 5*time.Second, func() bool { return !alive(last) })
	waitFor(t, "the service to be unloaded", 5*time.Second, func() bool {
		return run(d, "print", "system/dev.test.keep").Exit == ExitNoService
	})
	expect(t, run(d, "print", "system/dev.test.keep"), ExitNoService, `Could not find service "dev.test.keep" in domain for system`)
	expect(t, run(d, "bootout", "system/dev.test.keep"), ExitNoProcess, "Boot-out failed: 3: No such process")
	expect(t, run(d, "bootout", "system", p), ExitIO, "Boot-out failed: 5: Input/output error")
	expect(t, run(d, "kickstart", "-k", "system/dev.test.keep"), ExitNoService, `Could not find service "dev.test.keep" in domain for system`)

	// Loading it again works once it is gone.
	expect(t, run(d, "bootstrap", "system", p), 0, "")
	waitFor(t, "the job to start again", 5*time.Second, func() bool { return alive(pidOf(t, d, "dev.test.keep")) })
}

func TestBootoutWaitsForExitAndKills(t *testing.T) {
	d, dir := newDaemon(t)
	// The job ignores SIGTERM: bootout leaves it SIGTERMed until the exit
	// timeout ends it with SIGKILL; meanwhile bootstrap fails with 5.
	p := writeJob(t, dir, "dev.test.stubborn", "trap '' TERM\nwhile :; do sleep 0.1; done\n",
		`<key>RunAtLoad</key><true/><key>ExitTimeOut</key><integer>1</integer>`)
	expect(t, run(d, "bootstrap", "system", p), 0, "")
	var pid int
	waitFor(t, "start", 5*time.Second, func() bool { pid = pidOf(t, d, "dev.test.stubborn"); return alive(pid) })
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	start := time.Now()
	expect(t, run(d, "bootout", "system/dev.test.stubborn"), 0, "")
	if r := run(d, "print", "system/dev.test.stubborn"); !strings.Contains(r.Stdout, "state = SIGTERMed") {
		t.Fatalf("right after bootout:\n%s", r.Stdout)
	}
	expect(t, run(d, "bootstrap", "system", p), ExitIO, "Bootstrap failed: 5")
	waitFor(t, "SIGKILL after the exit timeout", 5*time.Second, func() bool { return !alive(pid) })
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("the job was killed after %s, before its 1 s exit timeout", took)
	}
	waitFor(t, "unload", 5*time.Second, func() bool { return run(d, "print", "system/dev.test.stubborn").Exit == ExitNoService })
}

func TestOnDemandJobAndExitCodes(t *testing.T) {
	d, dir := newDaemon(t)
	p := writeJob(t, dir, "dev.test.once", "exit 3\n", "")
	expect(t, run(d, "bootstrap", "system", p), 0, "")
	if r := run(d, "print", "system/dev.test.once"); !strings.Contains(r.Stdout, "state = not running") || !strings.Contains(r.Stdout, "last exit code = (never exited)") {
		t.Fatalf("a job without RunAtLoad must not start:\n%s", r.Stdout)
	}
	r := run(d, "kickstart", "-p", "system/dev.test.once")
	if r.Exit != 0 || !strings.Contains(r.Stdout, "service spawned with pid: ") {
		t.Fatalf("kickstart -p: %+v", r)
	}
	waitFor(t, "the job to exit 3", 5*time.Second, func() bool {
		return strings.Contains(run(d, "print", "system/dev.test.once").Stdout, "last exit code = 3")
	})
	if r := run(d, "list"); !strings.Contains(r.Stdout, "-\t3\tdev.test.once") {
		t.Fatalf("list:\n%s", r.Stdout)
	}
	if r := run(d, "list", "dev.test.once"); !strings.Contains(r.Stdout, `"LastExitStatus" = 3;`) {
		t.Fatalf("list label:\n%s", r.Stdout)
	}
	expect(t, run(d, "list", "dev.test.nope"), ExitNoService, `Could not find service "dev.test.nope" in domain for port`)
}

func TestSuccessfulExitKeepAlive(t *testing.T) {
	d, dir := newDaemon(t)
	counter := filepath.Join(dir, "runs")
	p := writeJob(t, dir, "dev.test.succ", "echo run >> "+counter+"\nexit 0\n",
		`<key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>`)
	expect(t, run(d, "bootstrap", "system", p), 0, "")
	time.Sleep(1200 * time.Millisecond) // four throttle periods
	b, _ := os.ReadFile(counter)
	if n := strings.Count(string(b), "run"); n != 1 {
		t.Fatalf("a job that exits 0 under SuccessfulExit=false ran %d times, want 1", n)
	}
}

func TestDisableEnable(t *testing.T) {
	d, dir := newDaemon(t)
	p := writeJob(t, dir, "dev.test.dis", "exec sleep 300\n", `<key>RunAtLoad</key><true/>`)
	expect(t, run(d, "disable", "system/dev.test.dis"), 0, "")
	expect(t, run(d, "bootstrap", "system", p), ExitDisabled, "Bootstrap failed: 119: Service is disabled")
	if r := run(d, "print-disabled", "system"); !strings.Contains(r.Stdout, `"dev.test.dis" => disabled`) {
		t.Fatalf("print-disabled:\n%s", r.Stdout)
	}
	expect(t, run(d, "enable", "system/dev.test.dis"), 0, "")
	expect(t, run(d, "bootstrap", "system", p), 0, "")
	// The override outlives a launchd restart.
	d2, err := New(Options{Socket: filepath.Join(dir, "2.sock"), StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	if r := d2.Handle(Request{Args: []string{"print-disabled", "system"}}); !strings.Contains(r.Stdout, `"dev.test.dis" => enabled`) {
		t.Fatalf("overrides after restart:\n%s", r.Stdout)
	}
}

func TestBootstrapErrors(t *testing.T) {
	d, dir := newDaemon(t)
	good := writeJob(t, dir, "dev.test.ok", "exec sleep 300\n", "")
	writable := writeJob(t, dir, "dev.test.w", "exit 0\n", "")
	if err := os.Chmod(writable, 0o666); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.plist")
	os.WriteFile(broken, []byte("<plist><dict><key>Label</key></dict></plist>"), 0o644)
	noProgram := filepath.Join(dir, "noprog.plist")
	os.WriteFile(noProgram, []byte("<plist><dict><key>Label</key><string>x</string></dict></plist>"), 0o644)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"missing file", []string{"bootstrap", "system", filepath.Join(dir, "nope.plist")}, ExitNoSuchFile, "Bootstrap failed: 2: No such file or directory"},
		{"world-writable plist", []string{"bootstrap", "system", writable}, ExitIO, "Bootstrap failed: 5: Input/output error"},
		{"malformed plist", []string{"bootstrap", "system", broken}, ExitIO, "Bootstrap failed: 5"},
		{"no program", []string{"bootstrap", "system", noProgram}, ExitIO, "Bootstrap failed: 5"},
		{"gui domain", []string{"bootstrap", "gui/501", good}, ExitDomain, "Bootstrap failed: 125: Domain does not support specified action"},
		{"several failures", []string{"bootstrap", "system", broken, noProgram}, ExitMultiple, "Bootstrap failed: 133: Multiple errors were returned; see stderr"},
		{"gui kickstart", []string{"kickstart", "gui/501/dev.test.ok"}, ExitDomain, "125: Domain does not support specified action"},
		{"bad target", []string{"kickstart", "dev.test.ok"}, ExitUsage, "Unrecognized target specifier."},
		{"unknown subcommand", []string{"frobnicate"}, ExitUsage, "Unrecognized subcommand: frobnicate"},
		{"legacy load", []string{"load", "-w", broken}, ExitIO, "Load failed: 5: Input/output error"},
	} {
		t.Run(tc.name, func(t *testing.T) { expect(t, run(d, tc.args...), tc.code, tc.stderr) })
	}
	if r := run(d, "error", "119"); r.Stdout != "119: Service is disabled\n" {
		t.Fatalf("launchctl error 119: %q", r.Stdout)
	}
}

func TestSpawnFailureIsEXCONFIG(t *testing.T) {
	d, dir := newDaemon(t)
	p := filepath.Join(dir, "bad.plist")
	os.WriteFile(p, []byte(`<plist><dict><key>Label</key><string>dev.test.bad</string>
<key>ProgramArguments</key><array><string>/nonexistent/prog</string></array>
<key>RunAtLoad</key><true/></dict></plist>`), 0o644)
	expect(t, run(d, "bootstrap", "system", p), 0, "")
	if r := run(d, "print", "system/dev.test.bad"); !strings.Contains(r.Stdout, "last exit code = 78: EX_CONFIG") {
		t.Fatalf("print:\n%s", r.Stdout)
	}
}

func TestOverTheSocket(t *testing.T) {
	d, dir := newDaemon(t)
	go d.Serve()
	sock := filepath.Join(dir, "launchd.sock")
	waitFor(t, "the socket", 5*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })
	p := writeJob(t, dir, "dev.test.sock", "exec sleep 300\n", `<key>RunAtLoad</key><true/>`)
	// A relative plist path resolves against launchctl's directory.
	resp, err := Call(sock, Request{Args: []string{"bootstrap", "system", filepath.Base(p)}, Cwd: dir})
	if err != nil || resp.Exit != 0 {
		t.Fatalf("bootstrap over the socket: %+v, %v", resp, err)
	}
	resp, err = Call(sock, Request{Args: []string{"print", "system/dev.test.nope"}})
	if err != nil || resp.Exit != ExitNoService {
		t.Fatalf("print unknown over the socket: %+v, %v", resp, err)
	}
	t.Setenv(SocketEnv, sock)
	var stdout, stderr strings.Builder
	if code := Launchctl([]string{"print", "system/dev.test.sock"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "state = running") {
		t.Fatalf("launchctl print: %d %q %q", code, stdout.String(), stderr.String())
	}
}

// TestProcessGroupKill: when a job exits, launchd kills what it left in its
// process group, unless the plist sets AbandonProcessGroup.
func TestProcessGroupKill(t *testing.T) {
	for _, abandon := range []bool{false, true} {
		t.Run(fmt.Sprint("abandon=", abandon), func(t *testing.T) {
			d, dir := newDaemon(t)
			childPID := filepath.Join(dir, "child.pid")
			extra := `<key>RunAtLoad</key><true/>`
			if abandon {
				extra += `<key>AbandonProcessGroup</key><true/>`
			}
			p := writeJob(t, dir, "dev.test.group", "sleep 300 &\necho $! > "+childPID+"\nexec sleep 300\n", extra)
			expect(t, run(d, "bootstrap", "system", p), 0, "")
			var child int
			waitFor(t, "the child", 5*time.Second, func() bool {
				b, _ := os.ReadFile(childPID)
				child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
				return alive(child)
			})
			t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
			expect(t, run(d, "kickstart", "-k", "system/dev.test.group"), 0, "")
			time.Sleep(300 * time.Millisecond)
			if alive(child) == abandon {
				return
			}
			t.Fatalf("AbandonProcessGroup=%v: the job's child alive=%v after the job was restarted", abandon, alive(child))
		})
	}
}
