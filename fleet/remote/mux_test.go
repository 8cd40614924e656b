package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vzfleet/vzfleet/test/harness"
	"github.com/vzfleet/vzfleet/test/harness/sshd"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMain doubles as the mux's process: Mux.Command in these tests runs
// the test binary with "serve-mux DIR".
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "serve-mux" {
		if err := ServeMux(context.Background(), os.Args[2], slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
			slog.Error("mux", "err", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// muxConfig is srv's config with a mux of the test's own.
func muxConfig(t *testing.T, srv *sshd.Server) Config {
	t.Helper()
	m := testMux(t)
	return testConfig(t, srv, func(c *Config) { c.Mux = m })
}

// testMux is a mux of the test's own, stopped when the test ends.
func testMux(t *testing.T) *Mux {
	t.Helper()
	// Short: a Unix socket path must fit in 104 bytes.
	base, err := os.MkdirTemp("", "mux")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "ssh")
	t.Cleanup(func() {
		if err := StopMux(context.Background(), dir); err != nil {
			t.Error(err)
		}
		waitMuxGone(t, dir, "the mux to stop")
		os.RemoveAll(base)
	})
	return &Mux{Dir: dir, Persist: time.Minute, Command: []string{os.Args[0], "serve-mux", dir}}
}

func logins(srv *sshd.Server) int { return strings.Count(srv.Log(), "Accepted publickey") }

// muxPID is the pid of the one mux serving dir.
func muxPID(t *testing.T, dir string) int {
	t.Helper()
	pids := harness.ProcessesRunning("serve-mux", dir)
	if len(pids) != 1 {
		t.Fatalf("mux processes: %v", pids)
	}
	return pids[0]
}

// waitMuxGone waits until no mux serves dir.
func waitMuxGone(t *testing.T, dir, what string) {
	t.Helper()
	waitFor(t, func() bool { return len(harness.ProcessesRunning("serve-mux", dir)) == 0 }, what)
}

// echo runs `echo text` on h and fails the test, saying when, unless it
// printed text.
func echo(t *testing.T, h *SSH, text, when string) {
	t.Helper()
	res, err := h.Run(testContext(t), Cmd{Args: []string{"echo", text}})
	if err != nil || string(res.Stdout) != text+"\n" {
		t.Fatalf("%s: %q, %v", when, res.Stdout, err)
	}
}

// firstRun connects directly, as a run does when the mux holds nothing,
// and closes, which has the mux connect; it waits until the mux has.
func firstRun(t *testing.T, srv *sshd.Server, cfg Config) {
	t.Helper()
	before := logins(srv)
	h, err := Dial(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(testContext(t), Cmd{Args: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	waitFor(t, func() bool { return logins(srv) == before+2 }, "the mux to connect")
}

// borrow has a first run leave a connection to srv in cfg.Mux and
// returns a host that borrowed it.
func borrow(t *testing.T, srv *sshd.Server, cfg Config) *SSH {
	t.Helper()
	firstRun(t, srv, cfg)
	h, err := Dial(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.mu.Lock() // the connection's end may clear h.client meanwhile
	addr := h.client.RemoteAddr()
	h.mu.Unlock()
	if _, ok := addr.(*net.UnixAddr); !ok {
		t.Fatalf("connected to %v, not through the mux", addr)
	}
	return h
}

func TestMuxKeepsTheConnectionBetweenRuns(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	cfg := muxConfig(t, srv)
	m := cfg.Mux
	ctx := testContext(t)
	dir := t.TempDir()
	firstRun(t, srv, cfg)
	for i := range 3 {
		h, err := Dial(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		res, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}})
		var exit *ExitError
		if !errors.As(err, &exit) || exit.Code != 3 || string(res.Stdout) != "out\n" || exit.Stderr != "err\n" {
			t.Fatalf("relayed: %q, %v", res.Stdout, err)
		}
		content := fmt.Sprintf("run %d", i)
		file := filepath.Join(dir, "f")
		if err := h.Upload(ctx, Upload{Path: file, Content: strings.NewReader(content)}); err != nil {
			t.Fatal(err)
		}
		if b, err := h.ReadFile(ctx, file); err != nil || string(b) != content {
			t.Fatalf("read back %q, %v", b, err)
		}
		h.Close()
	}
	if n := logins(srv); n != 2 {
		t.Fatalf("%d logins, want 2: the first run's own and the mux's, reused by 3 runs", n)
	}
	conns, err := MuxConnections(ctx, m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	want := MuxConnection{Host: cfg.Name, Address: srv.User + "@" + srv.Addr, Up: true, Persist: time.Minute}
	if len(conns) != 1 || conns[0].Idle > 5*time.Second {
		t.Fatalf("the mux lists %+v, want %+v", conns, want)
	}
	if conns[0].Idle = 0; !reflect.DeepEqual(conns[0], want) {
		t.Fatalf("the mux lists %+v, want %+v", conns[0], want)
	}
	for path, want := range map[string]os.FileMode{m.Dir: 0o700 | os.ModeDir, muxHostKey(m.Dir): 0o600, muxLog(m.Dir): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

func TestMuxLendsAConnectionToOneClientAtATime(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	cfg := muxConfig(t, srv)
	ctx := testContext(t)
	firstRun(t, srv, cfg)
	dial := func() *SSH {
		h, err := Dial(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	a := dial()
	b := dial() // a has the mux's: b connects itself
	for _, h := range []*SSH{a, b} {
		if _, err := h.Run(ctx, Cmd{Args: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := logins(srv); n != 3 {
		t.Fatalf("%d logins, want 3 (the first run's, the mux's, b's)", n)
	}
	a.Close()
	c := dial()
	if _, err := c.Run(ctx, Cmd{Args: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	if n := logins(srv); n != 3 {
		t.Fatalf("%d logins, want 3: the mux's connection, back from a, is lent again", n)
	}
}

func TestMuxRedialsAHostThatRestarted(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	h := borrow(t, srv, muxConfig(t, srv))
	srv.Restart() // ends every connection it served
	echo(t, h, "back", "after the host restarted")
	if n := logins(srv); n != 3 {
		t.Fatalf("%d logins, want 3 (the mux redialled)", n)
	}
}

func TestMuxLeavesAChangedHostKeyToTheClient(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	cfg := muxConfig(t, srv)
	firstRun(t, srv, cfg)
	srv.RotateHostKey() // ends the mux's connection too
	_, err := Dial(testContext(t), cfg)
	if !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("want the changed key reported, got %v", err)
	}
}

// knownHostsLineWithNewKey is a known_hosts line for srv with a key it
// does not have.
func knownHostsLineWithNewKey(t *testing.T, srv *sshd.Server) string {
	t.Helper()
	return knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, newPublicKey(t))
}

func writeKnownHosts(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantNoMuxConnection fails the test unless the mux in dir holds nothing.
func wantNoMuxConnection(t *testing.T, dir, why string) {
	t.Helper()
	if conns, err := MuxConnections(testContext(t), dir); err != nil || len(conns) != 0 {
		t.Fatalf("the mux still holds %+v (%v); want none: %s", conns, err, why)
	}
}

func TestMuxChecksAHeldConnectionAgainstKnownHosts(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	cfg := muxConfig(t, srv)
	known := cfg.KnownHostsFiles[0]
	for _, tc := range []struct {
		name  string
		lines []string
		want  error
	}{
		{"another key recorded", []string{knownHostsLineWithNewKey(t, srv)}, ErrHostKeyChanged},
		{"the key removed", nil, ErrHostKeyUnknown},
	} {
		// The mux connects anew each time (firstRun counts the logins):
		// the previous case's connection was closed.
		writeKnownHosts(t, known, srv.KnownHostsLine())
		firstRun(t, srv, cfg)
		writeKnownHosts(t, known, tc.lines...)
		if _, err := Dial(testContext(t), cfg); !errors.Is(err, tc.want) {
			t.Fatalf("%s: want %v from the host, not a borrowed connection; got %v", tc.name, tc.want, err)
		}
		wantNoMuxConnection(t, cfg.Mux.Dir, tc.name)
	}
}

func TestMuxThatCannotStartMeansADirectConnection(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	ctx := testContext(t)
	open := t.TempDir()
	os.Chmod(open, 0o755)
	for name, m := range map[string]*Mux{
		"no mux program":  {Dir: filepath.Join(t.TempDir(), "ssh"), Persist: time.Minute, Command: []string{"/bin/false"}},
		"open directory":  {Dir: open, Persist: time.Minute, Command: []string{os.Args[0], "serve-mux", open}},
		"socket too long": {Dir: filepath.Join(t.TempDir(), strings.Repeat("d", 100)), Persist: time.Minute},
	} {
		h, err := Dial(ctx, testConfig(t, srv, func(c *Config) {
			c.Mux = m
			c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := h.Run(ctx, Cmd{Args: []string{"true"}}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h.Close()
	}
	if _, err := os.Stat(muxSocket(open)); err == nil {
		t.Fatal("a mux started in a directory other users can enter")
	}
}

func TestPrivateDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	if err := privateDir(filepath.Join(base, "a", "b")); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	if err := privateDir(open); err == nil || !strings.Contains(err.Error(), "open to other users") {
		t.Fatalf("want a mode error, got %v", err)
	}
	if os.Geteuid() == 0 {
		theirs := filepath.Join(base, "theirs")
		os.Mkdir(theirs, 0o700)
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := privateDir(theirs); err == nil || !strings.Contains(err.Error(), "belongs to user 65534") {
			t.Fatalf("want an owner error, got %v", err)
		}
	}
}

// A rebuilt fleetctl with the same version string (every development
// build is "dev") does not share the mux an earlier build started; the
// same executable always finds its own.
func TestMuxNameFollowsTheExecutable(t *testing.T) {
	t.Parallel()
	exe := filepath.Join(t.TempDir(), "fleetctl")
	if err := os.WriteFile(exe, []byte("build 1"), 0o755); err != nil {
		t.Fatal(err)
	}
	first := muxNameFor("dev", fileID(exe))
	if again := muxNameFor("dev", fileID(exe)); again != first {
		t.Errorf("the same executable is named %s, then %s", first, again)
	}
	if err := os.WriteFile(exe, []byte("build 2, longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if rebuilt := muxNameFor("dev", fileID(exe)); rebuilt == first {
		t.Errorf("a rebuilt executable shares the mux name %s", first)
	}
	if muxNameFor("v1.0.0", "") == muxNameFor("v1.0.1", "") {
		t.Error("two versions share a mux name")
	}
	if !regexp.MustCompile(`^mux-[0-9a-f]{8}$`).MatchString(first) {
		t.Errorf("mux name %q", first)
	}
}

// ssh-mux stop reaches every build's mux in the directory, not only this
// build's: a rebuilt fleetctl still closes what an earlier build keeps.
// A socket no mux listens on any more is passed over.
func TestStopMuxStopsEveryBuildsMux(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	cfg := muxConfig(t, srv)
	m := cfg.Mux
	firstRun(t, srv, cfg)

	// Another build's mux, as its name and protocol make it.
	sock := filepath.Join(m.Dir, "mux-0ther000.sock")
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hostKeyOf(sock), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	stopped := make(chan struct{})
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		cfg := &ssh.ServerConfig{NoClientAuth: true, Config: muxSSH}
		cfg.AddHostKey(signer)
		conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
		if err != nil {
			return
		}
		defer conn.Close()
		go func() {
			for ch := range chans {
				ch.Reject(ssh.Prohibited, "not in this test")
			}
		}()
		for r := range reqs {
			r.Reply(r.Type == stopRequest, nil)
			if r.Type == stopRequest {
				close(stopped)
				return
			}
		}
	}()
	if err := os.WriteFile(filepath.Join(m.Dir, "mux-g0ne0000.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := StopMux(testContext(t), m.Dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the other build's mux was not asked to stop")
	}
	waitMuxGone(t, m.Dir, "this build's mux to stop")
}

func TestPeerUID(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", sock)
		if err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if uid, err := peerUID(c); err != nil || uid != os.Geteuid() {
		t.Fatalf("peerUID = %d, %v; want %d", uid, err, os.Geteuid())
	}
}

// The mux outlives the run that starts it: it must not keep the secrets a
// run may carry in its environment.
func TestMuxKeepsNoSecretsFromTheEnvironment(t *testing.T) {
	t.Setenv("GUEST_PASSWORD", "hunter2-in-the-env")
	srv := sshd.Start(t, sshd.Options{})
	cfg := muxConfig(t, srv)
	m := cfg.Mux
	firstRun(t, srv, cfg)
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", muxPID(t, m.Dir)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(env), "hunter2") || !strings.Contains(string(env), "HOME=") {
		t.Fatalf("the mux's environment: %q", env)
	}
}

func TestMuxKilledMidRunMeansADirectConnection(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	cfg := muxConfig(t, srv)
	h := borrow(t, srv, cfg)
	if err := syscall.Kill(muxPID(t, cfg.Mux.Dir), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	echo(t, h, "still here", "after the mux died")
	if n := logins(srv); n != 3 {
		t.Fatalf("%d logins, want 3 (the run connected itself)", n)
	}
}

func TestWriteMuxTable(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	err := WriteMuxTable(&b, []MuxConnection{
		{Host: "mini-01", Address: "admin@10.0.0.11:22", Up: true, Idle: 12 * time.Second, Persist: time.Minute},
		{Host: "mini-02", Address: "admin@10.0.0.12:22", Up: true, Lent: true, Persist: time.Minute},
		{Host: "studio-1", Address: "ci@studio-1.lab:2222", Jumps: []string{"ops@bastion:22"}, Idle: 3 * time.Second, Persist: 10 * time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden := "testdata/mux-status.golden"
	if *update {
		os.WriteFile(golden, b.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("output differs from %s (run with -update after checking):\n%s", golden, b.Bytes())
	}
}

func TestMuxDialsThroughJumpHosts(t *testing.T) {
	t.Parallel()
	jump := sshd.Start(t, sshd.Options{})
	target := sshd.Start(t, sshd.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(jump.KnownHostsLine()+"\n"+target.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: "mac-behind-bastion", Address: target.Host, Port: target.Port, User: target.User,
		IdentityFiles: []string{target.ClientKeyFile, jump.ClientKeyFile}, NoAgent: true, KnownHostsFiles: []string{kh},
		ProxyJump: fmt.Sprintf("%s@%s:%d", jump.User, jump.Host, jump.Port), SSHConfigFile: "none", KeepAlive: -1,
		Mux: testMux(t)}
	h := borrow(t, target, cfg)
	echo(t, h, "via the mux and the bastion", "run")
	if n := logins(jump); n != 2 {
		t.Fatalf("the bastion saw %d logins, want 2 (the first run's, the mux's)", n)
	}
	conns, err := MuxConnections(testContext(t), cfg.Mux.Dir)
	if err != nil || len(conns) != 1 || len(conns[0].Jumps) != 1 || conns[0].Jumps[0] != jump.User+"@"+jump.Addr {
		t.Fatalf("the mux lists %+v, %v", conns, err)
	}
	h.Close()
	// The bastion's key is checked again too.
	writeKnownHosts(t, kh, knownHostsLineWithNewKey(t, jump), target.KnownHostsLine())
	if _, err := Dial(testContext(t), cfg); !errors.Is(err, ErrHostKeyChanged) || !strings.Contains(err.Error(), "jump host") {
		t.Fatalf("want the bastion's changed key reported, got %v", err)
	}
	wantNoMuxConnection(t, cfg.Mux.Dir, "known_hosts no longer accepts the bastion")
}
