package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ToolsBinEnv overrides where the control-plane binaries are looked up.
const ToolsBinEnv = "VZFLEET_TOOLS_BIN"

// RepoRoot finds the vzfleet checkout containing the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/vzfleet/vzfleet\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the vzfleet repository (no go.mod for github.com/vzfleet/vzfleet above the working directory)")
		}
		dir = parent
	}
}

// Tool returns the path of a binary built by hack/tools (kube-apiserver,
// etcd, kubectl, ...), with a hint to build it when it is missing.
func Tool(name string) (string, error) {
	dir := os.Getenv(ToolsBinEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "hack", "tools", "bin")
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("tool %s not found at %s: run `make tools` (or set %s): %w", name, path, ToolsBinEnv, err)
	}
	return path, nil
}
