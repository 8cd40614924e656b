package fleet

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/inventory"
)

func TestRetiredPaths(t *testing.T) {
	h := inventory.Host{Paths: inventory.Paths{
		Binary: "/usr/local/bin/vz-node", Plist: "/Library/LaunchDaemons/dev.vzfleet.vz-node.plist",
		ConfigDir: "/Library/Application Support/vzfleet", StateDir: "/var/db/vzfleet",
		CacheDir: "/Library/Caches/vzfleet", Log: "/var/log/vz-node.log",
	}}
	files, dirs, err := retiredPaths(h, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{h.Paths.Binary, h.Paths.Binary + ".prev", h.Paths.Plist, h.Paths.Kubeconfig(), h.Paths.GuestSSHKey() + ".prev", statePath(h.Paths.ConfigDir)} {
		if !slices.Contains(files, want) {
			t.Errorf("files %v lack %s", files, want)
		}
	}
	if slices.Contains(files, h.Paths.Log) || !slices.Equal(dirs, []string{h.Paths.StateDir}) {
		t.Errorf("without purge: files %v, dirs %v; want the state directory only, the log and cache kept", files, dirs)
	}
	files, dirs, err = retiredPaths(h, true)
	if err != nil || !slices.Contains(files, h.Paths.Log) || !slices.Equal(dirs, []string{h.Paths.StateDir, h.Paths.CacheDir}) {
		t.Errorf("with purge: files %v, dirs %v, %v; want the log and the cache too", files, dirs, err)
	}
	for _, dir := range []string{"/", "/var", "/var/", "//var"} {
		h.Paths.StateDir = dir
		if _, _, err := retiredPaths(h, false); err == nil || !strings.Contains(err.Error(), "refusing to remove") {
			t.Errorf("state directory %q: %v, want a refusal", dir, err)
		}
	}
}

func TestWriteRetireSummaryGolden(t *testing.T) {
	rep := &Report{Mode: ModeRetire, Hosts: []HostResult{
		{Host: "mini-01", Node: "mini-01", Status: StatusRetired, Duration: 12 * time.Second},
		{Host: "mini-02", Node: "mini-02", Status: StatusFailed, Phase: "drain", Duration: 15 * time.Minute,
			Err: errors.New("node mini-02 still runs 1 pod(s) after 15m0s (ci/build-7): it stays cordoned and vz-node stays installed; wait for them and retire again, raise --drain-timeout, or delete them")},
	}}
	var b bytes.Buffer
	if err := rep.WriteSummary(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "summary-retire.golden"), b.Bytes())
}
