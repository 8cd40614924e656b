package image

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/vzfleet/vzfleet/image/format"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestDescriptionWrite(t *testing.T) {
	t.Parallel()
	im, err := format.ParseManifest(mustRead(t, "format/testdata/tart-manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	vm, err := format.ParseVMConfig(mustRead(t, "format/testdata/tart-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := &Description{Reference: "ghcr.io/cirruslabs/macos-sequoia-base:latest", Digest: "sha256:7a3ab5c4f7e1c6d1a4e5b9d3b1f2e0c8a7d6e5f4c3b2a1908f7e6d5c4b3a2910", Image: im, VM: vm}
	var buf bytes.Buffer
	if err := d.Write(&buf, true); err != nil {
		t.Fatal(err)
	}
	golden := "testdata/inspect.golden"
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(golden, buf.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("output differs from %s (run with -update after checking):\n%s", golden, buf.Bytes())
	}
}

func TestHumanBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 512 << 20: "512.0 MiB", 140 << 30: "140.0 GiB", 3 << 40: "3.0 TiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
