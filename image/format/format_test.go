package format

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseTartManifest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file    string
		offsets []int64
		sizes   []int64
		total   int64
	}{
		{"tart-manifest.json", []int64{0, 536870912, 1073741824}, []int64{536870912, 536870912, 104857600}, 1178599424},
		// older tart pushed other chunk sizes: offsets come from the annotations
		{"tart-manifest-old-chunks.json", []int64{0, 100000000, 400000000}, []int64{100000000, 300000000, 7}, 400000007},
	}
	for _, tc := range tests {
		im, err := ParseManifest(readFile(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if im.Layout != LayoutTart || len(im.Disk) != 3 || im.DiskSize != tc.total {
			t.Fatalf("%s: layout %s, %d chunks, size %d", tc.file, im.Layout, len(im.Disk), im.DiskSize)
		}
		for i, c := range im.Disk {
			if c.Offset != tc.offsets[i] || c.Size != tc.sizes[i] || c.Index != i || c.Compression != CompressionAppleLZ4 {
				t.Errorf("%s: chunk %d = %+v", tc.file, i, c)
			}
		}
		if im.Config.Layer.Size != 593 || im.NVRAM.Layer.Size != 131072 {
			t.Errorf("%s: config %+v nvram %+v", tc.file, im.Config, im.NVRAM)
		}
	}
}

func TestParseMacOSVZManifest(t *testing.T) {
	t.Parallel()
	im, err := ParseManifest(readFile(t, "macosvz-manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if im.Layout != LayoutMacOSVZ || len(im.Disk) != 1 || im.DiskSize != 137438953472 {
		t.Fatalf("got %+v", im)
	}
	if im.Disk[0].Compression != CompressionGzip || im.NVRAM.Compression != CompressionGzip || im.NVRAM.Size != 33570816 {
		t.Fatalf("disk %+v nvram %+v", im.Disk[0], im.NVRAM)
	}
	if im.Config.Compression != CompressionNone || im.Config.Size != 562 {
		t.Fatalf("config %+v", im.Config)
	}
}

// mutate loads the tart manifest as a generic map, changes it and re-encodes.
func mutate(t *testing.T, file string, f func(m map[string]any)) []byte {
	var m map[string]any
	if err := json.Unmarshal(readFile(t, file), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, _ := json.Marshal(m)
	return b
}

func layer(m map[string]any, i int) map[string]any {
	return m["layers"].([]any)[i].(map[string]any)
}

func ann(m map[string]any, i int) map[string]any {
	return layer(m, i)["annotations"].(map[string]any)
}

func TestParseManifestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string
		f    func(m map[string]any)
		want string
	}{
		{"schema", "tart-manifest.json", func(m map[string]any) { m["schemaVersion"] = 1 }, "schemaVersion is 1"},
		{"index", "tart-manifest.json", func(m map[string]any) { m["mediaType"] = ocispec.MediaTypeImageIndex }, "image index"},
		{"no layers", "tart-manifest.json", func(m map[string]any) { m["layers"] = []any{} }, "no layers"},
		{"bad layer digest", "tart-manifest.json", func(m map[string]any) { layer(m, 2)["digest"] = "sha256:xyz" }, `layer 2 digest "sha256:xyz"`},
		{"negative size", "tart-manifest.json", func(m map[string]any) { layer(m, 2)["size"] = -5 }, "negative size"},
		{"missing size annotation", "tart-manifest.json", func(m map[string]any) { delete(ann(m, 1), AnnotationUncompressedSize) }, "lacks the org.cirruslabs.tart.uncompressed-size"},
		{"bad size annotation", "tart-manifest.json", func(m map[string]any) { ann(m, 1)[AnnotationUncompressedSize] = "12x" }, `uncompressed-size="12x" is not a size`},
		{"negative size annotation", "tart-manifest.json", func(m map[string]any) { ann(m, 1)[AnnotationUncompressedSize] = "-1" }, "is not a size"},
		{"huge size annotation", "tart-manifest.json", func(m map[string]any) { ann(m, 1)[AnnotationUncompressedSize] = "9000000000000000000" }, "implausibly large"},
		{"missing digest annotation", "tart-manifest.json", func(m map[string]any) { delete(ann(m, 3), AnnotationUncompressedDigest) }, "lacks the org.cirruslabs.tart.uncompressed-content-digest"},
		{"bad digest annotation", "tart-manifest.json", func(m map[string]any) { ann(m, 3)[AnnotationUncompressedDigest] = "md5:abc" }, "uncompressed-content-digest"},
		{"disk size mismatch", "tart-manifest.json", func(m map[string]any) { m["annotations"].(map[string]any)[AnnotationDiskSize] = "5" }, "disagrees with the disk layers"},
		{"no config", "tart-manifest.json", func(m map[string]any) { m["layers"] = m["layers"].([]any)[1:] }, "no VM config layer"},
		{"no nvram", "tart-manifest.json", func(m map[string]any) { m["layers"] = m["layers"].([]any)[:4] }, "no NVRAM layer"},
		{"no disk", "tart-manifest.json", func(m map[string]any) {
			l := m["layers"].([]any)
			m["layers"] = []any{l[0], l[4]}
		}, "no disk layers"},
		{"two configs", "tart-manifest.json", func(m map[string]any) { m["layers"] = append(m["layers"].([]any), layer(m, 0)) }, "second VM config"},
		{"disk v1", "tart-manifest.json", func(m map[string]any) { layer(m, 1)["mediaType"] = MediaTypeTartDiskV1 }, "retired disk layout"},
		{"not a VM image", "tart-manifest.json", func(m map[string]any) {
			for _, l := range m["layers"].([]any) {
				l.(map[string]any)["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
			}
		}, "is not a VM image"},
		{"vz no disk", "macosvz-manifest.json", func(m map[string]any) { m["layers"] = m["layers"].([]any)[1:] }, "no disk layer"},
		{"vz half annotated", "macosvz-manifest.json", func(m map[string]any) { delete(ann(m, 0), AnnotationMacOSVZUncompressedSize) }, "lacks the com.agoda.macosvz.content.uncompressed-size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest(mutate(t, tc.file, tc.f))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := ParseManifest([]byte("{")); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("truncated JSON: %v", err)
	}
}

func TestParseVMConfig(t *testing.T) {
	t.Parallel()
	c, err := ParseVMConfig(readFile(t, "tart-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.CPUCount != 4 || c.MemorySize != 8<<30 || c.MACAddress != "7e:2b:3a:11:22:33" || c.DiskFormat != "raw" {
		t.Fatalf("got %+v", c)
	}
	if hw, err := c.HardwareModelData(); err != nil || !strings.HasPrefix(string(hw), "bplist00") {
		t.Fatalf("hardware model %q %v", hw, err)
	}
	// round trip through Marshal
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ParseVMConfig(b)
	if err != nil || *c2 != *c {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, c, c2)
	}
}

func TestParseVMConfigInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    func(m map[string]any)
		want string
	}{
		{"no version", func(m map[string]any) { delete(m, "version") }, `no "version"`},
		{"version 2", func(m map[string]any) { m["version"] = 2 }, "version 2 is not supported"},
		{"bad os", func(m map[string]any) { m["os"] = "windows" }, `os "windows"`},
		{"no ecid", func(m map[string]any) { delete(m, "ecid") }, "needs hardwareModel and ecid"},
		{"bad hw", func(m map[string]any) { m["hardwareModel"] = "!!!" }, "hardwareModel is not base64"},
		{"zero cpu", func(m map[string]any) { m["cpuCount"] = 0 }, "cpuCount 0"},
		{"min cpu above", func(m map[string]any) { m["cpuCountMin"] = 8 }, "cpuCountMin 8"},
		{"tiny memory", func(m map[string]any) { m["memorySize"] = 100 }, "below 1 MiB"},
		{"bad mac", func(m map[string]any) { m["macAddress"] = "zz" }, `macAddress "zz"`},
		{"bad disk format", func(m map[string]any) { m["diskFormat"] = "qcow2" }, `diskFormat "qcow2"`},
		{"wrong type", func(m map[string]any) { m["cpuCount"] = "four" }, "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			json.Unmarshal(readFile(t, "tart-config.json"), &m)
			tc.f(m)
			b, _ := json.Marshal(m)
			_, err := ParseVMConfig(b)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestVMConfigFromMacOSVZ(t *testing.T) {
	t.Parallel()
	c, err := VMConfigFromMacOSVZ(readFile(t, "macosvz-config.json"), "52:54:00:00:00:01")
	if err != nil {
		t.Fatal(err)
	}
	tart, _ := ParseVMConfig(readFile(t, "tart-config.json"))
	if c.ECID != tart.ECID || c.HardwareModel != tart.HardwareModel || c.OS != "darwin" {
		t.Fatalf("got %+v", c)
	}
	if _, err := VMConfigFromMacOSVZ([]byte(`{"os":"darwin"}`), "52:54:00:00:00:01"); err == nil {
		t.Fatal("config without hardware model accepted")
	}
}

func TestBuildTartManifest(t *testing.T) {
	t.Parallel()
	vm, _ := ParseVMConfig(readFile(t, "tart-config.json"))
	stub, err := StubConfig(vm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"architecture":"arm64","os":"darwin","config":{"Labels":{"org.cirruslabs.tart.disk.format":"raw"}}}`; string(stub) != want {
		t.Fatalf("stub config\n got %s\nwant %s", stub, want)
	}
	desc := func(mt string, b string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(b), Size: int64(len(b))}
	}
	layers := []ocispec.Descriptor{
		desc(MediaTypeTartConfig, "cfg"),
		DiskLayer(desc("", "chunk0"), DefaultChunkSize, digest.FromString("u0")),
		DiskLayer(desc("", "chunk1"), 1000, digest.FromString("u1")),
		desc(MediaTypeTartNVRAM, "nvram"),
	}
	m := NewTartManifest(desc(ocispec.MediaTypeImageConfig, string(stub)), layers, DefaultChunkSize+1000, nil)
	b, _ := json.Marshal(m)
	im, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if im.DiskSize != DefaultChunkSize+1000 || im.Disk[1].Offset != DefaultChunkSize || im.Disk[1].Digest != digest.FromString("u1") {
		t.Fatalf("got %+v", im)
	}
}

func FuzzParseManifest(f *testing.F) {
	for _, name := range []string{"tart-manifest.json", "tart-manifest-old-chunks.json", "macosvz-manifest.json"} {
		f.Add(readFile(f, name))
	}
	f.Add([]byte(`{"schemaVersion":2,"layers":[{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		var off int64
		for _, c := range im.Disk {
			if c.Offset != off || c.Size < 0 {
				t.Fatalf("chunk %d: offset %d size %d, expected offset %d", c.Index, c.Offset, c.Size, off)
			}
			off += c.Size
		}
		if off != im.DiskSize {
			t.Fatalf("sizes add up to %d, DiskSize %d", off, im.DiskSize)
		}
	})
}

func FuzzParseVMConfig(f *testing.F) {
	f.Add(readFile(f, "tart-config.json"))
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseVMConfig(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config fails validation: %v", err)
		}
	})
}
