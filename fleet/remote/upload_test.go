package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/test/harness/sshd"
)

// uploadHosts are the hosts uploads are tested on: both implementations,
// with and without sudo (the SSH+sudo one writes over SFTP served by
// sftp-server run through sudo; the local+sudo one through `sudo -n sh -c
// 'cat > temp'` and the shell).
func uploadHosts(t *testing.T) map[string]Host {
	srv := sshd.Start(t, sshd.Options{})
	return map[string]Host{
		"local":      NewLocal(LocalOptions{}),
		"local+sudo": NewLocal(LocalOptions{Sudo: true}),
		"ssh":        dialTest(t, srv),
		"ssh+sudo":   dialTest(t, srv, func(c *Config) { c.Sudo = true }),
	}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

var tempName = regexp.MustCompile(`^\.vz-node\.vzfleet-tmp-[0-9a-f]{16}$`)

func TestUpload(t *testing.T) {
	t.Parallel()
	for name, h := range uploadHosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			dir := t.TempDir()
			target := filepath.Join(dir, "vz-node")

			// A new file, with mode and owner.
			err := h.Upload(ctx, Upload{Path: target, Content: strings.NewReader("v1"), Mode: 0o755,
				Owner: "nobody", Group: "nogroup", KeepPrevious: true, Sudo: true})
			if err != nil {
				t.Fatal(err)
			}
			assertFile(t, target, "v1", 0o755, 65534)
			assertDirHolds(t, dir, "vz-node")
			first := inode(t, target)
			info, err := h.Stat(ctx, target)
			if err != nil || info.Mode != 0o755 || info.UID != 65534 || info.GID != 65534 || info.Size != 2 {
				t.Fatalf("Stat = %+v, %v", info, err)
			}

			// A replacement: hook on the verified temp file, .prev kept.
			hooked := false
			err = h.Upload(ctx, Upload{Path: target, Content: strings.NewReader("v2"), SHA256: sum("v2"),
				Mode: 0o755, KeepPrevious: true, Sudo: true,
				Before: func(ctx context.Context, hh Host, tmp string) error {
					hooked = true
					if filepath.Dir(tmp) != dir || !tempName.MatchString(filepath.Base(tmp)) {
						t.Errorf("temp file %s is not .vz-node.vzfleet-tmp-* in %s", tmp, dir)
					}
					// Private while in flight, whatever the final mode.
					assertFile(t, tmp, "v2", 0o600, uint32(os.Getuid()))
					// Like codesign: change the file in place.
					_, err := hh.Run(ctx, Cmd{Args: []string{"sh", "-c", `printf +signed >> "$1"`, "sh", tmp}, Sudo: true})
					return err
				}})
			if err != nil || !hooked {
				t.Fatalf("upload: %v (hook ran: %v)", err, hooked)
			}
			assertFile(t, target, "v2+signed", 0o755, uint32(os.Getuid()))
			assertFile(t, target+".prev", "v1", 0o755, 65534)
			if inode(t, target+".prev") != first || inode(t, target) == first {
				t.Fatal("the new file must be a new inode and .prev the old one")
			}
			assertDirHolds(t, dir, "vz-node", "vz-node.prev")

			// Content that is not what the caller expected: nothing changes,
			// and the content is not in the error.
			secret := "TOPSECRET-" + name
			err = h.Upload(ctx, Upload{Path: target, Content: strings.NewReader(secret), SHA256: sum("other"), KeepPrevious: true, Sudo: true})
			if !errors.Is(err, ErrChecksumMismatch) || strings.Contains(err.Error(), secret) {
				t.Fatalf("want ErrChecksumMismatch without the content, got %v", err)
			}
			assertFile(t, target, "v2+signed", 0o755, uint32(os.Getuid()))
			assertDirHolds(t, dir, "vz-node", "vz-node.prev")

			// A failing hook aborts; the target stays.
			err = h.Upload(ctx, Upload{Path: target, Content: strings.NewReader("v3"), Sudo: true,
				Before: func(context.Context, Host, string) error { return errors.New("codesign failed") }})
			if err == nil || !strings.Contains(err.Error(), "codesign failed") {
				t.Fatalf("want the hook's error, got %v", err)
			}
			assertFile(t, target, "v2+signed", 0o755, uint32(os.Getuid()))
			assertDirHolds(t, dir, "vz-node", "vz-node.prev")

			// A failing step after the transfer (chown) leaves nothing behind
			// and says what failed, briefly.
			err = h.Upload(ctx, Upload{Path: target, Content: strings.NewReader("v4"), Owner: "no-such-user-vzfleet", Sudo: true})
			if err == nil || !strings.Contains(err.Error(), "moving the file into place") ||
				!strings.Contains(err.Error(), "no-such-user-vzfleet") || strings.Contains(err.Error(), "mv -f") {
				t.Fatalf("want a short chown error, got %v", err)
			}
			assertFile(t, target, "v2+signed", 0o755, uint32(os.Getuid()))
			assertDirHolds(t, dir, "vz-node", "vz-node.prev")

			// Secrets: 0600 by default.
			kubeconfig := filepath.Join(dir, "kubeconfig")
			if err := h.Upload(ctx, Upload{Path: kubeconfig, Content: strings.NewReader(secret), Sudo: true}); err != nil {
				t.Fatal(err)
			}
			assertFile(t, kubeconfig, secret, 0o600, uint32(os.Getuid()))
			if data, err := h.ReadFile(ctx, kubeconfig); err != nil || string(data) != secret {
				t.Fatalf("ReadFile = %q, %v", data, err)
			}

			// Refused targets leave nothing behind.
			if err := h.Upload(ctx, Upload{Path: dir, Content: strings.NewReader("x"), Sudo: true}); err == nil {
				t.Fatal("uploading over a directory succeeded")
			}
			if err := h.Upload(ctx, Upload{Path: "relative/path", Content: strings.NewReader("x")}); err == nil {
				t.Fatal("uploading to a relative path succeeded")
			}
			assertDirHolds(t, dir, "kubeconfig", "vz-node", "vz-node.prev")

			// Missing files are fs.ErrNotExist.
			if _, err := h.ReadFile(ctx, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("ReadFile of a missing file: %v", err)
			}
			if _, err := h.Stat(ctx, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Stat of a missing file: %v", err)
			}
		})
	}
}

// corrupting changes the temp file just before the host hashes it, as a
// disk or transfer fault would.
type corrupting struct{ stager }

func (c corrupting) Run(ctx context.Context, cmd Cmd) (Result, error) {
	if len(cmd.Args) == 5 && cmd.Args[2] == hashScript && strings.Contains(cmd.Args[4], TempMarker) {
		f, err := os.OpenFile(cmd.Args[4], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return Result{}, err
		}
		_, _ = f.WriteString("garbage")
		f.Close()
	}
	return c.stager.Run(ctx, cmd)
}

func TestUploadDetectsCorruptionOnHost(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	h := dialTest(t, srv)
	dir := t.TempDir()
	target := filepath.Join(dir, "vz-node")
	writeFile(t, target, "old")
	err := upload(testContext(t), corrupting{h}, Upload{Path: target, Content: strings.NewReader("new"), KeepPrevious: true})
	if !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), "sent sha256 "+sum("new")+", the host has "+sum("newgarbage")) {
		t.Fatalf("want a checksum mismatch naming both sums, got %v", err)
	}
	assertFile(t, target, "old", 0o600, uint32(os.Getuid()))
	assertDirHolds(t, dir, "vz-node")
}

// cutReader yields size pseudo-random bytes and calls cut once after at
// bytes.
type cutReader struct {
	r       io.Reader
	read    int64
	at      int64
	cutOnce sync.Once
	cut     func()
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.cut != nil && c.read >= c.at {
		c.cutOnce.Do(c.cut)
	}
	n, err := c.r.Read(p)
	c.read += int64(n)
	return n, err
}

func bigContent(size int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
}

func TestUploadConnectionCut(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	h := sha256.New()
	if _, err := io.Copy(h, bigContent(size)); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	for _, sudo := range []bool{false, true} {
		name := map[bool]string{false: "sftp", true: "sudo"}[sudo]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := sshd.Start(t, sshd.Options{})
			host := dialTest(t, srv, func(c *Config) { c.Sudo = sudo; c.DialAttempts = 2 })
			ctx := testContext(t)
			dir := t.TempDir()
			target := filepath.Join(dir, "vz-node")
			writeFile(t, target, "old")

			// The host goes down a quarter into the transfer.
			content := &cutReader{r: bigContent(size), at: size / 4, cut: srv.Stop}
			err := host.Upload(ctx, Upload{Path: target, Content: content, Mode: 0o755, KeepPrevious: true, Sudo: true})
			if err == nil {
				t.Fatal("upload survived the host going down")
			}
			t.Logf("interrupted upload: %v", err)
			assertFile(t, target, "old", 0o600, uint32(os.Getuid()))
			leftovers := tempFiles(t, dir)
			if len(leftovers) > 1 {
				t.Fatalf("more than one temp file: %v", leftovers)
			}

			// The host comes back; the same SSH host reconnects, cleans up
			// and converges.
			srv.Restart()
			removed, err := CleanTemp(ctx, host, dir, 0, true)
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(removed)
			if strings.Join(removed, ",") != strings.Join(leftovers, ",") {
				t.Fatalf("CleanTemp removed %v, leftovers were %v", removed, leftovers)
			}
			assertDirHolds(t, dir, "vz-node")
			if err := host.Upload(ctx, Upload{Path: target, Content: bigContent(size), SHA256: want, Mode: 0o755, KeepPrevious: true, Sudo: true}); err != nil {
				t.Fatalf("rerun: %v", err)
			}
			got, err := SHA256(ctx, host, target, true)
			if err != nil || got != want {
				t.Fatalf("target sha256 %s (%v), want %s", got, err, want)
			}
			assertFile(t, target+".prev", "old", 0o600, uint32(os.Getuid()))
			assertDirHolds(t, dir, "vz-node", "vz-node.prev")
		})
	}
}

func TestCleanTempKeepsRecentFiles(t *testing.T) {
	t.Parallel()
	for name, h := range hostsUnderTest(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			old := time.Now().Add(-2 * time.Hour)
			for _, f := range []string{".a.vzfleet-tmp-1", ".b.vzfleet-tmp-2", "c.vzfleet-tmp-3", "regular"} {
				writeFile(t, filepath.Join(dir, f), "x")
				if f != ".b.vzfleet-tmp-2" {
					if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
						t.Fatal(err)
					}
				}
			}
			removed, err := CleanTemp(testContext(t), h, dir, time.Hour, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(removed) != 1 || removed[0] != filepath.Join(dir, ".a.vzfleet-tmp-1") {
				t.Fatalf("removed %v", removed)
			}
			assertDirHolds(t, dir, ".b.vzfleet-tmp-2", "c.vzfleet-tmp-3", "regular")
		})
	}
}

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if tempName.MatchString(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func assertFile(t *testing.T, path, content string, mode fs.FileMode, uid uint32) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, []byte(content)) {
		t.Fatalf("%s holds %q, want %q", path, data, content)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != mode {
		t.Fatalf("%s has mode %v, want %v", path, st.Mode().Perm(), mode)
	}
	if got := st.Sys().(*syscall.Stat_t).Uid; got != uid {
		t.Fatalf("%s is owned by uid %d, want %d", path, got, uid)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestRestorePrevious(t *testing.T) {
	t.Parallel()
	for name, h := range hostsUnderTest(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			dir := t.TempDir()
			target := filepath.Join(dir, "vz-node")
			for _, v := range []string{"good", "bad"} {
				if err := h.Upload(ctx, Upload{Path: target, Content: strings.NewReader(v), Mode: 0o755, KeepPrevious: true}); err != nil {
					t.Fatal(err)
				}
			}
			good := inode(t, target+".prev")
			if err := RestorePrevious(ctx, h, target, true); err != nil {
				t.Fatal(err)
			}
			assertFile(t, target, "good", 0o755, uint32(os.Getuid()))
			if inode(t, target) != good {
				t.Fatal("the restored file is not the previous inode")
			}
			assertDirHolds(t, dir, "vz-node")
			if err := RestorePrevious(ctx, h, target, true); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("second restore: want fs.ErrNotExist, got %v", err)
			}
			assertFile(t, target, "good", 0o755, uint32(os.Getuid()))
		})
	}
}

func TestSHA256Files(t *testing.T) {
	t.Parallel()
	for name, h := range hostsUnderTest(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			files := map[string]string{"plain": "a", "with space": "b", "new\nline": "", "-dash": "c"}
			var paths []string
			for f, content := range files {
				writeFile(t, filepath.Join(dir, f), content)
				paths = append(paths, filepath.Join(dir, f))
			}
			paths = append(paths, filepath.Join(dir, "missing"), dir)
			sums, err := SHA256Files(testContext(t), h, paths, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(sums) != len(files) {
				t.Fatalf("got %d sums, want %d: %v", len(sums), len(files), sums)
			}
			for f, content := range files {
				if got := sums[filepath.Join(dir, f)]; got != sum(content) {
					t.Errorf("%q: sha256 %s, want %s", f, got, sum(content))
				}
			}
			if _, err := SHA256(testContext(t), h, filepath.Join(dir, "missing"), false); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("SHA256 of a missing file: %v", err)
			}
		})
	}
}

func TestUploadAll(t *testing.T) {
	t.Parallel()
	for name, h := range uploadHosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			dir := t.TempDir()
			a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
			writeFile(t, b, "old b")
			oldB := inode(t, b)

			// Without hooks: one finalize command checks and installs all.
			n, err := UploadAll(ctx, h, []Upload{
				{Path: a, Content: strings.NewReader("a1"), SHA256: sum("a1"), Mode: 0o644, Sudo: true},
				{Path: b, Content: strings.NewReader("b1"), Mode: 0o600, KeepPrevious: true, Sudo: true},
			})
			if err != nil || n != 2 {
				t.Fatalf("UploadAll = %d, %v", n, err)
			}
			assertFile(t, a, "a1", 0o644, uint32(os.Getuid()))
			assertFile(t, b, "b1", 0o600, uint32(os.Getuid()))
			assertFile(t, b+".prev", "old b", 0o600, uint32(os.Getuid()))
			if inode(t, b) == oldB || inode(t, b+".prev") != oldB {
				t.Error("b was not replaced by a new inode with the old one kept as .prev")
			}

			// With a hook: it sees the verified temp file, and may change it.
			hooked := 0
			n, err = UploadAll(ctx, h, []Upload{
				{Path: c, Content: strings.NewReader("c1"), Mode: 0o755, Sudo: true,
					Before: func(ctx context.Context, hh Host, tmp string) error {
						hooked++
						assertFile(t, tmp, "c1", 0o600, uint32(os.Getuid()))
						_, err := hh.Run(ctx, Cmd{Args: []string{"sh", "-c", `printf +signed >> "$1"`, "sh", tmp}, Sudo: true})
						return err
					}},
				{Path: a, Content: strings.NewReader("a2"), Mode: 0o644, Sudo: true},
			})
			if err != nil || n != 2 || hooked != 1 {
				t.Fatalf("UploadAll with a hook = %d, %v (hook ran %d times)", n, err, hooked)
			}
			assertFile(t, c, "c1+signed", 0o755, uint32(os.Getuid()))
			assertFile(t, a, "a2", 0o644, uint32(os.Getuid()))

			// A failing hook: nothing changes, no temp file stays.
			_, err = UploadAll(ctx, h, []Upload{
				{Path: a, Content: strings.NewReader("a3"), Sudo: true},
				{Path: c, Content: strings.NewReader("c3"), Sudo: true, Before: func(context.Context, Host, string) error { return errors.New("no signature") }},
			})
			if err == nil || !strings.Contains(err.Error(), "no signature") {
				t.Fatalf("want the hook's error, got %v", err)
			}
			assertFile(t, a, "a2", 0o644, uint32(os.Getuid()))
			assertDirHolds(t, dir, "a", "b", "b.prev", "c")

			// A directory in the way part way: the files before it are in
			// place, and the count says so.
			if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
				t.Fatal(err)
			}
			n, err = UploadAll(ctx, h, []Upload{
				{Path: a, Content: strings.NewReader("a4"), Sudo: true},
				{Path: filepath.Join(dir, "d"), Content: strings.NewReader("d"), Sudo: true},
				{Path: b, Content: strings.NewReader("b4"), Sudo: true},
			})
			if err == nil || n != 1 || !strings.Contains(err.Error(), "is a directory") {
				t.Fatalf("UploadAll over a directory = %d, %v", n, err)
			}
			assertFile(t, a, "a4", 0o600, uint32(os.Getuid()))
			assertFile(t, b, "b1", 0o600, uint32(os.Getuid()))
			assertDirHolds(t, dir, "a", "b", "b.prev", "c", "d")
		})
	}
}

// corruptingFinalize changes every temp file just before the batch's
// hash command checks it.
type corruptingFinalize struct{ stager }

func (c corruptingFinalize) Run(ctx context.Context, cmd Cmd) (Result, error) {
	if len(cmd.Args) > 4 && cmd.Args[2] == hashScript {
		for i := 4; i < len(cmd.Args); i++ {
			f, err := os.OpenFile(cmd.Args[i], os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return Result{}, err
			}
			_, _ = f.WriteString("garbage")
			f.Close()
		}
	}
	return c.stager.Run(ctx, cmd)
}

func TestUploadAllDetectsCorruptionOnHost(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	h := dialTest(t, srv)
	dir := t.TempDir()
	target := filepath.Join(dir, "config")
	writeFile(t, target, "old")
	n, err := uploadAll(testContext(t), corruptingFinalize{h}, []Upload{{Path: target, Content: strings.NewReader("new"), KeepPrevious: true}})
	if n != 0 || !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), "sent sha256 "+sum("new")+", the host has "+sum("newgarbage")) {
		t.Fatalf("want a checksum mismatch naming both sums, got %d, %v", n, err)
	}
	assertFile(t, target, "old", 0o600, uint32(os.Getuid()))
	assertDirHolds(t, dir, "config")
}

// commandLog is an SSH host that records the commands it runs.
type commandLog struct {
	*SSH
	mu   sync.Mutex
	cmds []string
}

func (c *commandLog) Run(ctx context.Context, cmd Cmd) (Result, error) {
	c.mu.Lock()
	c.cmds = append(c.cmds, strings.Join(cmd.Args[:min(len(cmd.Args), 3)], " "))
	c.mu.Unlock()
	return c.SSH.Run(ctx, cmd)
}

// Files the connecting user wrote with numeric owners are verified and put
// in place over SFTP: small ones need no command on the host, large ones
// only the one that hashes them all, and mode, owner, .prev and the new
// inode come out as the shell would make them. Owner names need chown(1),
// so a batch with one goes through the shell.
func TestUploadAllFinishesOverSFTP(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.Options{})
	h := &commandLog{SSH: dialTest(t, srv)}
	ctx := testContext(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, b, "old b")
	oldB := inode(t, b)
	n, err := UploadAll(ctx, h, []Upload{
		{Path: a, Content: strings.NewReader("a1"), Mode: 0o644, Owner: "65534", Group: "65534"},
		{Path: b, Content: strings.NewReader("b1"), SHA256: sum("b1"), Mode: 0o755, Owner: "65534", KeepPrevious: true},
	})
	if err != nil || n != 2 {
		t.Fatalf("UploadAll = %d, %v", n, err)
	}
	assertFile(t, a, "a1", 0o644, 65534)
	assertFile(t, b, "b1", 0o755, 65534)
	assertFile(t, b+".prev", "old b", 0o600, 0)
	if inode(t, b) == oldB || inode(t, b+".prev") != oldB {
		t.Error("b was not replaced by a new inode with the old one kept as .prev")
	}
	assertDirHolds(t, dir, "a", "b", "b.prev")
	if len(h.cmds) != 0 {
		t.Errorf("commands run for small files: %q, want none", h.cmds)
	}

	large := strings.Repeat("x", readBackMax+1)
	n, err = UploadAll(ctx, h, []Upload{
		{Path: a, Content: strings.NewReader("a2"), SHA256: sum("a2")},
		{Path: b, Content: strings.NewReader(large), SHA256: sum(large), Mode: 0o755},
	})
	if err != nil || n != 2 {
		t.Fatalf("UploadAll of a large file = %d, %v", n, err)
	}
	assertFile(t, b, large, 0o755, 0)
	if want := []string{"sh -c " + hashScript}; !slices.Equal(h.cmds, want) {
		t.Errorf("commands run: %q, want only the hash command", h.cmds)
	}

	h.cmds = nil
	n, err = UploadAll(ctx, h, []Upload{{Path: a, Content: strings.NewReader("a3"), Mode: 0o644, Owner: "nobody"}})
	if err != nil || n != 1 {
		t.Fatalf("UploadAll with an owner name = %d, %v", n, err)
	}
	assertFile(t, a, "a3", 0o644, 65534)
	if len(h.cmds) != 2 || h.cmds[0] != "sh -c "+hashScript || h.cmds[1] != "sh -c "+batchFinalizeScript {
		t.Errorf("commands run: %q, want the hash and the finalize command", h.cmds)
	}

	// A small file changed on the host before it is read back: the
	// target stays as it was and no temp file remains.
	n, err = uploadAll(ctx, corruptingReadBack{h.SSH}, []Upload{{Path: a, Content: strings.NewReader("a4"), Mode: 0o644}})
	if n != 0 || !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), "sent sha256 "+sum("a4")+", the host has "+sum("a4garbage")) {
		t.Fatalf("want a checksum mismatch naming both sums, got %d, %v", n, err)
	}
	assertFile(t, a, "a3", 0o644, 65534)
	assertDirHolds(t, dir, "a", "b", "b.prev")
}

// corruptingReadBack changes a temp file just before it is read back.
type corruptingReadBack struct{ *SSH }

func (c corruptingReadBack) readSum(ctx context.Context, path string, root bool) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", err
	}
	_, _ = f.WriteString("garbage")
	f.Close()
	return c.SSH.readSum(ctx, path, root)
}

func TestPrepareDirs(t *testing.T) {
	t.Parallel()
	for name, h := range uploadHosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			clean, other := filepath.Join(dir, "bin"), filepath.Join(dir, "other")
			for _, d := range []string{clean, other, filepath.Join(clean, ".dir"+TempMarker+"1")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []string{".vz-node" + TempMarker + "0123", ".profile", "vz-node"} {
				writeFile(t, filepath.Join(clean, f), f)
			}
			writeFile(t, filepath.Join(other, ".x"+TempMarker+"1"), "x")
			made := filepath.Join(dir, "new", "deep")
			if err := PrepareDirs(testContext(t), h, []string{made, other}, []string{clean, filepath.Join(dir, "new")}, true); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(made); err != nil || !fi.IsDir() {
				t.Fatalf("%s was not made: %v", made, err)
			}
			// Only temp files go, only in the directories to clean.
			assertDirHolds(t, clean, ".dir"+TempMarker+"1", ".profile", "vz-node")
			assertDirHolds(t, other, ".x"+TempMarker+"1")
			if err := PrepareDirs(testContext(t), h, []string{"relative"}, nil, true); err == nil {
				t.Fatal("a relative directory was accepted")
			}
		})
	}
}

// On a host that elevates, files for root go over SFTP too, served by
// sftp-server run through sudo: no `sudo sh -c 'cat > temp'` per file and
// no finalize command, only the hash of the large file.
func TestUploadAllAsRootOverSFTP(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Fatal("sudo is not installed (apt-get install sudo)")
	}
	srv := sshd.Start(t, sshd.Options{})
	h := &commandLog{SSH: dialTest(t, srv, func(c *Config) { c.Sudo = true })}
	ctx := testContext(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "new", "a"), filepath.Join(dir, "new", "b")
	if err := PrepareDirs(ctx, h, []string{filepath.Dir(a)}, []string{filepath.Dir(a)}, true); err != nil {
		t.Fatal(err)
	}
	large := strings.Repeat("y", readBackMax+1)
	n, err := UploadAll(ctx, h, []Upload{
		{Path: a, Content: strings.NewReader("a1"), Mode: 0o640, Owner: "65534", Group: "0", Sudo: true},
		{Path: b, Content: strings.NewReader(large), SHA256: sum(large), Mode: 0o755, Sudo: true, KeepPrevious: true},
	})
	if err != nil || n != 2 {
		t.Fatalf("UploadAll = %d, %v", n, err)
	}
	assertFile(t, a, "a1", 0o640, 65534)
	assertFile(t, b, large, 0o755, 0)
	if want := []string{"sh -c " + hashScript}; !slices.Equal(h.cmds, want) {
		t.Errorf("commands run: %q, want only the hash command", h.cmds)
	}
	if !h.writesAsRoot(ctx) {
		t.Error("no SFTP as root")
	}
}

// SFTP requests have no context of their own: when the host's SFTP server
// hangs (sshd still answering), an upload, a read and a stat end with the
// context all the same, and the next request starts a new server.
func TestSFTPRequestsEndWithTheContext(t *testing.T) {
	t.Parallel()
	for _, sudo := range []bool{false, true} {
		name := map[bool]string{false: "sftp", true: "sudo"}[sudo]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := sshd.Start(t, sshd.Options{})
			host := dialTest(t, srv, func(c *Config) { c.Sudo = sudo })
			dir := t.TempDir()
			target := filepath.Join(dir, "f")
			// bounded runs call while the SFTP servers the host has
			// started are stopped.
			bounded := func(what string, call func(ctx context.Context) error) {
				t.Helper()
				if _, err := host.Stat(testContext(t), dir); err != nil {
					t.Fatal(err)
				}
				if sudo && !host.writesAsRoot(testContext(t)) {
					t.Fatal("no SFTP as root")
				}
				srv.FreezeSFTP()
				defer srv.ThawSFTP()
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- call(ctx) }()
				select {
				case err := <-done:
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("%s with the SFTP server stopped: want the context's error, got %v", what, err)
					}
				case <-time.After(15 * time.Second):
					t.Fatalf("%s still waiting for a hung SFTP server 15s after its context ended", what)
				}
			}
			bounded("upload", func(ctx context.Context) error {
				_, err := UploadAll(ctx, host, []Upload{{Path: target, Content: bigContent(4 << 20), Mode: 0o644, Sudo: true}})
				return err
			})
			bounded("read", func(ctx context.Context) error { _, err := host.ReadFile(ctx, "/etc/hostname"); return err })
			bounded("stat", func(ctx context.Context) error { _, err := host.Stat(ctx, dir); return err })
			ctx := testContext(t)
			if _, err := UploadAll(ctx, host, []Upload{{Path: target, Content: strings.NewReader("back"), Mode: 0o644, Sudo: true}}); err != nil {
				t.Fatalf("after the SFTP server recovered: %v", err)
			}
			assertFile(t, target, "back", 0o644, uint32(os.Getuid()))
		})
	}
}
