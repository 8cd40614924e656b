package harness

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// GoBuild builds the module's package pkg (such as "./cmd/fleetctl") into
// out, with CGO_ENABLED=0 and the given build flags. It first shows Go's
// test cache the module's sources (see trackSources), so a test that runs
// what it built is run again once they change.
func GoBuild(ctx context.Context, out, pkg string, flags ...string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if err := trackSources(root); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, "go", append(append([]string{"build", "-o", out}, flags...), pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// trackSources stats the module's files, outside build outputs, testdata
// and nested modules (hack/tools). Go's test cache records the files a
// test stats and reruns the test when one of them changes; it cannot see
// what a `go build` the test starts reads, so without this a test that
// builds fleetctl or vz-node would pass from the cache after their code
// changed. Once per process.
var trackSources = func() func(root string) error {
	var once sync.Once
	var err error
	return func(root string) error {
		once.Do(func() { err = statSources(root) })
		return err
	}
}()

func statSources(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p == root {
				return nil
			}
			if strings.HasPrefix(name, ".") || name == "bin" || name == "testdata" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module (hack/tools)
			}
			return nil
		}
		if d.Type().IsRegular() {
			_, err = os.Stat(p)
		}
		return err
	})
}
