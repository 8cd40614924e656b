package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the loader: it must never panic, every
// failure must be a positioned *Error naming the file, and whatever loads
// must pass Validate and hold the invariants fleet/ relies on.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	files = append(files, "../examples/inventory.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse(data, "fuzz.yaml", testOptions()...)
		if err != nil {
			for _, e := range Errors(err) {
				if e.File != "fuzz.yaml" || e.Message == "" {
					t.Fatalf("error without file or message: %#v", e)
				}
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not start with the file name: %v", err)
			}
			return
		}
		if err := inv.Validate(); err != nil {
			t.Fatalf("loaded, but Validate fails: %v", err)
		}
		if len(inv.Hosts) == 0 {
			t.Fatal("loaded with no hosts")
		}
		seen := map[string]bool{}
		for _, h := range inv.Hosts {
			switch {
			case h.Name == "" || seen[h.Name]:
				t.Fatalf("empty or duplicate host name %q", h.Name)
			case h.SSH.Address == "" || h.SSH.User == "" || h.Node.Name == "":
				t.Fatalf("host %q loaded without address, user or node name", h.Name)
			case h.SSH.Port < 1 || h.SSH.Port > 65535 || h.Node.MaxVMs < 1 || h.Node.MaxVMs > 2:
				t.Fatalf("host %q: port %d, maxVMs %d out of range", h.Name, h.SSH.Port, h.Node.MaxVMs)
			case !filepath.IsAbs(h.SSH.KnownHostsFile) || !strings.HasPrefix(h.Paths.Binary, "/"):
				t.Fatalf("host %q: relative path", h.Name)
			case (h.Cluster.NodeCredentials.Kubeconfig != nil) == h.Cluster.NodeCredentials.CSR:
				t.Fatalf("host %q: node credentials not exactly one", h.Name)
			case h.GuestSSH.PrivateKey == nil && h.GuestSSH.Password == nil:
				t.Fatalf("host %q: no guest credentials", h.Name)
			}
			seen[h.Name] = true
		}
		if inv.Rollout.Concurrency < 1 || inv.Rollout.MaxUnavailable.Of(len(inv.Hosts)) < 1 {
			t.Fatalf("rollout out of range: %+v", inv.Rollout)
		}
	})
}
