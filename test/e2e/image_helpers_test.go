package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/test/harness"
)

var (
	imageFleetctlOnce sync.Once
	imageFleetctlBin  string
)

// imageFleetctl builds cmd/fleetctl once per test binary.
func imageFleetctl(t *testing.T) string {
	t.Helper()
	imageFleetctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fleetctl-image-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		imageFleetctlBin = buildFleetctlForStatus(t, dir)
	})
	if imageFleetctlBin == "" {
		t.Fatal("building fleetctl failed in an earlier test")
	}
	return imageFleetctlBin
}

// makeTestVM writes a VM directory like tart's: config.json (a real
// tart config), nvram.bin and a sparse disk of size bytes with a few
// incompressible and compressible regions; the rest are holes.
func makeTestVM(t *testing.T, dir string, size int64) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(root, "image/format/testdata/tart-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nv := make([]byte, 64<<10)
	for i := range nv {
		nv[i] = byte(i * 7)
	}
	for name, b := range map[string][]byte{"config.json": cfg, "nvram.bin": nv} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	line := []byte("the quick brown fox jumps over the lazy dog 0123456789\n")
	regions := []struct {
		off, size int64
		random    bool
	}{
		{0, 1 << 20, true}, {5 << 20, 3 << 20, true}, {40 << 20, 10 << 20, false}, {size - 1<<20, 1 << 20, true},
	}
	for _, r := range regions {
		buf := make([]byte, r.size)
		if r.random {
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
		} else {
			for i := 0; i < len(buf); i += len(line) {
				copy(buf[i:], line)
			}
		}
		if _, err := f.WriteAt(buf, r.off); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs a binary; it returns stdout, stderr and the error.
func runBin(t *testing.T, timeout time.Duration, bin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

// mustRun is runBin that fails the test on an error.
func mustRun(t *testing.T, timeout time.Duration, bin string, args ...string) (string, string) {
	t.Helper()
	o, e, err := runBin(t, timeout, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, o, e)
	}
	return o, e
}

// jsonLines decodes every line of out as a JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v\nall output:\n%s", sc.Text(), err, out)
		}
		lines = append(lines, m)
	}
	return lines
}

// sameContent compares two files byte for byte.
func sameContent(t *testing.T, a, b string) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(ba)) {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			t.Fatalf("%s and %s differ in the MiB at offset %d", a, b, off)
		}
		if ea != nil || eb != nil {
			if (ea == nil) != (eb == nil) {
				t.Fatalf("%s and %s differ in length", a, b)
			}
			return
		}
	}
}
