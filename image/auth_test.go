package image

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/vzfleet/vzfleet/test/harness"
)

// startAuthRegistry runs docker-registry with htpasswd authentication
// (the harness's registry is anonymous).
func startAuthRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	bin, err := exec.LookPath(harness.RegistryBinary)
	if err != nil {
		t.Fatalf("%v (apt-get install docker-registry)", err)
	}
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "htpasswd"), []byte(user+":"+string(hash)+"\n"))
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\nauth:\n  htpasswd:\n    realm: vzfleet-test\n    path: %s\n",
		filepath.Join(dir, "storage"), addr, filepath.Join(dir, "htpasswd"))
	writeFile(t, filepath.Join(dir, "config.yml"), []byte(cfg))
	p, err := harness.StartProcess("registry-auth", filepath.Join(dir, "registry.log"), bin, []string{"serve", filepath.Join(dir, "config.yml")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry with auth did not start: %v\n%s", err, p.Tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPullWithCredentials(t *testing.T) {
	addr := startAuthRegistry(t, "alice", "s3cret")
	ref := addr + "/private/vm:1"
	src := filepath.Join(t.TempDir(), "vm")
	makeVMDir(t, src, 8*mib, []region{{off: mib, size: mib, kind: "random", seed: 1}})

	if _, err := Push(context.Background(), src, ref, PushOptions{ChunkSize: 4 * mib}); !isUnauthorized(err) {
		t.Fatalf("anonymous push: %v", err)
	}
	explicit := Remote{Auth: Auth{Username: "alice", Password: "s3cret"}}
	if _, err := Push(context.Background(), src, ref, PushOptions{ChunkSize: 4 * mib, Remote: explicit}); err != nil {
		t.Fatalf("push with credentials: %v", err)
	}

	c, err := OpenCache(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(context.Background(), ref, PullOptions{}); !isUnauthorized(err) {
		t.Fatalf("anonymous pull: %v", err)
	}
	wrong := Auth{Username: "alice", Password: "nope"}
	if _, err := c.Pull(context.Background(), ref, PullOptions{Auth: &wrong}); !isUnauthorized(err) {
		t.Fatalf("pull with a wrong password: %v", err)
	}
	// An imagePullSecret's .dockerconfigjson.
	secret := []byte(`{"auths":{"` + addr + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) + `"}}}`)
	img, err := c.Pull(context.Background(), ref, PullOptions{Auth: &Auth{DockerConfigJSON: [][]byte{secret}}})
	if err != nil {
		t.Fatalf("pull with a pull secret: %v", err)
	}
	sameFile(t, filepath.Join(src, DiskFile), img.Disk)

	// A docker config file, with Always so the registry is asked again.
	cfgFile := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfgFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(context.Background(), ref, PullOptions{Policy: PullAlways, Auth: &Auth{DockerConfigFiles: []string{cfgFile}}}); err != nil {
		t.Fatalf("pull with a docker config file: %v", err)
	}
}

func isUnauthorized(err error) bool { return errors.Is(err, ErrUnauthorized) }
