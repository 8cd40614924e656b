package harness

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// ControlPlaneT starts a control plane for a test and stops it at cleanup,
// printing the component logs' tails when the test failed.
func ControlPlaneT(t testing.TB, opts ControlPlaneOptions) *ControlPlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if opts.Log == nil {
		opts.Log = t.Logf
	}
	cp, err := StartControlPlane(ctx, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range cp.procs {
				t.Logf("--- %s log tail (%s) ---\n%s", p.Name, p.LogPath, p.Tail(15))
			}
		}
		cp.Stop()
	})
	return cp
}

// RegistryT starts a registry for a test and stops it at cleanup.
func RegistryT(t testing.TB) *Registry {
	t.Helper()
	r, err := StartRegistry(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// AuthRegistryT starts a registry that requires user and password for a
// test.
func AuthRegistryT(t testing.TB, user, password string) *Registry {
	t.Helper()
	r, err := StartAuthRegistry(context.Background(), t.TempDir(), user, password)
	if err != nil {
		t.Fatalf("registry with auth: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// DockerWithImageT returns a Docker engine for a test that has the busybox
// image ref (see BusyboxImage) and the pods' sandbox image, PauseImage.
func DockerWithImageT(t testing.TB, ref string) *Docker {
	t.Helper()
	d := DockerT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.BusyboxImage(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := d.ImportPause(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

// DockerT returns a Docker engine for a test (starting one if needed).
func DockerT(t testing.TB) *Docker {
	t.Helper()
	d, err := StartDocker(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("docker: %v", err)
	}
	t.Cleanup(d.Stop)
	return d
}

// RequireRoot fails (not skips) the test when not run as root: the lab's
// namespaces, sshd and guest addresses need it, and CI runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root (CI runs as root); run it with sudo or via `make test`")
	}
}

// ExtraAddressT gives the test a free, non-loopback IPv4 address of its own
// (in 10.213.250.0/24, on the loopback interface) and removes it at cleanup.
func ExtraAddressT(t testing.TB) net.IP {
	t.Helper()
	RequireRoot(t)
	var lastErr error
	for range 20 {
		ip := net.IPv4(10, 213, 250, byte(2+rand.IntN(252)))
		remove, err := ExtraAddress(ip)
		if err == nil {
			t.Cleanup(remove)
			return ip
		}
		lastErr = err
	}
	t.Fatalf("no free extra address: %v", lastErr)
	return nil
}
