//go:build linux

package machost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vzfleet/vzfleet/test/harness"
)

// sshRun runs cmd on h over SSH and returns stdout, stderr and the exit code.
func sshRun(t *testing.T, h *Host, cmd string) (string, string, int) {
	t.Helper()
	c, err := h.Dial(context.Background())
	if err != nil {
		t.Fatalf("%s: dial: %v", h.Name, err)
	}
	defer c.Close()
	return sessionRun(t, c, cmd, nil)
}

func sessionRun(t *testing.T, c *ssh.Client, cmd string, stdin []byte) (string, string, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if stdin != nil {
		s.Stdin = bytes.NewReader(stdin)
	}
	err = s.Run(cmd)
	code := 0
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitStatus()
	} else if err != nil {
		t.Fatalf("%q: %v", cmd, err)
	}
	return stdout.String(), stderr.String(), code
}

func mustRun(t *testing.T, h *Host, cmd string) string {
	t.Helper()
	out, errOut, code := sshRun(t, h, cmd)
	if code != 0 {
		t.Fatalf("%s: %q exited %d: %s%s", h.Name, cmd, code, out, errOut)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLab(t *testing.T) {
	harness.RequireRoot(t)
	start := time.Now()
	lab := LabT(t, LabOptions{Hosts: []HostOptions{
		{Name: "mac-01", MacOSVersion: "15.3"},
		{Name: "mac-02", MacOSVersion: "14.6", CPUs: 8, MemoryBytes: 24 << 30},
		{Name: "mac-03", MacOSVersion: "15.5", NoHVSupport: true},
	}})
	t.Logf("3 hosts up in %s", time.Since(start).Round(time.Millisecond))
	h1, h2, h3 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]

	t.Run("identity", func(t *testing.T) {
		seen := map[string]bool{}
		for _, h := range lab.Hosts {
			if seen[h.IP] || !strings.HasPrefix(h.IP, strings.TrimSuffix(lab.Gateway, "1")) {
				t.Fatalf("%s: address %s (gateway %s)", h.Name, h.IP, lab.Gateway)
			}
			seen[h.IP] = true
			out := mustRun(t, h, "hostname; uname -m; uname -s; sw_vers -productVersion; echo $PATH; echo $SSH_CONNECTION")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 6 || lines[0] != h.Name || lines[1] != "arm64" || lines[2] != "Darwin" ||
				lines[3] != h.Options.MacOSVersion || lines[4] != macPATH || !strings.HasSuffix(lines[5], h.IP+" 22") {
				t.Fatalf("%s answered:\n%s", h.Name, out)
			}
		}
		if out := mustRun(t, h2, "sysctl -n hw.ncpu hw.memsize machdep.cpu.brand_string kern.hv_support; uname -r"); out != "8\n25769803776\nApple M2 Pro\n1\n23.6.0\n" {
			t.Fatalf("mac-02 sysctl/uname: %q", out)
		}
		if out := mustRun(t, h3, "sysctl -n kern.hv_support; sw_vers"); out != "0\nProductName:\t\tmacOS\nProductVersion:\t\t15.5\nBuildVersion:\t\t24F74\n" {
			t.Fatalf("mac-03: %q", out)
		}
		// Command runs inside a host without SSH.
		cmd, err := h3.Command(context.Background(), "sh", "-c", "hostname; sw_vers -buildVersion")
		if err != nil {
			t.Fatal(err)
		}
		if out, err := cmd.Output(); err != nil || string(out) != "mac-03\n24F74\n" {
			t.Fatalf("Command: %q, %v", out, err)
		}
		if lab.Host("mac-02") != h2 || lab.Host("nope") != nil {
			t.Fatal("Lab.Host")
		}
		// The stand-ins live where macOS keeps them; the hosts resolve each
		// other's names; root:wheel works.
		mustRun(t, h1, "test -x /usr/bin/sw_vers && test -x /bin/launchctl && test -x /usr/sbin/sysctl && getent hosts mac-02 | grep -q "+h2.IP+" && touch /var/root/x && chown root:wheel /var/root/x")
	})

	t.Run("filesystems", func(t *testing.T) {
		c, err := h1.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, e, code := sessionRun(t, c, "cat > /usr/local/bin/hello && chmod 755 /usr/local/bin/hello", []byte("#!/bin/sh\necho hi from $(hostname)\n")); code != 0 {
			t.Fatalf("write: %s", e)
		}
		if b, err := os.ReadFile(h1.Path("/usr/local/bin/hello")); err != nil || !strings.Contains(string(b), "hi from") {
			t.Fatalf("host1.Path: %q, %v", b, err)
		}
		if _, err := os.Stat(h2.Path("/usr/local/bin/hello")); !os.IsNotExist(err) {
			t.Fatalf("mac-02 has mac-01's file: %v", err)
		}
		if _, err := os.Stat("/usr/local/bin/hello"); !os.IsNotExist(err) {
			t.Fatalf("the machine's /usr/local/bin got the file: %v", err)
		}
		if _, _, code := sshRun(t, h2, "test -e /usr/local/bin/hello"); code != 1 {
			t.Fatalf("mac-02 sees /usr/local/bin/hello (exit %d)", code)
		}
		if out := mustRun(t, h1, "/usr/local/bin/hello"); out != "hi from mac-01\n" {
			t.Fatalf("hello: %q", out)
		}
		for _, d := range []string{"/Library/LaunchDaemons", "/Library/Logs", "/Library/Application Support", "/var/db", "/usr/local/bin"} {
			if fi, err := os.Stat(h3.Path(d)); err != nil || !fi.IsDir() {
				t.Fatalf("%s missing on mac-03: %v", d, err)
			}
		}
		if got := h1.Path("/etc/passwd"); got != "/etc/passwd" {
			t.Fatalf("Path of a shared file: %s", got)
		}
	})

	t.Run("codesign and plutil", func(t *testing.T) {
		c, err := h1.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ent := `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>com.apple.security.virtualization</key><true/></dict></plist>
`
		sessionRun(t, c, "cat > /Library/Application\\ Support/ent.plist", []byte(ent))
		sessionRun(t, c, "cat > /tmp/bad-"+h1.Name+".plist", []byte("<plist><dict><key>x</key></dict></plist>"))
		mustRun(t, h1, "cp /bin/true /usr/local/bin/vz-node")
		if _, e, code := sshRun(t, h1, "codesign --verify /usr/local/bin/vz-node"); code != 1 || !strings.Contains(e, "code object is not signed at all") {
			t.Fatalf("verify unsigned: %d %q", code, e)
		}
		mustRun(t, h1, "codesign --force --sign - --entitlements '/Library/Application Support/ent.plist' /usr/local/bin/vz-node && codesign --verify /usr/local/bin/vz-node && /usr/local/bin/vz-node")
		if out := mustRun(t, h1, "codesign -d --entitlements - --xml /usr/local/bin/vz-node 2>/dev/null"); !strings.Contains(out, "<key>com.apple.security.virtualization</key>") {
			t.Fatalf("entitlements: %q", out)
		}
		if out := mustRun(t, h1, "plutil -lint '/Library/Application Support/ent.plist'"); out != "/Library/Application Support/ent.plist: OK\n" {
			t.Fatalf("lint good: %q", out)
		}
		if out, _, code := sshRun(t, h1, "plutil -lint /tmp/bad-"+h1.Name+".plist"); code != 1 || !strings.Contains(out, `Key "x" has no value`) {
			t.Fatalf("lint bad: %d %q", code, out)
		}
	})

	t.Run("launchd", func(t *testing.T) {
		c, err := h1.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		script := "#!/bin/sh\necho \"$GREETING pid=$$ host=$(hostname) hello=$(test -e /usr/local/bin/hello && echo yes)\" >> /Library/Logs/job.out\nexec sleep 600\n"
		plist := `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key><string>dev.vzfleet.test</string>
	<key>ProgramArguments</key><array><string>/usr/local/bin/job.sh</string></array>
	<key>EnvironmentVariables</key><dict><key>GREETING</key><string>hola</string></dict>
	<key>KeepAlive</key><true/>
	<key>StandardOutPath</key><string>/Library/Logs/job.log</string>
	<key>StandardErrorPath</key><string>/Library/Logs/job.log</string>
</dict>
</plist>
`
		sessionRun(t, c, "cat > /usr/local/bin/job.sh && chmod 755 /usr/local/bin/job.sh", []byte(script))
		sessionRun(t, c, "cat > /Library/LaunchDaemons/dev.vzfleet.test.plist && chown root:wheel /Library/LaunchDaemons/dev.vzfleet.test.plist && chmod 644 /Library/LaunchDaemons/dev.vzfleet.test.plist", []byte(plist))

		if _, e, code := sessionRun(t, c, "launchctl print system/dev.vzfleet.test", nil); code != 113 || !strings.Contains(e, `Could not find service "dev.vzfleet.test" in domain for system`) {
			t.Fatalf("print before bootstrap: %d %q", code, e)
		}
		if _, e, code := sessionRun(t, c, "launchctl bootout system/dev.vzfleet.test", nil); code != 3 || e != "Boot-out failed: 3: No such process\n" {
			t.Fatalf("bootout before bootstrap: %d %q", code, e)
		}
		if _, e, code := sessionRun(t, c, "launchctl bootstrap system /Library/LaunchDaemons/dev.vzfleet.test.plist", nil); code != 0 {
			t.Fatalf("bootstrap: %d %q", code, e)
		}
		if _, e, code := sessionRun(t, c, "launchctl bootstrap system /Library/LaunchDaemons/dev.vzfleet.test.plist", nil); code != 5 || e != "Bootstrap failed: 5: Input/output error\n" {
			t.Fatalf("second bootstrap: %d %q", code, e)
		}
		pid := func() int {
			out, _, _ := sessionRun(t, c, "launchctl print system/dev.vzfleet.test | sed -n 's/^\\tpid = //p'", nil)
			n, _ := strconv.Atoi(strings.TrimSpace(out))
			return n
		}
		var p1 int
		waitFor(t, "the job to run", func() bool { p1 = pid(); return p1 != 0 })
		out := h1.Path("/Library/Logs/job.out")
		waitFor(t, "the job's output", func() bool { b, _ := os.ReadFile(out); return len(b) > 0 })
		// The job runs in mac-01's namespaces, with the plist's environment.
		if b, _ := os.ReadFile(out); !strings.HasPrefix(string(b), "hola pid=") || !strings.Contains(string(b), "host=mac-01 hello=yes") {
			t.Fatalf("job output: %q", b)
		}
		if _, err := os.Stat(h2.Path("/Library/Logs/job.out")); !os.IsNotExist(err) {
			t.Fatal("mac-02 got mac-01's job output")
		}

		sessionRun(t, c, "launchctl kickstart -k system/dev.vzfleet.test", nil)
		p2 := pid()
		if p2 == 0 || p2 == p1 {
			t.Fatalf("kickstart -k: pid %d -> %d", p1, p2)
		}
		// KeepAlive relaunches a killed job (the lab's throttle is 1 s).
		sessionRun(t, c, fmt.Sprintf("kill -9 %d", p2), nil)
		var p3 int
		waitFor(t, "KeepAlive to relaunch the job", func() bool { p3 = pid(); return p3 != 0 && p3 != p2 })
		if o, _, _, _ := h1.Launchctl("print", "system/dev.vzfleet.test"); !strings.Contains(o, "state = running") || !strings.Contains(o, "last terminating signal = Killed: 9") {
			t.Fatalf("print:\n%s", o)
		}

		if _, e, code := sessionRun(t, c, "launchctl bootout system/dev.vzfleet.test", nil); code != 0 {
			t.Fatalf("bootout: %d %q", code, e)
		}
		waitFor(t, "bootout to unload the job", func() bool {
			_, _, code, _ := h1.Launchctl("print", "system/dev.vzfleet.test")
			return code == 113
		})
		if _, _, code := sessionRun(t, c, fmt.Sprintf("kill -0 %d", p3), nil); code == 0 {
			t.Fatalf("pid %d still runs after bootout", p3)
		}
		if _, e, code := sessionRun(t, c, "launchctl bootout system /Library/LaunchDaemons/dev.vzfleet.test.plist", nil); code != 5 || e != "Boot-out failed: 5: Input/output error\n" {
			t.Fatalf("bootout by path of an unloaded job: %d %q", code, e)
		}
		if _, e, code := sessionRun(t, c, "launchctl kickstart -k system/dev.vzfleet.test", nil); code != 113 {
			t.Fatalf("kickstart of an unloaded job: %d %q", code, e)
		}
	})

	t.Run("reboot", func(t *testing.T) {
		// The plist left in /Library/LaunchDaemons loads at boot, and its
		// KeepAlive job starts again; files survive.
		oldBoot, _ := h1.bootPID()
		if err := h1.Reboot(context.Background()); err != nil {
			t.Fatal(err)
		}
		if newBoot, _ := h1.bootPID(); newBoot == oldBoot {
			t.Fatal("Reboot kept the old launchd")
		}
		waitFor(t, "the LaunchDaemon to run after the reboot", func() bool {
			o, _, code, _ := h1.Launchctl("print", "system/dev.vzfleet.test")
			return code == 0 && strings.Contains(o, "state = running")
		})
		mustRun(t, h1, "test -x /usr/local/bin/hello && launchctl bootout system/dev.vzfleet.test")
	})

	t.Run("loopback forward", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hello from the test machine\n"))
				c.Close()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		if err := lab.ForwardLoopback(port); err != nil {
			t.Fatal(err)
		}
		for _, h := range lab.Hosts {
			out := mustRun(t, h, fmt.Sprintf("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; cat <&3'", port))
			if out != "hello from the test machine\n" {
				t.Fatalf("%s: %q", h.Name, out)
			}
		}
	})

	t.Run("cut connections", func(t *testing.T) {
		c, err := h3.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, _ := c.NewSession()
		if err := s.Start("sleep 60"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Wait() }()
		time.Sleep(200 * time.Millisecond)
		if n := h3.CutConnections(); n == 0 {
			t.Fatal("CutConnections killed nothing")
		}
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("the cut session ended cleanly")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the session survived CutConnections")
		}
		mustRun(t, h3, "true")
	})

	t.Run("stop start rotate", func(t *testing.T) {
		h2.Stop()
		if h2.Running() || !h1.Running() {
			t.Fatal("Running after Stop")
		}
		if _, err := h2.Dial(context.Background()); err == nil {
			t.Fatal("a stopped host accepted SSH")
		}
		mustRun(t, h1, "true")
		if err := h2.Start(); err != nil {
			t.Fatal(err)
		}
		mustRun(t, h2, "true")

		old := h2.HostKey()
		if err := h2.RotateHostKey(); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(old.Marshal(), h2.HostKey().Marshal()) {
			t.Fatal("RotateHostKey kept the key")
		}
		var keyErr *knownhosts.KeyError
		if _, err := h2.Dial(context.Background()); !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
			t.Fatalf("dial with the old known_hosts: %v, want a changed-key error", err)
		}
		fresh := filepath.Join(t.TempDir(), "known_hosts")
		if err := lab.WriteKnownHosts(fresh); err != nil {
			t.Fatal(err)
		}
		cfg, _ := lab.ClientConfig(fresh)
		c, err := ssh.Dial("tcp", h2.Address, cfg)
		if err != nil {
			t.Fatalf("dial with the new key: %v", err)
		}
		c.Close()
		mustRun(t, h1, "true") // the others are untouched
	})

	t.Run("cleanup", func(t *testing.T) {
		var pids []int
		for _, h := range lab.Hosts {
			pid, err := h.bootPID()
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
		prefix := lab.impl.net.nsPrefix()
		bridge := lab.Bridge
		if err := lab.Stop(); err != nil {
			t.Fatal(err)
		}
		assertClean(t, lab.Dir, prefix, bridge)
		for _, pid := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				t.Errorf("host process %d still runs", pid)
			}
		}
	})
}

func assertClean(t *testing.T, dir, nsPrefix, bridge string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), nsPrefix) {
		t.Errorf("namespaces left:\n%s", out)
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		t.Errorf("bridge %s left", bridge)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, "/run/netns/"+nsPrefix) ||
			strings.Contains(line, " /Library ") || strings.Contains(line, " /var/macsim ") {
			t.Errorf("mount left: %s", line)
		}
	}
}

// TestStaleLeftovers starts a lab on a subnet where a killed run left a
// namespace and a bridge behind.
func TestStaleLeftovers(t *testing.T) {
	harness.RequireRoot(t)
	const subnet = "10.213.77.0/24"
	_ = run("ip", "netns", "add", "vzfleet77-ghost")
	_ = run("ip", "link", "add", "vzfleet-br77", "type", "bridge")
	lab := LabT(t, LabOptions{Subnet: subnet, Hosts: []HostOptions{{Name: "mac-a"}}})
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "vzfleet77-ghost") {
		t.Fatalf("the stale namespace survived:\n%s", out)
	}
	if lab.Subnet != subnet || lab.Hosts[0].IP != "10.213.77.11" || lab.Bridge != "vzfleet-br77" {
		t.Fatalf("lab on %s: %s %s", lab.Subnet, lab.Hosts[0].IP, lab.Bridge)
	}
	mustRun(t, lab.Hosts[0], "true")
	// A second lab cannot take the same subnet while this one holds it.
	if _, err := StartLab(context.Background(), LabOptions{Dir: t.TempDir(), Subnet: subnet, Hosts: []HostOptions{{Name: "x"}}}); err == nil || !strings.Contains(err.Error(), "another lab holds") {
		t.Fatalf("second lab on a held subnet: %v", err)
	}
	if err := lab.Stop(); err != nil {
		t.Fatal(err)
	}
	assertClean(t, lab.Dir, "vzfleet77-", "vzfleet-br77")

	// RemoveLeftovers tidies what no running lab owns.
	_ = run("ip", "netns", "add", "vzfleet78-ghost")
	_ = run("ip", "link", "add", "vzfleet-br78", "type", "bridge")
	if err := RemoveLeftovers(t.Logf); err != nil {
		t.Fatal(err)
	}
	assertClean(t, lab.Dir, "vzfleet78-", "vzfleet-br78")
}

func TestOptionsErrors(t *testing.T) {
	harness.RequireRoot(t)
	for _, tc := range []struct {
		name string
		opts LabOptions
		want string
	}{
		{"no hosts", LabOptions{Dir: t.TempDir()}, "Hosts is empty"},
		{"bad name", LabOptions{Dir: t.TempDir(), Hosts: []HostOptions{{Name: "Mac_01"}}}, "host name"},
		{"duplicate", LabOptions{Dir: t.TempDir(), Hosts: []HostOptions{{Name: "a"}, {Name: "a"}}}, "appears twice"},
		{"dir under a private dir", LabOptions{Dir: "/var/db/lab", Hosts: []HostOptions{{Name: "a"}}}, "lies under /var/db"},
		{"bad subnet", LabOptions{Dir: t.TempDir(), Subnet: "10.0.0.0/16", Hosts: []HostOptions{{Name: "a"}}}, "want a /24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab, err := StartLab(context.Background(), tc.opts)
			if err == nil {
				lab.Stop()
				t.Fatal("StartLab succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// TestCutMidUpload shows the tools for the SSH-cut-mid-upload test: a
// bandwidth cap makes an SFTP upload slow enough to cut while the target
// file is half written.
func TestCutMidUpload(t *testing.T) {
	harness.RequireRoot(t)
	lab := LabT(t, LabOptions{Hosts: []HostOptions{{Name: "mac-up"}}})
	h := lab.Hosts[0]
	if err := h.LimitBandwidth(4000); err != nil {
		t.Fatal(err)
	}
	c, err := h.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("vz-node "), 1<<17) // 1 MiB: about 2 s at 4 Mbit/s
	done := make(chan error, 1)
	go func() {
		f, err := sc.Create("/usr/local/bin/vz-node.upload")
		if err != nil {
			done <- err
			return
		}
		_, err = f.ReadFrom(bytes.NewReader(payload))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	partial := h.Path("/usr/local/bin/vz-node.upload")
	waitFor(t, "the upload to start arriving", func() bool {
		fi, err := os.Stat(partial)
		return err == nil && fi.Size() > 0
	})
	if n := h.CutConnections(); n == 0 {
		t.Fatal("nothing to cut")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the upload finished although its connection was cut")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the upload hung after the cut")
	}
	if fi, err := os.Stat(partial); err != nil || fi.Size() >= int64(len(payload)) {
		t.Fatalf("after the cut the file has %v bytes (err %v), want a partial file", fi.Size(), err)
	}
	// The host is still up for a rerun; without the cap it is fast again.
	if err := h.LimitBandwidth(0); err != nil {
		t.Fatal(err)
	}
	mustRun(t, h, "rm /usr/local/bin/vz-node.upload")

	// A pulled cable: dials time out instead of being refused.
	if err := h.SetLinkDown(true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err = h.Dial(ctx)
	cancel()
	if err == nil {
		t.Fatal("dial succeeded with the link down")
	}
	if err := h.SetLinkDown(false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the link to come back", func() bool {
		c, err := h.Dial(context.Background())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
