package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registry is a real OCI registry (CNCF distribution, Debian's
// docker-registry package) serving plain HTTP on loopback.
type Registry struct {
	// Addr is host:port, e.g. for references like Addr+"/repo:tag".
	Addr string
	// StorageDir is the registry's filesystem storage root, so tests can
	// corrupt or inspect blobs.
	StorageDir string
	proc       *Process
}

// RegistryBinary is Debian's distribution build.
const RegistryBinary = "docker-registry"

// StartRegistry starts a registry with its storage and config in dir.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	return startRegistry(ctx, dir, "", "")
}

// StartAuthRegistry starts a registry that asks every client for user and
// password (htpasswd, bcrypt).
func StartAuthRegistry(ctx context.Context, dir, user, password string) (*Registry, error) {
	return startRegistry(ctx, dir, user, password)
}

func startRegistry(ctx context.Context, dir, user, password string) (*Registry, error) {
	bin, err := exec.LookPath(RegistryBinary)
	if err != nil {
		return nil, fmt.Errorf("OCI registry: %w (install it with `apt-get install docker-registry`, or run `make deps`)", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Registry{Addr: hostPort(port), StorageDir: filepath.Join(dir, "storage")}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, r.StorageDir, r.Addr)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ready := func() error { return httpOK(http.DefaultClient, "http://"+r.Addr+"/v2/") }
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: vzfleet-test\n    path: %s\n", htpasswd)
		ready = func() error {
			resp, err := http.Get("http://" + r.Addr + "/v2/")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				return fmt.Errorf("GET /v2/ anonymously: %s, want 401", resp.Status)
			}
			return nil
		}
	}
	cfgPath := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	// The Debian package's default config points at /var/lib; ours is explicit.
	if r.proc, err = StartProcess("registry", filepath.Join(dir, "registry.log"), bin, []string{"serve", cfgPath}, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := r.proc.waitFor(ctx, "registry answering /v2/", ready); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// LogPath is the registry's access and error log.
func (r *Registry) LogPath() string { return r.proc.LogPath }

// Stop stops the registry.
func (r *Registry) Stop() { r.proc.Stop() }

// Pid is the registry process's id.
func (r *Registry) Pid() int { return r.proc.Pid() }
