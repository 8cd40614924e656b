package fleet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vzfleet/vzfleet/fleet/remote"
)

// A file whose size, mtime and inode are what the state recorded keeps the
// recorded hash (it is not read); any other file is hashed.
func TestGatherFactsHashesOnlyChangedFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config dir")
	if err := os.Mkdir(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	same, changed, missing := filepath.Join(cfg, "same"), filepath.Join(cfg, "changed"), filepath.Join(cfg, "missing")
	for _, p := range []string{same, changed} {
		if err := os.WriteFile(p, []byte("content of "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := remote.NewLocal(remote.LocalOptions{Name: "local"})
	ctx := context.Background()
	before, _, err := gatherFacts(ctx, h, filepath.Join(dir, "no-binary"), cfg, "dev.vzfleet.test", cfg, []string{same, changed, missing}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stats := before.Stats
	if len(stats) != 2 || len(strings.Fields(stats[same])) != 3 {
		t.Fatalf("stats = %q", stats)
	}
	recorded := "0000000000000000000000000000000000000000000000000000000000000001"
	state := installState{Files: map[string]installedFile{
		same:    {Source: recorded, Installed: recorded, Stat: stats[same]},
		changed: {Source: recorded, Installed: recorded, Stat: "1 2 3"},
	}}
	if err := os.WriteFile(statePath(cfg), state.encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _, err := gatherFacts(ctx, h, filepath.Join(dir, "no-binary"), cfg, "dev.vzfleet.test", cfg, []string{same, changed, missing}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Hashes[same] != recorded {
		t.Errorf("unchanged file was hashed again: %s", f.Hashes[same])
	}
	if want := sha256Hex([]byte("content of " + changed)); f.Hashes[changed] != want {
		t.Errorf("changed file hash = %s, want %s", f.Hashes[changed], want)
	}
	if _, ok := f.Hashes[missing]; ok {
		t.Error("a missing file has a hash")
	}
	if f.Job.Loaded || f.FreeDiskBytes <= 0 || f.Arch == "" {
		t.Errorf("facts of this machine: %+v", f)
	}
	if _, ok := f.Stats[statePath(cfg)]; ok {
		t.Error("the state file is among the managed files' stats")
	}

	if err := os.WriteFile(statePath(cfg), []byte(`{"files":`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = gatherFacts(ctx, h, filepath.Join(dir, "no-binary"), cfg, "dev.vzfleet.test", cfg, []string{same}, nil)
	if err == nil || !strings.Contains(err.Error(), "state file") {
		t.Errorf("a corrupt state file: %v", err)
	}
}

// The facts read the files asked for (the installed credentials) in the
// same command: exact bytes, empty files, names with spaces; missing ones
// are absent.
func TestGatherFactsReadsFiles(t *testing.T) {
	dir := t.TempDir()
	a, b, gone := filepath.Join(dir, "a b"), filepath.Join(dir, "b"), filepath.Join(dir, "gone")
	if err := os.WriteFile(a, []byte("line1\n--- files\n-1\n5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, got, err := gatherFacts(context.Background(), remote.NewLocal(remote.LocalOptions{}), filepath.Join(dir, "no-binary"), dir, "dev.vzfleet.test", dir,
		[]string{a}, []string{a, gone, b})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[a]) != "line1\n--- files\n-1\n5\n" || got[b] == nil || len(got[b]) != 0 {
		t.Errorf("read %q", got)
	}
	if _, ok := got[gone]; ok {
		t.Error("a missing file was read")
	}
}
