package machost

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/vzfleet/vzfleet/test/harness"
)

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// prepareMacsim puts the macsim binary at Dir/bin/macsim, building it from
// the checkout (once per process, into .cache/macsim) unless given.
func prepareMacsim(ctx context.Context, given, dir string) (string, error) {
	src := given
	if src == "" {
		buildOnce.Do(func() { built, buildErr = buildMacsim(ctx) })
		if buildErr != nil {
			return "", buildErr
		}
		src = built
	}
	dst := filepath.Join(dir, "bin", "macsim")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := copyFile(src, dst, 0o755); err != nil {
		return "", fmt.Errorf("machost: copying macsim from %s: %w", src, err)
	}
	return dst, nil
}

func buildMacsim(ctx context.Context) (string, error) {
	root, err := harness.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("machost: building hack/macsim: %w (or set LabOptions.MacsimBinary)", err)
	}
	out := filepath.Join(root, ".cache", "macsim", "macsim")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	if upToDate(out, filepath.Join(root, "hack", "macsim"), filepath.Join(root, "go.mod")) {
		return out, nil
	}
	// Parallel test binaries may build at once: each writes its own file and
	// renames it into place.
	tmp := out + ".tmp" + strconv.Itoa(os.Getpid())
	if err := harness.GoBuild(ctx, tmp, "./hack/macsim"); err != nil {
		return "", fmt.Errorf("machost: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}

// upToDate reports whether bin is newer than every Go file below srcDir and
// the extra files: macsim depends only on its own packages and the standard
// library, so this spares each test binary a link of a few seconds.
func upToDate(bin, srcDir string, extra ...string) bool {
	fi, err := os.Stat(bin)
	if err != nil {
		return false
	}
	built := fi.ModTime()
	newer := false
	_ = filepath.WalkDir(srcDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			newer = true
			return filepath.SkipAll
		}
		if !d.IsDir() && filepath.Ext(p) == ".go" {
			if info, err := d.Info(); err != nil || info.ModTime().After(built) {
				newer = true
				return filepath.SkipAll
			}
		}
		return nil
	})
	for _, f := range extra {
		if info, err := os.Stat(f); err != nil || info.ModTime().After(built) {
			return false
		}
	}
	return !newer
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
