package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Docker is a reachable Docker engine.
type Docker struct {
	// Host is the DOCKER_HOST value to reach it (unix://...).
	Host string
	// Started is true when the harness started this dockerd itself.
	Started bool
	proc    *Process
	// bin and args start the dockerd the harness started (again).
	bin  string
	args []string
	// removeBridge deletes the bridge of the dockerd the harness started.
	removeBridge func()
}

// StartDocker returns the Docker engine named by DOCKER_HOST or listening on
// /var/run/docker.sock when one answers; otherwise it starts Debian's dockerd
// with its own data root, exec root, pidfile and socket under dir, and a
// bridge of its own, without touching docker0 or iptables. Its containers
// publish ports through docker-proxy, as Docker Desktop's reach macOS.
func StartDocker(ctx context.Context, dir string) (*Docker, error) {
	for _, host := range []string{os.Getenv("DOCKER_HOST"), "unix:///var/run/docker.sock"} {
		if host != "" && dockerPing(host) == nil {
			return &Docker{Host: host}, nil
		}
	}
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, fmt.Errorf("no Docker engine answers and dockerd is not installed: %w (install it with `apt-get install docker.io`, or run `make deps`)", err)
	}
	// Unix socket paths are limited to 108 bytes; test temp dirs can be long.
	sockDir, err := os.MkdirTemp("", "vzfleet-docker-")
	if err != nil {
		return nil, err
	}
	bridge, removeBridge, err := newDockerBridge()
	if err != nil {
		os.RemoveAll(sockDir)
		return nil, err
	}
	d := &Docker{Host: "unix://" + filepath.Join(sockDir, "docker.sock"), Started: true, removeBridge: removeBridge, bin: bin}
	d.args = []string{
		"--data-root=" + filepath.Join(dir, "data"),
		"--exec-root=" + filepath.Join(sockDir, "exec"),
		"--pidfile=" + filepath.Join(sockDir, "docker.pid"),
		"--host=" + d.Host,
		"--bridge=" + bridge,
		"--iptables=false",
		"--ip-masq=false",
		// Containers that ignore SIGTERM keep a stop or restart no longer.
		"--shutdown-timeout=2",
	}
	if err := d.start(ctx, filepath.Join(dir, "dockerd.log")); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// start runs dockerd and waits until it answers.
func (d *Docker) start(ctx context.Context, logPath string) error {
	var err error
	if d.proc, err = StartProcess("dockerd", logPath, d.bin, d.args, nil); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return d.proc.waitFor(ctx, "dockerd answering /_ping", func() error { return dockerPing(d.Host) })
}

// Restart stops the engine the harness started as Docker Desktop's restart
// does, stopping its containers, and starts it again on the same data:
// the containers come back as their restart policies say.
func (d *Docker) Restart(ctx context.Context) error {
	if d.proc == nil {
		return fmt.Errorf("docker at %s: the harness did not start it, so it cannot restart it", d.Host)
	}
	// dockerd alone: it stops its containers, then its containerd.
	if err := d.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop dockerd: %w", err)
	}
	select {
	case <-d.proc.done:
	case <-time.After(time.Minute):
		return fmt.Errorf("dockerd did not stop within a minute of SIGTERM:\n%s", d.proc.Tail(20))
	}
	d.proc.Stop()
	return d.start(ctx, d.proc.LogPath)
}

// LogTail is the last n lines of the log of the dockerd the harness
// started ("" for another).
func (d *Docker) LogTail(n int) string {
	if d.proc == nil {
		return ""
	}
	return d.proc.Tail(n)
}

// PauseImage is the pods' sandbox image in the harness's engines: the
// kubelet's pause program (hack/tools/bin/pause, built from the Kubernetes
// source by `make tools`), imported as registry.k8s.io/pause is built.
const PauseImage = "vzfleet-test/pause:1"

// ImportPause imports PauseImage.
func (d *Docker) ImportPause(ctx context.Context) error {
	bin, err := Tool("pause")
	if err != nil {
		return err
	}
	return d.importRootfs(ctx, PauseImage, `ENTRYPOINT ["/pause"]`, func(tw *tar.Writer) error {
		return addFile(tw, "pause", bin)
	})
}

// BusyboxImage makes the local image ref: Debian's static busybox with
// links for its common applets, imported as a one-layer rootfs (the lab has
// no registry to pull from). Re-importing replaces the tag.
func (d *Docker) BusyboxImage(ctx context.Context, ref string) error {
	return d.busyboxImage(ctx, ref, nil)
}

// GRPCHealthImage makes the local image ref: BusyboxImage's, with
// test/harness/grpchealthd built into /bin.
func (d *Docker) GRPCHealthImage(ctx context.Context, ref string) error {
	bin := filepath.Join(filepath.Dir(strings.TrimPrefix(d.Host, "unix://")), "grpchealthd")
	if err := GoBuild(ctx, bin, "./test/harness/grpchealthd"); err != nil {
		return err
	}
	defer os.Remove(bin)
	return d.busyboxImage(ctx, ref, func(tw *tar.Writer) error { return addFile(tw, "bin/grpchealthd", bin) })
}

// busyboxImage imports BusyboxImage's rootfs as ref, with what extra (if
// set) adds.
func (d *Docker) busyboxImage(ctx context.Context, ref string, extra func(*tar.Writer) error) error {
	bin, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox is not installed: %w (install busybox-static, or run `make deps`)", err)
	}
	if err := checkStatic(bin); err != nil {
		return err
	}
	return d.importRootfs(ctx, ref, "ENV PATH=/bin", func(tw *tar.Writer) error {
		for _, dir := range []string{"bin/", "tmp/", "proc/", "sys/", "dev/", "etc/"} {
			if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
		}
		if err := addFile(tw, "bin/busybox", bin); err != nil {
			return err
		}
		for _, applet := range []string{"sh", "echo", "cat", "sleep", "ls", "env", "true", "false", "printf", "kill", "ps", "wc", "head", "tail", "grep", "date", "hostname", "test", "touch", "mkdir", "rm", "id", "httpd", "killall", "wget"} {
			if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}); err != nil {
				return err
			}
		}
		if extra != nil {
			return extra(tw)
		}
		return nil
	})
}

// importRootfs imports what fill writes as the one-layer image ref, with
// one Dockerfile instruction, change, applied.
func (d *Docker) importRootfs(ctx context.Context, ref, change string, fill func(*tar.Writer) error) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := fill(tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "docker", "--host", d.Host, "import", "--change", change, "-", ref)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker import %s: %v\n%s", ref, err, out)
	}
	return nil
}

// addFile writes the program at path to tw as name.
func addFile(tw *tar.Writer, name, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err = tw.Write(data)
	return err
}

// checkStatic fails for a dynamically linked program, which would not run
// in an image that holds nothing else.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox at %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox at %s is linked dynamically; install busybox-static (or run `make deps`)", path)
		}
	}
	return nil
}

// Stop stops dockerd if the harness started it, removing its containers
// first: their processes, under containerd's shims, would outlive it.
func (d *Docker) Stop() {
	if d.proc != nil {
		d.removeContainers()
		d.proc.Stop()
	}
	if d.Started {
		os.RemoveAll(filepath.Dir(strings.TrimPrefix(d.Host, "unix://")))
	}
	if d.removeBridge != nil {
		d.removeBridge()
	}
}

// removeContainers force-removes every container of the engine. Failures
// only leave processes behind, so they are ignored.
func (d *Docker) removeContainers() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "--host", d.Host, "ps", "-aq").Output()
	if ids := strings.Fields(string(out)); err == nil && len(ids) > 0 {
		_ = exec.CommandContext(ctx, "docker", append([]string{"--host", d.Host, "rm", "-f"}, ids...)...).Run()
	}
}

func dockerPing(host string) error {
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return fmt.Errorf("DOCKER_HOST %q: only unix:// sockets are supported by the harness", host)
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	return httpOK(c, "http://docker/_ping")
}
