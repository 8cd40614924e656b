package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/test/harness/sshd"
	"golang.org/x/crypto/ssh"
)

// testConfig reaches srv with its client key and a known_hosts holding its
// key; mods adjust it.
func testConfig(t *testing.T, srv *sshd.Server, mods ...func(*Config)) Config {
	t.Helper()
	cfg := Config{
		Name:            "mac-" + strconv.Itoa(srv.Port),
		Address:         srv.Host,
		Port:            srv.Port,
		User:            srv.User,
		IdentityFiles:   []string{srv.ClientKeyFile},
		NoAgent:         true,
		KnownHostsFiles: []string{srv.WriteKnownHosts(t)},
		SSHConfigFile:   "none",
		ConnectTimeout:  5 * time.Second,
		KeepAlive:       -1,
		RetryBackoff:    50 * time.Millisecond,
	}
	for _, m := range mods {
		m(&cfg)
	}
	return cfg
}

func dialTest(t *testing.T, srv *sshd.Server, mods ...func(*Config)) *SSH {
	t.Helper()
	h, err := Dial(testContext(t), testConfig(t, srv, mods...))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// hostsUnderTest gives the Local host and an SSH host on a real sshd,
// directly and through the mux, so every behaviour is checked on each.
func hostsUnderTest(t *testing.T) map[string]Host {
	srv := sshd.Start(t, sshd.Options{})
	direct := dialTest(t, srv)
	viaMux := borrow(t, srv, testConfig(t, srv, func(c *Config) { c.Mux = testMux(t) }))
	return map[string]Host{"local": NewLocal(LocalOptions{}), "ssh": direct, "ssh-mux": viaMux}
}

func TestRun(t *testing.T) {
	t.Parallel()
	for name, h := range hostsUnderTest(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)

			t.Run("argv arrives unchanged", func(t *testing.T) {
				res, err := h.Run(ctx, Cmd{Args: append([]string{"printf", `%s\0`}, trickyArgs...)})
				if err != nil {
					t.Fatal(err)
				}
				if got := splitNUL(res.Stdout); strings.Join(got, "\x00") != strings.Join(trickyArgs, "\x00") {
					t.Fatalf("received\n%q\nwant\n%q", got, trickyArgs)
				}
			})

			t.Run("exit status", func(t *testing.T) {
				res, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", "echo oops >&2; exit 7"}})
				var exit *ExitError
				if !errors.As(err, &exit) || exit.Code != 7 || res.ExitCode != 7 {
					t.Fatalf("want exit 7, got %v (result %d)", err, res.ExitCode)
				}
				if exit.Stderr != "oops\n" || !strings.Contains(err.Error(), "exited with status 7: oops") {
					t.Fatalf("error lacks stderr: %v", err)
				}
			})

			t.Run("signal", func(t *testing.T) {
				_, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", "kill -TERM $$"}})
				var exit *ExitError
				if !errors.As(err, &exit) || exit.Code != -1 || exit.Signal != "TERM" {
					t.Fatalf("want killed by TERM, got %#v", err)
				}
			})

			t.Run("stdin, dir and env", func(t *testing.T) {
				dir := t.TempDir()
				res, err := h.Run(ctx, Cmd{
					Args:  []string{"sh", "-c", `pwd; echo "$GREETING"; cat`},
					Dir:   dir,
					Env:   []string{"GREETING=hello 'world'"},
					Stdin: strings.NewReader("from stdin\n"),
				})
				if err != nil {
					t.Fatal(err)
				}
				want := dir + "\nhello 'world'\nfrom stdin\n"
				if string(res.Stdout) != want {
					t.Fatalf("got %q, want %q", res.Stdout, want)
				}
			})

			t.Run("streaming", func(t *testing.T) {
				var out, errOut bytes.Buffer
				res, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", "echo out; echo err >&2"}, Stdout: &out, Stderr: &errOut})
				if err != nil || out.String() != "out\n" || errOut.String() != "err\n" || len(res.Stdout) != 0 {
					t.Fatalf("streamed %q/%q, captured %q, err %v", out.String(), errOut.String(), res.Stdout, err)
				}
			})

			t.Run("sensitive output stays out of errors", func(t *testing.T) {
				_, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", "echo s3cret >&2; exit 1", "s3cret-arg"}, Env: []string{"TOKEN=s3cret-env"}, Sensitive: true})
				if err == nil || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("want an error without the secret, got %v", err)
				}
			})

			t.Run("timeout", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				start := time.Now()
				var out bytes.Buffer
				_, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", "for i in $(seq 40); do echo tick; sleep 0.05; done"}, Stdout: &out})
				if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
					t.Fatalf("want a deadline error soon, got %v after %v", err, time.Since(start))
				}
				// Nothing reaches the caller's writer after Run returned (the
				// race detector checks this too).
				n := out.Len()
				time.Sleep(300 * time.Millisecond)
				if out.Len() != n {
					t.Fatal("output arrived after Run returned")
				}
			})

			t.Run("cancel kills the process group", func(t *testing.T) {
				// Unique sleep durations mark this test's processes.
				mark := fmt.Sprintf("%d.%06d", 300+mrand.IntN(600), mrand.IntN(1000000))
				ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				defer cancel()
				_, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", "sleep " + mark + " & sleep " + mark + "; wait"}})
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("want a deadline error, got %v", err)
				}
				waitFor(t, func() bool { return len(processesWith("sleep\x00"+mark)) == 0 }, "the cancelled command's processes to end")
			})

			t.Run("many at once", func(t *testing.T) {
				// More than sshd's MaxSessions (10) on one connection, and
				// enough short commands that a race between a command's
				// answer and its end shows.
				var wg sync.WaitGroup
				errs := make(chan error, 25*16)
				for i := range 25 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := range 16 {
							want := fmt.Sprintf("%d.%d", i, j)
							res, err := h.Run(ctx, Cmd{Args: []string{"echo", want}})
							if err == nil && string(res.Stdout) != want+"\n" {
								err = errors.New("wrong output " + string(res.Stdout))
							}
							errs <- err
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
			})
		})
	}
}

func TestUnknownHostRefused(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	empty := filepath.Join(t.TempDir(), "known_hosts")
	_, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) { c.KnownHostsFiles = []string{empty} }))
	var unknown *UnknownHostError
	if !errors.Is(err, ErrHostKeyUnknown) || !errors.As(err, &unknown) {
		t.Fatalf("want an unknown host error, got %v", err)
	}
	for _, want := range []string{srv.Addr, "ssh-keyscan -p " + strconv.Itoa(srv.Port), "--accept-new-host-keys", fingerprint(srv)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("known_hosts was written without --accept-new-host-keys")
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	kh := srv.WriteKnownHosts(t)
	oldFP := fingerprint(srv)
	srv.RotateHostKey()
	for _, acceptNew := range []bool{false, true} {
		_, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) {
			c.KnownHostsFiles = []string{kh}
			c.AcceptNewHostKeys = acceptNew
		}))
		var changed *HostKeyChangedError
		if !errors.Is(err, ErrHostKeyChanged) || !errors.As(err, &changed) {
			t.Fatalf("accept-new=%v: want a changed-key error, got %v", acceptNew, err)
		}
		for _, want := range []string{"HOST KEY CHANGED", oldFP, fingerprint(srv), "ssh-keygen -R '[127.0.0.1]:" + strconv.Itoa(srv.Port) + "'", kh + ":1"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
	}
	if data, _ := os.ReadFile(kh); strings.Count(string(data), "\n") != 1 {
		t.Fatalf("known_hosts changed:\n%s", data)
	}
}

func fingerprint(srv *sshd.Server) string { return ssh.FingerprintSHA256(srv.HostKey()) }

func TestAcceptNewHostKeys(t *testing.T) {
	t.Parallel()
	kh := filepath.Join(t.TempDir(), "ssh", "known_hosts")
	if err := os.MkdirAll(filepath.Dir(kh), 0o700); err != nil {
		t.Fatal(err)
	}
	// An existing file without a final newline must stay intact.
	if err := os.WriteFile(kh, []byte("# operator's notes"), 0o600); err != nil {
		t.Fatal(err)
	}
	servers := []*sshd.Server{sshd.Start(t, sshd.Options{}), sshd.Start(t, sshd.Options{}), sshd.Start(t, sshd.Options{})}
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) {
				c.KnownHostsFiles = []string{kh}
				c.AcceptNewHostKeys = true
			}))
			if err != nil {
				t.Errorf("accept-new dial: %v", err)
				return
			}
			h.Close()
		}()
	}
	wg.Wait()
	data, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 4 || lines[0] != "# operator's notes" {
		t.Fatalf("known_hosts:\n%s", data)
	}
	for _, srv := range servers {
		if !strings.Contains(string(data), srv.KnownHostsLine()+"\n") {
			t.Errorf("known_hosts lacks %s", srv.KnownHostsLine())
		}
		// Recorded keys now verify strictly.
		h, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) { c.KnownHostsFiles = []string{kh} }))
		if err != nil {
			t.Fatalf("strict dial after accept-new: %v", err)
		}
		h.Close()
	}
	if st, _ := os.Stat(kh); st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v, want 0600", st.Mode().Perm())
	}
}

func TestJumpHostFromSSHConfig(t *testing.T) {
	t.Parallel()
	jump := sshd.Start(t, sshd.Options{LogLevel: "DEBUG1"})
	target := sshd.Start(t, sshd.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(jump.KnownHostsLine()+"\n"+target.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "config")
	writeFile(t, config, `# fleet lab
Host bastion
    HostName 127.0.0.1
    Port `+strconv.Itoa(jump.Port)+`
    IdentityFile `+jump.ClientKeyFile+`

Host mac-*
    User `+target.User+`

Host mac-1
    HostName 127.0.0.1
    Port `+strconv.Itoa(target.Port)+`
    IdentityFile `+target.ClientKeyFile+`
    ProxyJump bastion

Host *
    UserKnownHostsFile `+kh+`
`)
	h, err := Dial(testContext(t), Config{Address: "mac-1", SSHConfigFile: config, NoAgent: true, KeepAlive: -1})
	if err != nil {
		t.Fatalf("Dial through the jump host: %v", err)
	}
	defer h.Close()
	res, err := h.Run(testContext(t), Cmd{Args: []string{"echo", "via jump"}})
	if err != nil || string(res.Stdout) != "via jump\n" {
		t.Fatalf("run: %q, %v", res.Stdout, err)
	}
	// The jump host's sshd forwarded a connection to the target's port.
	want := "server_request_direct_tcpip: originator 0.0.0.0 port 0, target " + "127.0.0.1 port " + strconv.Itoa(target.Port)
	waitFor(t, func() bool { return strings.Contains(jump.Log(), want) }, "the jump host's log to show "+want)
}

func TestDialRetriesUntilListening(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{Defer: true})
	records := &recorder{}
	type result struct {
		h   *SSH
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) {
			c.DialAttempts = 40
			c.RetryBackoff = 100 * time.Millisecond
			c.Logger = slog.New(records)
		}))
		done <- result{h, err}
	}()
	time.Sleep(700 * time.Millisecond)
	srv.Restart()
	r := <-done
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	r.h.Close()
	if records.count("retrying") == 0 {
		t.Fatal("Dial connected without retrying; the test did not exercise retries")
	}
}

func TestDialDoesNotRetryAuthOrHostKeyErrors(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	other := sshd.Start(t, sshd.Options{Defer: true}) // its client key is not authorized on srv
	tests := map[string]func(*Config){
		"auth":     func(c *Config) { c.IdentityFiles = []string{other.ClientKeyFile} },
		"host key": func(c *Config) { c.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "none")} },
	}
	for name, mod := range tests {
		records := &recorder{}
		_, err := Dial(testContext(t), testConfig(t, srv, mod, func(c *Config) { c.Logger = slog.New(records) }))
		if err == nil {
			t.Fatalf("%s: Dial succeeded", name)
		}
		if n := records.count("retrying"); n != 0 {
			t.Errorf("%s: retried %d times: %v", name, n, err)
		}
		if name == "auth" && !strings.Contains(err.Error(), "authentication as \""+srv.User+"\" failed") {
			t.Errorf("auth error unclear: %v", err)
		}
	}
}

func TestHostDown(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	srv.Stop()
	start := time.Now()
	_, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) { c.DialAttempts = 3 }))
	if err == nil || !strings.Contains(err.Error(), "connecting to "+srv.Addr) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("want connection refused naming the address, got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("giving up took %v", time.Since(start))
	}
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{Defer: true})
	encrypted := filepath.Join(t.TempDir(), "id_encrypted")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", encrypted).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	_, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) { c.IdentityFiles = []string{encrypted} }))
	if err == nil || !strings.Contains(err.Error(), "is encrypted with a passphrase") || !strings.Contains(err.Error(), "ssh-add "+encrypted) {
		t.Fatalf("want a clear encrypted-key error, got %v", err)
	}
	_, err = Dial(testContext(t), testConfig(t, srv, func(c *Config) { c.IdentityFiles = []string{"/nonexistent/id_ed25519"} }))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/id_ed25519") {
		t.Fatalf("want an error naming the missing key file, got %v", err)
	}
}

func TestAgentAuth(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agentCmd.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() {
		_ = agentCmd.Process.Kill()
		_ = agentCmd.Wait()
	})
	waitFor(t, func() bool { _, err := os.Stat(sock); return err == nil }, "ssh-agent's socket")

	// The agent holds 7 unrelated keys before the right one: more than
	// sshd's MaxAuthTries (6) allows to try.
	keys := []string{}
	for i := range 7 {
		keys = append(keys, writeKey(t, filepath.Join(dir, "decoy"+strconv.Itoa(i))))
	}
	keys = append(keys, srv.ClientKeyFile)
	add := exec.Command("ssh-add", keys...)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	// The identity file is the same key, encrypted: usable through the agent.
	encrypted := filepath.Join(dir, "id_encrypted")
	data, err := os.ReadFile(srv.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, encrypted, string(data))
	if out, err := exec.Command("ssh-keygen", "-q", "-p", "-P", "", "-N", "passphrase", "-f", encrypted).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -p: %v: %s", err, out)
	}

	config := filepath.Join(dir, "config")
	writeFile(t, config, "Host *\n  IdentityAgent "+sock+"\n  IdentityFile "+encrypted+"\n")
	dial := func(identitiesOnly bool) error {
		h, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) {
			c.IdentityFiles = nil
			c.NoAgent = false
			c.SSHConfigFile = config
			c.IdentitiesOnly = identitiesOnly
		}))
		if err == nil {
			h.Close()
		}
		return err
	}
	if err := dial(true); err != nil {
		t.Fatalf("Dial with IdentitiesOnly and the agent's key: %v", err)
	}
	if err := dial(false); err == nil || !strings.Contains(err.Error(), "IdentitiesOnly yes") {
		t.Fatalf("all agent keys offered: want sshd to give up with a hint, got %v", err)
	}
}

// writeKey writes a new unencrypted ed25519 private key file.
func writeKey(t *testing.T, path string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSudo(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	ctx := testContext(t)

	t.Run("elevates with sudo -n", func(t *testing.T) {
		if _, err := exec.LookPath("sudo"); err != nil {
			t.Fatal("sudo is not installed (apt-get install sudo)")
		}
		h := dialTest(t, srv, func(c *Config) { c.Sudo = true })
		res, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", `echo "$SUDO_COMMAND" $(id -u)`}, Sudo: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(res.Stdout); !strings.HasPrefix(got, "/usr/bin/sh -c") && !strings.HasPrefix(got, "/bin/sh -c") || !strings.HasSuffix(got, " 0\n") {
			t.Fatalf("not run through sudo as root: %q", got)
		}
		// A cancelled command under sudo ends with its children.
		mark := fmt.Sprintf("%d.%06d", 300+mrand.IntN(600), mrand.IntN(1000000))
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, err := h.Run(cctx, Cmd{Args: []string{"sh", "-c", "sleep " + mark + " & sleep " + mark + "; wait"}, Sudo: true}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want a deadline error, got %v", err)
		}
		waitFor(t, func() bool { return len(processesWith("sleep\x00"+mark)) == 0 }, "the cancelled sudo command's processes to end")
		// Without Cmd.Sudo, no sudo.
		res, err = h.Run(ctx, Cmd{Args: []string{"sh", "-c", `echo "[$SUDO_COMMAND]"`}})
		if err != nil || string(res.Stdout) != "[]\n" {
			t.Fatalf("unprivileged command went through sudo: %q %v", res.Stdout, err)
		}
	})

	t.Run("password required", func(t *testing.T) {
		// A stand-in printing what sudo 1.9 prints for `sudo -n` when the
		// sudoers policy wants a password (root never gets asked here).
		stub := filepath.Join(t.TempDir(), "sudo")
		writeFile(t, stub, "#!/bin/sh\n[ \"$1\" = -n ] || { echo 'stub: called without -n' >&2; exit 2; }\necho 'sudo: a password is required' >&2\nexit 1\n")
		if err := os.Chmod(stub, 0o755); err != nil {
			t.Fatal(err)
		}
		h := dialTest(t, srv, func(c *Config) { c.Sudo = true; c.SudoPath = stub })
		_, err := h.Run(ctx, Cmd{Args: []string{"launchctl", "print", "system"}, Sudo: true})
		var sudoErr *SudoError
		var exit *ExitError
		if !errors.Is(err, ErrSudoPassword) || !errors.As(err, &sudoErr) || !errors.As(err, &exit) {
			t.Fatalf("want ErrSudoPassword, got %v", err)
		}
		for _, want := range []string{"sudo requires a password for user " + srv.User, "NOPASSWD", "sudo -n"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
		// An upload with sudo fails the same way and leaves nothing behind.
		dir := t.TempDir()
		err = h.Upload(ctx, Upload{Path: filepath.Join(dir, "f"), Content: strings.NewReader("x"), Sudo: true})
		if !errors.Is(err, ErrSudoPassword) {
			t.Fatalf("upload: want ErrSudoPassword, got %v", err)
		}
		assertDirHolds(t, dir)
	})

	t.Run("policy refuses the SFTP server", func(t *testing.T) {
		// A sudoers policy may allow shell commands but not sftp-server:
		// files for root then go through `sudo sh -c 'cat >'`.
		stub := filepath.Join(t.TempDir(), "sudo")
		writeFile(t, stub, "#!/bin/sh\ncase \"$*\" in *sftp-server*) echo 'Sorry, user may not run sftp-server as root.' >&2; exit 1;; esac\nexec sudo \"$@\"\n")
		if err := os.Chmod(stub, 0o755); err != nil {
			t.Fatal(err)
		}
		h := dialTest(t, srv, func(c *Config) { c.Sudo = true; c.SudoPath = stub })
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		n, err := UploadAll(ctx, h, []Upload{
			{Path: a, Content: strings.NewReader("secret-a"), Mode: 0o600, Sudo: true},
			{Path: b, Content: strings.NewReader("b"), SHA256: sum("b"), Mode: 0o644, KeepPrevious: true, Sudo: true},
		})
		if err != nil || n != 2 {
			t.Fatalf("UploadAll through sudo without sftp-server: %d done, %v", n, err)
		}
		if h.writesAsRoot(ctx) {
			t.Fatal("root SFTP reported available although the policy refuses sftp-server")
		}
		assertFile(t, a, "secret-a", 0o600, 0)
		assertFile(t, b, "b", 0o644, 0)
		assertDirHolds(t, dir, "a", "b")

		// sudo's refusal is the command's exit status: it is remembered.
		c, done, err := h.connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, refused, err := h.startRoot(ctx, c, done); err == nil || !refused {
			t.Fatalf("startRoot with the policy refusing: refused=%t, %v", refused, err)
		}
	})

	t.Run("a lost connection is not a refusal", func(t *testing.T) {
		h := dialTest(t, srv, func(c *Config) { c.Sudo = true })
		c, done, err := h.connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		<-done
		if _, refused, err := h.startRoot(ctx, c, done); err == nil || refused {
			t.Fatalf("startRoot on a closed connection: refused=%t, %v", refused, err)
		}
		// The next call redials and serves root's files over SFTP.
		if !h.writesAsRoot(ctx) {
			t.Fatal("no SFTP as root after the connection came back")
		}
	})
}

// recorder is a slog.Handler counting messages.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// assertDirHolds fails unless dir holds exactly the named entries.
func assertDirHolds(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

func TestKeepAliveDropsHungConnection(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	h := dialTest(t, srv, func(c *Config) { c.KeepAlive = 500 * time.Millisecond })
	ctx := testContext(t)
	if _, err := h.Run(ctx, Cmd{Args: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	waitFor(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.client == nil
	}, "keepalives to drop the hung connection")
	srv.Thaw()
	// The next command dials again.
	if res, err := h.Run(ctx, Cmd{Args: []string{"echo", "back"}}); err != nil || string(res.Stdout) != "back\n" {
		t.Fatalf("after reconnect: %q, %v", res.Stdout, err)
	}
}

// A host with several host keys presents the type known_hosts records,
// not the one x/crypto/ssh prefers.
func TestHostKeyAlgorithmsFollowKnownHosts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaKey := filepath.Join(dir, "host_rsa")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", rsaKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	srv := sshd.Start(t, sshd.Options{ExtraConfig: []string{"HostKey " + rsaKey}})
	pub, err := os.ReadFile(rsaKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	writeFile(t, kh, "[127.0.0.1]:"+strconv.Itoa(srv.Port)+" "+string(pub))
	h, err := Dial(testContext(t), testConfig(t, srv, func(c *Config) { c.KnownHostsFiles = []string{kh} }))
	if err != nil {
		t.Fatalf("Dial with only the RSA key known: %v", err)
	}
	h.Close()

	// Only an ECDSA key known, which the host does not have: a changed key.
	other := filepath.Join(dir, "other_ecdsa")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err = os.ReadFile(other + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, kh, "[127.0.0.1]:"+strconv.Itoa(srv.Port)+" "+string(pub))
	_, err = Dial(testContext(t), testConfig(t, srv, func(c *Config) { c.KnownHostsFiles = []string{kh} }))
	if !errors.Is(err, ErrHostKeyChanged) || !strings.Contains(err.Error(), "no key of the recorded types") {
		t.Fatalf("want a changed-key error, got %v", err)
	}
}

func TestOneConnectionPerHost(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	h := dialTest(t, srv)
	ctx := testContext(t)
	dir := t.TempDir()
	for i := range 3 {
		if _, err := h.Run(ctx, Cmd{Args: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
		if err := h.Upload(ctx, Upload{Path: filepath.Join(dir, "f"), Content: strings.NewReader(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.ReadFile(ctx, filepath.Join(dir, "f")); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Stat(ctx, filepath.Join(dir, "f")); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(srv.Log(), "Accepted publickey"); n != 1 {
		t.Fatalf("%d logins, want 1 connection for everything", n)
	}
}

// processesWith lists pids whose NUL-separated command line contains s.
func processesWith(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Closing a host whose sshd hangs returns at once: the connection goes
// first, so the SFTP clients on it stop waiting for their servers.
func TestCloseDoesNotWaitForAHungHost(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	defer srv.Thaw()
	h := dialTest(t, srv, func(c *Config) { c.Sudo = true })
	ctx := testContext(t)
	if _, err := h.Stat(ctx, "/"); err != nil {
		t.Fatal(err)
	}
	if !h.writesAsRoot(ctx) {
		t.Fatal("no SFTP as root")
	}
	srv.Freeze()
	closed := make(chan error, 1)
	go func() { closed <- h.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waiting for a hung host after 10s")
	}
}

// A command cancelled just before its host is closed is still killed: a
// program that exits right after giving up on a host leaves nothing
// running there.
func TestCloseKillsCancelledCommands(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	h := dialTest(t, srv)
	mark := fmt.Sprintf("%d.%06d", 300+mrand.IntN(600), mrand.IntN(1000000))
	ctx, cancel := context.WithTimeout(testContext(t), 500*time.Millisecond)
	defer cancel()
	if _, err := h.Run(ctx, Cmd{Args: []string{"sleep", mark}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(processesWith("sleep\x00"+mark)) == 0 }, "the cancelled command to be killed")
}
