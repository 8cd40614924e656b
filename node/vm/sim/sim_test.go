package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vzfleet/vzfleet/node/vm"
	"github.com/vzfleet/vzfleet/node/vm/guest"
	"github.com/vzfleet/vzfleet/node/vm/leases"
)

const (
	testUser     = "admin"
	testPassword = "correct horse"
	bootDelay    = 50 * time.Millisecond
)

// env is one simulated host: a driver, its state directory and the key the
// guests accept.
type env struct {
	t      *testing.T
	drv    *Driver
	opts   vm.Options
	signer ssh.Signer
	disk   string
}

// testPort picks a per-test guest SSH port, so tests running in parallel
// (and other test binaries) rarely meet on one address.
func testPort(t testing.TB) int {
	n, err := rand.Int(rand.Reader, big.NewInt(30000))
	if err != nil {
		t.Fatal(err)
	}
	return 20000 + int(n.Int64())
}

func newEnv(t *testing.T, mod func(*vm.Options)) *env {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := vm.Options{
		StateDir:     filepath.Join(dir, "state"),
		LeasesPath:   filepath.Join(dir, "db", "dhcpd_leases"),
		BootDelay:    bootDelay,
		GuestSSHPort: testPort(t),
		GuestLogin: vm.GuestLogin{
			User:           testUser,
			Password:       testPassword,
			AuthorizedKeys: ssh.MarshalAuthorizedKey(signer.PublicKey()),
		},
	}
	if mod != nil {
		mod(&opts)
	}
	drv, err := vm.New("sim", opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, drv: drv.(*Driver), opts: opts, signer: signer, disk: makeDisk(t, dir, "disk.img")}
}

func makeDisk(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("disk"), 0); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) spec(id string) vm.Spec {
	return vm.Spec{ID: id, CPUs: 1, MemoryBytes: 2 << 30, DiskPath: e.disk, Network: vm.Network{Mode: vm.NAT}}
}

func (e *env) create(spec vm.Spec) *Machine {
	e.t.Helper()
	m, err := e.drv.Create(e.t.Context(), spec)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if m.State() != vm.StateStopped {
			m.Stop(context.Background())
		}
		m.Release()
	})
	return m.(*Machine)
}

func (e *env) start(spec vm.Spec) *Machine {
	e.t.Helper()
	m := e.create(spec)
	if err := m.Start(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// client connects to m with the test key, pinning the host key in m's
// state directory as vz-node does.
func (e *env) client(m *Machine) *guest.Client {
	e.t.Helper()
	c, err := guest.Dial(e.t.Context(), e.guestConfig(m))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) guestConfig(m *Machine) guest.Config {
	return guest.Config{
		Addr:        m.Addr(),
		User:        testUser,
		Signers:     []ssh.Signer{e.signer},
		HostKeyPath: filepath.Join(e.opts.StateDir, m.ID(), "pinned_host_key"),
	}
}

func waitState(t *testing.T, m *Machine, want vm.State, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for m.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("machine %s is %s after %s, want %s", m.ID(), m.State(), within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	h := e.drv.Host()
	if h.CPUs != uint(runtime.NumCPU()) || h.MaxCPUs != h.CPUs || h.MinCPUs != 1 {
		t.Errorf("CPU bounds %+v, want 1..%d", h, runtime.NumCPU())
	}
	if h.MemoryBytes < 1<<30 || h.MaxMemoryBytes > h.MemoryBytes || h.MinMemoryBytes != 2<<30 {
		t.Errorf("memory bounds %+v", h)
	}
	if h.MaxRunning != 2 {
		t.Errorf("MaxRunning %d, want Virtualization.framework's 2", h.MaxRunning)
	}
	if got := newEnv(t, func(o *vm.Options) { o.MaxRunning = 1 }).drv.Host().MaxRunning; got != 1 {
		t.Errorf("Options.MaxRunning=1 gives %d", got)
	}
	if _, err := vm.New("sim", vm.Options{}); err == nil {
		t.Error("sim without a state directory was accepted")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	h := e.drv.Host()
	empty := filepath.Join(t.TempDir(), "empty.img")
	os.WriteFile(empty, nil, 0o644)
	ifaces, _ := net.Interfaces()
	for _, tc := range []struct {
		name string
		mod  func(*vm.Spec)
		ok   bool
	}{
		{"valid", func(*vm.Spec) {}, true},
		{"max resources", func(s *vm.Spec) { s.CPUs, s.MemoryBytes = h.MaxCPUs, h.MaxMemoryBytes }, true},
		{"no id", func(s *vm.Spec) { s.ID = "" }, false},
		{"id with slash", func(s *vm.Spec) { s.ID = "a/b" }, false},
		{"0 CPUs", func(s *vm.Spec) { s.CPUs = 0 }, false},
		{"too many CPUs", func(s *vm.Spec) { s.CPUs = h.MaxCPUs + 1 }, false},
		{"too little memory", func(s *vm.Spec) { s.MemoryBytes = 1 << 30 }, false},
		{"too much memory", func(s *vm.Spec) { s.MemoryBytes = h.MaxMemoryBytes + 1<<20 }, false},
		{"memory not in MiB", func(s *vm.Spec) { s.MemoryBytes = 2<<30 + 1 }, false},
		{"no disk", func(s *vm.Spec) { s.DiskPath = "" }, false},
		{"missing disk", func(s *vm.Spec) { s.DiskPath = "/nonexistent/disk.img" }, false},
		{"empty disk", func(s *vm.Spec) { s.DiskPath = empty }, false},
		{"disk is a directory", func(s *vm.Spec) { s.DiskPath = t.TempDir() }, false},
		{"missing aux", func(s *vm.Spec) { s.AuxPath = "/nonexistent/nvram.bin" }, false},
		{"bridged without interface", func(s *vm.Spec) { s.Network.Mode = vm.Bridged }, false},
		{"bridged to a missing interface", func(s *vm.Spec) { s.Network = vm.Network{Mode: vm.Bridged, Interface: "nope0"} }, false},
		{"bridged to a real interface", func(s *vm.Spec) { s.Network = vm.Network{Mode: vm.Bridged, Interface: ifaces[0].Name} }, true},
		{"unknown network mode", func(s *vm.Spec) { s.Network.Mode = "host" }, false},
		{"multicast MAC", func(s *vm.Spec) { s.Network.MAC = net.HardwareAddr{1, 0, 0, 0, 0, 1} }, false},
		{"share without tag", func(s *vm.Spec) { s.Shares = []vm.Share{{HostPath: "/tmp"}} }, false},
		{"duplicate share tags", func(s *vm.Spec) { s.Shares = []vm.Share{{Tag: "a", HostPath: "/tmp"}, {Tag: "a", HostPath: "/"}} }, false},
		{"relative share path", func(s *vm.Spec) { s.Shares = []vm.Share{{Tag: "a", HostPath: "tmp"}} }, false},
	} {
		s := e.spec("vm-1")
		tc.mod(&s)
		err := e.drv.Validate(s)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, vm.ErrInvalidSpec)) {
			t.Errorf("%s: Validate = %v, want ok=%v (else ErrInvalidSpec)", tc.name, err, tc.ok)
		}
		if !tc.ok {
			if _, err := e.drv.Create(t.Context(), s); !errors.Is(err, vm.ErrInvalidSpec) {
				t.Errorf("%s: Create = %v, want ErrInvalidSpec", tc.name, err)
			}
		}
	}
}

// TestLifecycle boots a guest and drives it the way vz-node does: find its
// address in the lease file, wait for SSH, run commands, shut it down over
// SSH, boot it again, then stop it.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	m := e.create(e.spec("vm-life"))
	var (
		mu   sync.Mutex
		seen []vm.State
	)
	changesDone := make(chan struct{})
	go func() {
		defer close(changesDone)
		for s := range m.Changes() {
			mu.Lock()
			seen = append(seen, s)
			mu.Unlock()
		}
	}()
	if m.State() != vm.StateStopped {
		t.Fatalf("new machine is %s", m.State())
	}
	begin := time.Now()
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < bootDelay {
		t.Errorf("Start returned after %s, before the boot delay %s", took, bootDelay)
	}
	if m.State() != vm.StateRunning {
		t.Fatalf("after Start the machine is %s", m.State())
	}
	if err := m.Start(t.Context()); !errors.Is(err, vm.ErrInvalidState) {
		t.Errorf("second Start = %v, want ErrInvalidState", err)
	}

	ip, err := leases.Lookup(e.opts.LeasesPath, m.MAC())
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(m.Addr()); host != ip.String() || !strings.HasPrefix(host, "127.77.") {
		t.Fatalf("lease says %s, guest listens on %s", ip, m.Addr())
	}
	cfg := e.guestConfig(m)
	c, err := guest.WaitSSH(t.Context(), cfg, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pinned, err := guest.PinnedHostKey(cfg.HostKeyPath)
	if err != nil || !bytes.Equal(pinned.Marshal(), m.HostKey().Marshal()) {
		t.Fatalf("pinned %v (%v), guest key %v", pinned, err, m.HostKey())
	}
	if used, _ := UsedSlots(e.opts.StateDir, 2); used != 1 {
		t.Errorf("UsedSlots = %d with one guest running", used)
	}

	out, err := c.Output(t.Context(), "pwd")
	if err != nil || strings.TrimSpace(string(out)) != m.GuestDir() {
		t.Errorf("pwd = %q, %v; want the guest dir %s", out, err, m.GuestDir())
	}

	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, vm.StateStopped, 5*time.Second)
	if _, err := leases.Lookup(e.opts.LeasesPath, m.MAC()); !errors.Is(err, leases.ErrNotFound) {
		t.Errorf("lease after shutdown: %v, want released", err)
	}
	if used, _ := UsedSlots(e.opts.StateDir, 2); used != 0 {
		t.Errorf("UsedSlots = %d after shutdown", used)
	}
	if _, err := net.DialTimeout("tcp", cfg.Addr, time.Second); err == nil {
		t.Error("guest sshd still answers after shutdown")
	}

	// Boot again: same address (derived from the MAC), same host key.
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if m.Addr() != cfg.Addr {
		t.Errorf("address changed across boots: %s then %s", cfg.Addr, m.Addr())
	}
	c2 := e.client(m)
	if _, err := c2.Output(t.Context(), "true"); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(); !errors.Is(err, vm.ErrInvalidState) {
		t.Errorf("Release of a running machine = %v", err)
	}
	if err := m.RequestStop(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, vm.StateStopped, 5*time.Second)
	if err := m.Stop(t.Context()); !errors.Is(err, vm.ErrInvalidState) {
		t.Errorf("Stop of a stopped machine = %v", err)
	}
	if err := m.RequestStop(t.Context()); !errors.Is(err, vm.ErrInvalidState) {
		t.Errorf("RequestStop of a stopped machine = %v", err)
	}
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changesDone:
	case <-time.After(5 * time.Second):
		t.Fatal("Changes not closed by Release")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []vm.State{vm.StateStarting, vm.StateRunning, vm.StateStopping, vm.StateStopped,
		vm.StateStarting, vm.StateRunning, vm.StateStopping, vm.StateStopped}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("transitions %v, want %v", seen, want)
	}
	if err := m.Start(t.Context()); !errors.Is(err, vm.ErrInvalidState) {
		t.Errorf("Start after Release = %v", err)
	}
}

// TestExec covers what kubectl exec needs: argv passed exactly, stdin,
// stderr, exit codes and signals.
func TestExec(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	m := e.start(e.spec("vm-exec"))
	c := e.client(m)
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		argv    []string
		stdin   string
		stdout  string
		stderr  string
		code    int
		cmdline string
	}{
		// Not /tmp: parallel tests remove directories there while ls runs.
		{name: "ls -la /", argv: []string{"sh", "-c", `ls -la / >/dev/null && printf "%s|" "$@"`, "sh", "-la", "/"}, stdout: "-la|/|"},
		{name: "spaces and quotes", argv: []string{"printf", "[%s]", "a b", "it's", `"dq"`, "$HOME", "*", "", "back\\slash", "new\nline"},
			stdout: "[a b][it's][\"dq\"][$HOME][*][][back\\slash][new\nline]"},
		{name: "stdin", argv: []string{"cat"}, stdin: "hello\nworld\n", stdout: "hello\nworld\n"},
		{name: "stdin to wc", argv: []string{"wc", "-c"}, stdin: strings.Repeat("x", 100000), stdout: "100000\n"},
		{name: "stderr", argv: []string{"sh", "-c", "echo out; echo err >&2"}, stdout: "out\n", stderr: "err\n"},
		{name: "exit code", argv: []string{"sh", "-c", "exit 42"}, code: 42},
		{name: "missing command", argv: []string{"no-such-command-xyz"}, code: 127},
		{name: "killed by signal", argv: []string{"sh", "-c", "kill -TERM $$"}, code: 128 + 15},
		{name: "shell line", cmdline: "echo $((6*7)) | tr 4 X", stdout: "X2\n"},
		{name: "guest dir is home", cmdline: `[ "$HOME" = "$PWD" ] && echo home`, stdout: "home\n"},
		{name: "sudo", argv: []string{"sudo", "-n", "echo", "root?"}, stdout: "root?\n"},
	} {
		var stdout, stderr bytes.Buffer
		ex := guest.Exec{Stdout: &stdout, Stderr: &stderr}
		if tc.stdin != "" {
			ex.Stdin = strings.NewReader(tc.stdin)
		}
		var (
			code int
			err  error
		)
		if tc.cmdline != "" {
			code, err = c.RunShell(ctx, tc.cmdline, ex)
		} else {
			code, err = c.Run(ctx, tc.argv, ex)
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if code != tc.code || stdout.String() != tc.stdout || (tc.stderr != "" && stderr.String() != tc.stderr) {
			t.Errorf("%s: exit %d stdout %q stderr %q; want %d %q %q", tc.name, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
	}

	// The login shell reads its commands from stdin.
	var shellOut bytes.Buffer
	code, err := c.Shell(ctx, guest.Exec{Stdin: strings.NewReader("echo hi from $0\nexit 5\n"), Stdout: &shellOut})
	if err != nil || code != 5 || shellOut.String() != "hi from /bin/sh\n" {
		t.Errorf("shell: exit %d, %q, %v; want 5, \"hi from /bin/sh\\n\"", code, shellOut.String(), err)
	}

	// A command still running when the caller gives up is killed.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if _, err := c.Run(cctx, []string{"sleep", "30"}, guest.Exec{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run past its context = %v", err)
	}
	if time.Since(begin) > 5*time.Second {
		t.Error("Run did not return when its context ended")
	}
}

// TestTTY runs commands on a terminal: its size is the requested one and
// follows resizes.
func TestTTY(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	m := e.start(e.spec("vm-tty"))
	c := e.client(m)
	var out bytes.Buffer
	code, err := c.Run(t.Context(), []string{"stty", "size"}, guest.Exec{TTY: true, Size: guest.TermSize{Width: 100, Height: 40}, Stdout: &out})
	if err != nil || code != 0 || out.String() != "40 100\r\n" {
		t.Fatalf("stty size = %q (exit %d, %v), want \"40 100\\r\\n\"", out.String(), code, err)
	}
	out.Reset()
	code, err = c.RunShell(t.Context(), `[ -t 0 ] && [ -t 1 ] && echo "tty $TERM"`, guest.Exec{TTY: true, Term: "vt100", Stdout: &out})
	if err != nil || code != 0 || out.String() != "tty vt100\r\n" {
		t.Fatalf("terminal check = %q (exit %d, %v)", out.String(), code, err)
	}

	stdinR, stdinW := io.Pipe()
	resize := make(chan guest.TermSize, 1)
	outR, outW := io.Pipe()
	res := make(chan error, 1)
	go func() {
		code, err := c.RunShell(t.Context(), `stty -echo; stty size; while read x; do stty size; done; exit 7`,
			guest.Exec{TTY: true, Size: guest.TermSize{Width: 80, Height: 24}, Stdin: stdinR, Stdout: outW, Resize: resize})
		if err == nil && code != 7 {
			err = fmt.Errorf("exit %d, want 7", code)
		}
		outW.Close()
		res <- err
	}()
	lines := bufio.NewScanner(outR)
	next := func() string {
		if !lines.Scan() {
			t.Fatalf("output ended: %v", lines.Err())
		}
		return strings.TrimSpace(lines.Text())
	}
	if got := next(); got != "24 80" {
		t.Fatalf("initial size %q, want 24 80", got)
	}
	resize <- guest.TermSize{Width: 132, Height: 50}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stdinW.Write([]byte("\n"))
		got := next()
		if got == "50 132" {
			break
		}
		if got != "24 80" || time.Now().After(deadline) {
			t.Fatalf("size after resize: %q, want 50 132", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stdinW.Write([]byte{4}) // ^D: read sees end of file
	go io.Copy(io.Discard, outR)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

func TestPasswordAndRejectedLogins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	m := e.start(e.spec("vm-auth"))
	base := e.guestConfig(m)
	pw := base
	pw.Signers, pw.Password = nil, testPassword
	c, err := guest.Dial(t.Context(), pw)
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	defer c.Close()
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(otherKey)
	for name, mod := range map[string]func(*guest.Config){
		"wrong password": func(c *guest.Config) { c.Signers, c.Password = nil, "nope" },
		"wrong user":     func(c *guest.Config) { c.User = "root" },
		"unknown key":    func(c *guest.Config) { c.Signers = []ssh.Signer{other} },
	} {
		cfg := base
		mod(&cfg)
		if c, err := guest.Dial(t.Context(), cfg); err == nil {
			c.Close()
			t.Errorf("%s: login accepted", name)
		}
	}
	// With only a password, shutdown feeds it to sudo -S.
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, vm.StateStopped, 5*time.Second)
}

// TestHostKeyPinning: the host key survives a restart of the machine's
// process (it lives in the state directory); a guest presenting another
// key afterwards is refused.
func TestHostKeyPinning(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	spec := e.spec("vm-pin")
	spec.Network.MAC = net.HardwareAddr{2, 0xaa, 0, 0, 0, 1}
	m := e.start(spec)
	cfg := e.guestConfig(m)
	e.client(m)
	m.Stop(t.Context())
	m.Release()

	// A new supervisor (a new Machine from the same state) keeps the key.
	m2 := e.start(spec)
	if _, err := guest.Dial(t.Context(), cfg); err != nil {
		t.Fatalf("same guest after restart: %v", err)
	}
	m2.Stop(t.Context())
	m2.Release()

	// A guest with a new host key at the same address is refused.
	if err := os.Remove(filepath.Join(e.opts.StateDir, spec.ID, hostKeyName)); err != nil {
		t.Fatal(err)
	}
	m3 := e.start(spec)
	if m3.Addr() != cfg.Addr {
		t.Fatalf("address moved: %s then %s", cfg.Addr, m3.Addr())
	}
	if _, err := guest.Dial(t.Context(), cfg); !errors.Is(err, guest.ErrHostKeyMismatch) {
		t.Fatalf("changed host key: %v, want ErrHostKeyMismatch", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	if _, err := guest.WaitSSH(ctx, cfg, 10*time.Millisecond); !errors.Is(err, guest.ErrHostKeyMismatch) || time.Since(begin) > 5*time.Second {
		t.Fatalf("WaitSSH with a changed host key: %v after %s, want ErrHostKeyMismatch at once", err, time.Since(begin))
	}
}

// TestGuestLogAndShares: the guest's log as `log show` / `log stream` see
// it, and virtio-fs shares where macOS mounts them.
func TestGuestLogAndShares(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	share := t.TempDir()
	os.WriteFile(filepath.Join(share, "hello.txt"), []byte("from the host"), 0o644)
	spec := e.spec("vm-log")
	spec.Shares = []vm.Share{{Tag: "data", HostPath: share}}
	spec.ConsoleLogPath = filepath.Join(t.TempDir(), "console.log")
	m := e.start(spec)
	c := e.client(m)
	ctx := t.Context()

	out, err := c.Output(ctx, "cat", "Volumes/My Shared Files/data/hello.txt")
	if err != nil || string(out) != "from the host" {
		t.Errorf("shared file reads %q, %v", out, err)
	}

	stream, streamW := io.Pipe()
	streamCtx, stopStream := context.WithCancel(ctx)
	streamDone := make(chan error, 1)
	go func() {
		_, err := c.Run(streamCtx, []string{"log", "stream", "--style", "syslog"}, guest.Exec{Stdout: streamW})
		streamW.Close()
		streamDone <- err
	}()
	lines := bufio.NewScanner(stream)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "Timestamp") {
		t.Fatalf("log stream header: %q", lines.Text())
	}
	if _, err := c.Output(ctx, "logger", "-t", "myapp", "hello from the guest"); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		if e, ok := parseEntry(lines.Text()); ok && e.process == "myapp" {
			if e.msg != "hello from the guest" || time.Since(e.t) > time.Minute {
				t.Errorf("streamed entry %+v", e)
			}
			break
		}
	}
	stopStream()
	go io.Copy(io.Discard, stream)
	<-streamDone

	out, err = c.Output(ctx, "log", "show", "--style", "syslog", "--last", "5m")
	if err != nil {
		t.Fatal(err)
	}
	show := string(out)
	for _, want := range []string{"Timestamp                       (process)[PID]\n", "kernel[0]: Darwin Kernel", "myapp[", "hello from the guest", "session: exec: logger (3 arguments)", "Log      - Default:"} {
		if !strings.Contains(show, want) {
			t.Errorf("log show lacks %q:\n%s", want, show)
		}
	}
	if out, _ := c.Output(ctx, "log", "show", "--style", "syslog", "--start", "2000-01-01", "--end", "2000-01-02"); strings.Contains(string(out), "kernel") {
		t.Errorf("log show --start/--end outside the guest's life shows entries:\n%s", out)
	}
	var stderr bytes.Buffer
	if code, _ := c.Run(ctx, []string{"log", "show", "--bogus"}, guest.Exec{Stderr: &stderr}); code != 64 || !strings.Contains(stderr.String(), "--bogus") {
		t.Errorf("log show --bogus: exit %d, %q", code, stderr.String())
	}
	console, _ := os.ReadFile(spec.ConsoleLogPath)
	if !strings.Contains(string(console), "Darwin Kernel") {
		t.Errorf("console log: %q", console)
	}
}

// TestStopWhileStarting: Stop during the boot delay ends Start with
// ErrInvalidState and frees the slot.
func TestStopWhileStarting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *vm.Options) { o.BootDelay = 5 * time.Second })
	m := e.create(e.spec("vm-abort"))
	res := make(chan error, 1)
	go func() { res <- m.Start(t.Context()) }()
	waitState(t, m, vm.StateStarting, 5*time.Second)
	if err := m.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, vm.ErrInvalidState) {
		t.Errorf("Start = %v, want ErrInvalidState", err)
	}
	waitState(t, m, vm.StateStopped, time.Second)
	if used, _ := UsedSlots(e.opts.StateDir, 2); used != 0 {
		t.Errorf("slot still held after an aborted start")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := m.Start(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start past its context = %v", err)
	}
	waitState(t, m, vm.StateStopped, time.Second)
}

func TestDiskInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a := e.start(e.spec("vm-disk-a"))
	b := e.create(e.spec("vm-disk-b"))
	if err := b.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second machine on the same disk: %v", err)
	}
	if b.State() != vm.StateStopped {
		t.Errorf("refused machine is %s", b.State())
	}

	// A plain `shutdown -h now` (no sudo) in the first guest powers it off
	// and unlocks the disk.
	var out bytes.Buffer
	code, err := e.client(a).RunShell(t.Context(), "shutdown -h now", guest.Exec{Stdout: &out})
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		err, code = nil, 0 // the guest went down before reporting, as real ones may
	}
	if err != nil || code != 0 || !strings.Contains(out.String(), "Shutdown NOW!") {
		t.Fatalf("shutdown -h now: exit %d, %q, %v", code, out.String(), err)
	}
	waitState(t, a, vm.StateStopped, 5*time.Second)
	if err := b.Start(t.Context()); err != nil {
		t.Fatalf("Start on the freed disk: %v", err)
	}
	cb := e.client(b)
	if code, _ := cb.RunShell(t.Context(), "shutdown -r now", guest.Exec{}); code != 64 {
		t.Errorf("shutdown -r: exit %d, want 64 (only power-off is simulated)", code)
	}

	// A guest panic ends in Error, frees the slot, and may boot again.
	cb.RunShell(t.Context(), "vzsim-panic", guest.Exec{})
	waitState(t, b, vm.StateError, 5*time.Second)
	if used, _ := UsedSlots(e.opts.StateDir, 2); used != 0 {
		t.Errorf("slots used after a panic: %d", used)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatalf("Start after a panic: %v", err)
	}
}

// TestLimitAcrossProcesses runs two guests in two other processes (as two
// supervisors would) and checks a third, here, is refused with
// ErrLimitExceeded until one of those processes dies.
func TestLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	dir := t.TempDir()
	var helpers []*exec.Cmd
	for i := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			"SIM_TEST_HELPER=1",
			"SIM_STATE="+e.opts.StateDir,
			"SIM_LEASES="+e.opts.LeasesPath,
			"SIM_PORT="+fmt.Sprint(e.opts.GuestSSHPort),
			"SIM_ID="+fmt.Sprintf("vm-proc-%d", i),
			"SIM_DISK="+makeDisk(t, dir, fmt.Sprintf("d%d.img", i)))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if !strings.HasPrefix(line, "running ") {
			t.Fatalf("helper %d: %q %v", i, line, err)
		}
		helpers = append(helpers, cmd)
	}
	if used, err := UsedSlots(e.opts.StateDir, 2); used != 2 || err != nil {
		t.Fatalf("UsedSlots = %d, %v; want 2", used, err)
	}
	third := e.create(e.spec("vm-third"))
	err := third.Start(t.Context())
	if !errors.Is(err, vm.ErrLimitExceeded) || !strings.Contains(err.Error(), "maximum supported number of active virtual machines") {
		t.Fatalf("third Start = %v, want ErrLimitExceeded with the framework's text", err)
	}
	if third.State() != vm.StateStopped {
		t.Errorf("refused machine is %s", third.State())
	}
	// Both other guests are leased and answer SSH.
	ls, _ := leases.Read(e.opts.LeasesPath)
	if len(ls) != 2 {
		t.Errorf("%d leases with two guests running", len(ls))
	}

	// A supervisor killed outright frees its slot (the kernel drops flocks).
	helpers[0].Process.Kill()
	helpers[0].Wait()
	if err := third.Start(t.Context()); err != nil {
		t.Fatalf("Start after a supervisor died: %v", err)
	}
}

// TestMain lets the test binary act as a VM supervisor process for
// TestLimitAcrossProcesses: start one guest, report, hold it until stdin
// closes.
func TestMain(m *testing.M) {
	if os.Getenv("SIM_TEST_HELPER") == "" {
		os.Exit(m.Run())
	}
	var port int
	fmt.Sscan(os.Getenv("SIM_PORT"), &port)
	drv, err := New(vm.Options{StateDir: os.Getenv("SIM_STATE"), LeasesPath: os.Getenv("SIM_LEASES"), BootDelay: time.Millisecond, GuestSSHPort: port})
	if err == nil {
		var mach vm.Machine
		mach, err = drv.Create(context.Background(), vm.Spec{ID: os.Getenv("SIM_ID"), CPUs: 1, MemoryBytes: 2 << 30, DiskPath: os.Getenv("SIM_DISK")})
		if err == nil {
			if err = mach.Start(context.Background()); err == nil {
				fmt.Println("running", mach.(*Machine).Addr())
				io.Copy(io.Discard, os.Stdin)
				mach.Stop(context.Background())
				os.Exit(0)
			}
		}
	}
	fmt.Println("error:", err)
	os.Exit(1)
}
