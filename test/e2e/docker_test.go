package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/test/harness"
)

// The harness reaches a Docker engine (starting its own dockerd when none
// runs) that answers the docker CLI.
func TestDockerEngine(t *testing.T) {
	t.Parallel()
	d := harness.DockerT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "--host", d.Host, "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		t.Fatalf("docker version against %s: %v\n%s", d.Host, err, out)
	}
	if strings.TrimSpace(string(out)) == "" {
		t.Fatalf("docker reported no server version")
	}
}
