package image

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vzfleet/vzfleet/test/harness"
)

func TestPullWithCredentials(t *testing.T) {
	addr := harness.AuthRegistryT(t, "alice", "s3cret").Addr
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
