package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TempMarker is part of every temp file name an upload creates:
// ".<name>" + TempMarker + "<random>", in the target's directory.
const TempMarker = ".vzfleet-tmp-"

// stager is what the upload algorithm needs from a host implementation.
type stager interface {
	Host
	// createTemp creates path exclusively, mode 0600, as the connecting
	// user, or as root when root is set (and writesAsRoot said so).
	createTemp(ctx context.Context, path string, root bool) (io.WriteCloser, error)
	// writesAsRoot tells whether createTemp and the finisher can act as
	// root on a host that elevates.
	writesAsRoot(ctx context.Context) bool
	// elevates tells whether Sudo operations run under sudo on this host.
	elevates() bool
}

// finalizeScript sets mode and owner on the temp file, keeps the current
// target as .prev (a hard link: the old inode stays intact) and renames the
// temp file over the target (rename(2) within one directory: atomic).
const finalizeScript = `set -e
tmp=$1 target=$2 mode=$3 owner=$4 keep=$5
if [ -d "$target" ]; then echo "$target is a directory" >&2; exit 3; fi
chmod "$mode" "$tmp"
if [ -n "$owner" ]; then chown "$owner" "$tmp"; fi
if [ "$keep" = 1 ] && [ -f "$target" ]; then ln -f "$target" "$target.prev"; fi
mv -f "$tmp" "$target"`

// writeScript writes stdin to a new file that only its owner can read.
const writeScript = `umask 077 && set -C && exec cat > "$1"`

func upload(ctx context.Context, h stager, up Upload) error {
	if err := checkUpload(up); err != nil {
		return fmt.Errorf("host %s: upload %s: %w", h.Name(), up.Path, err)
	}
	fail := func(step string, err error) error {
		return fmt.Errorf("host %s: upload %s: %s: %w", h.Name(), up.Path, step, err)
	}
	tmp, sent, _, err := writeTemp(ctx, h, up)
	removeTemp := func() {
		// The caller's context may be what failed; cleanup gets its own.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = h.Run(ctx, Cmd{Args: []string{"rm", "-f", tmp}, Sudo: up.Sudo})
	}
	if err != nil {
		if tmp != "" {
			removeTemp()
		}
		return fail("writing the temp file", err)
	}
	got, err := SHA256(ctx, h, tmp, up.Sudo)
	if err != nil {
		removeTemp()
		return fail("hashing the temp file", err)
	}
	if got != sent {
		removeTemp()
		return fail("verifying the temp file", fmt.Errorf("%w: %s %s, the host has %s", ErrChecksumMismatch, sentWord(up), sent, got))
	}
	if up.Before != nil {
		if err := up.Before(ctx, h, tmp); err != nil {
			removeTemp()
			return fail("preparing the temp file", err)
		}
	}
	mode := up.Mode.Perm()
	if mode == 0 {
		mode = 0o600
	}
	owner := up.Owner
	if up.Group != "" {
		owner += ":" + up.Group
	}
	keep := "0"
	if up.KeepPrevious {
		keep = "1"
	}
	if _, err := h.Run(ctx, Cmd{
		Args: []string{"sh", "-c", finalizeScript, "sh", tmp, up.Path, fmt.Sprintf("%04o", mode), owner, keep},
		Sudo: up.Sudo,
	}); err != nil {
		removeTemp()
		return fail("moving the file into place", err)
	}
	return nil
}

// writeTemp streams up.Content into a new temp file beside up.Path and
// returns its path (also when writing failed after it was created), the
// sha256 the temp file must have and how many bytes were sent. The sha256
// is the caller's expected one when given (the host's file is checked
// against it, so hashing the content here too would only cost the
// operator's CPU, once per host), else the sha256 of what was sent.
func writeTemp(ctx context.Context, h stager, up Upload) (tmp, sent string, size int64, err error) {
	dir, base := path.Split(up.Path)
	tmp = path.Join(dir, "."+base+TempMarker+randomSuffix())
	hash := sha256.New()
	var src io.Reader = ctxReader{ctx: ctx, r: up.Content, n: &size}
	if up.SHA256 == "" {
		src = io.TeeReader(src, hash)
	}
	sum := func() string {
		if up.SHA256 != "" {
			return strings.ToLower(up.SHA256)
		}
		return hex.EncodeToString(hash.Sum(nil))
	}
	root := up.Sudo && h.elevates()
	if root && !h.writesAsRoot(ctx) {
		// The temp file must be in the target's directory, which the user
		// may not write to: sudo writes it, fed through the session.
		if _, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", writeScript, "sh", tmp}, Sudo: true, Stdin: src, Sensitive: true}); err != nil {
			return tmp, "", size, err
		}
		return tmp, sum(), size, nil
	}
	w, err := h.createTemp(ctx, tmp, root)
	if err != nil {
		return "", "", 0, fmt.Errorf("creating it: %w", err)
	}
	_, err = io.Copy(w, src)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return tmp, "", size, err
	}
	return tmp, sum(), size, nil
}

func checkUpload(up Upload) error {
	switch {
	case up.Content == nil:
		return errors.New("no content")
	case !path.IsAbs(up.Path) || path.Clean(up.Path) != up.Path || up.Path == "/":
		return errors.New("the target must be a clean absolute file path")
	case up.SHA256 != "" && len(up.SHA256) != sha256.Size*2:
		return fmt.Errorf("expected sha256 %q is not 64 hex digits", up.SHA256)
	case up.Mode&^fs.ModePerm != 0:
		return fmt.Errorf("mode %v has bits beyond the permissions", up.Mode)
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ctxReader stops a copy when the context ends, and counts what it read.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	n   *int64
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// hashTool sets h to the fastest sha256 tool the host has, reading stdin
// and printing the hex digest first: openssl (LibreSSL on macOS) hashes
// several times faster than coreutils' sha256sum or macOS's shasum (Perl).
const hashTool = `if command -v openssl >/dev/null 2>&1; then h="openssl dgst -sha256 -r"
elif command -v sha256sum >/dev/null 2>&1; then h=sha256sum
else h="shasum -a 256"; fi
`

// hashScript prints one line per argument: "-" for anything but a regular
// file, "+" for a regular file, or "= <sum>" for one whose name has a
// newline (hashed from stdin on its own, so no name reaches the output that
// is parsed by lines; "./" keeps a name starting with "-" from being read
// as an option); then "--" and the hash tool's line for each "+"
// file in order, all hashed by one run of the tool (a fleet uploads to many
// hosts at once: every program started on every host counts).
const hashScript = hashTool + `nl='
'
for f do
	shift
	if [ ! -f "$f" ]; then echo -
	else case $f in
		*"$nl"*) s=$($h < "$f") || exit 1; echo "= $s";;
		-*) set -- "$@" "./$f"; echo +;;
		*) set -- "$@" "$f"; echo +;;
	esac; fi
done
echo --
[ $# -eq 0 ] || exec $h "$@"`

// SHA256 returns the hex sha256 of a file on the host (with `sudo -n` when
// sudo is set and the host elevates). A missing file is fs.ErrNotExist.
func SHA256(ctx context.Context, h Host, file string, sudo bool) (string, error) {
	sums, err := SHA256Files(ctx, h, []string{file}, sudo)
	if err != nil {
		return "", err
	}
	sum, ok := sums[file]
	if !ok {
		return "", fmt.Errorf("host %s: hashing %s: %w", h.Name(), file, fs.ErrNotExist)
	}
	return sum, nil
}

// SHA256Files hashes several files with one command (one round trip and
// one run of the hash tool, for comparing managed files quickly). Files
// that do not exist, or are not regular files, are absent from the map.
func SHA256Files(ctx context.Context, h Host, files []string, sudo bool) (map[string]string, error) {
	if len(files) == 0 {
		return map[string]string{}, nil
	}
	res, err := h.Run(ctx, Cmd{Args: append([]string{"sh", "-c", hashScript, "sh"}, files...), Sudo: sudo})
	if err != nil {
		return nil, fmt.Errorf("host %s: hashing files: %w", h.Name(), err)
	}
	lines := strings.Split(strings.TrimSuffix(string(res.Stdout), "\n"), "\n")
	bad := func() error {
		return fmt.Errorf("host %s: hashing files: unexpected output for %d files: %q", h.Name(), len(files), firstLine(res.Stdout))
	}
	if len(lines) <= len(files) || lines[len(files)] != "--" {
		return nil, bad()
	}
	sums := make(map[string]string, len(files))
	tool := lines[len(files)+1:]
	for i, mark := range lines[:len(files)] {
		var line string
		switch {
		case mark == "-":
			continue
		case strings.HasPrefix(mark, "= "):
			line = mark[2:]
		case mark == "+" && len(tool) > 0:
			line, tool = tool[0], tool[1:]
		default:
			return nil, bad()
		}
		// sha256sum marks a line whose name it escaped with a backslash.
		sum, _, _ := strings.Cut(strings.TrimPrefix(line, "\\"), " ")
		if _, err := hex.DecodeString(sum); err != nil || len(sum) != sha256.Size*2 {
			return nil, fmt.Errorf("host %s: unexpected output of the sha256 tool for %s: %q", h.Name(), files[i], line)
		}
		sums[files[i]] = strings.ToLower(sum)
	}
	if len(tool) != 0 {
		return nil, bad()
	}
	return sums, nil
}

// CleanTemp removes temp files that interrupted uploads left in dir and
// that are older than olderThan (0: all of them; keep a margin when other
// uploads may be running). It returns the removed paths.
func CleanTemp(ctx context.Context, h Host, dir string, olderThan time.Duration, sudo bool) ([]string, error) {
	if !path.IsAbs(dir) {
		return nil, fmt.Errorf("host %s: cleaning temp files: %q is not an absolute directory", h.Name(), dir)
	}
	args := []string{"find", dir, "-maxdepth", "1", "-type", "f", "-name", ".*" + TempMarker + "*"}
	if olderThan > 0 {
		// -mmin +N: modified more than N whole minutes ago.
		args = append(args, "-mmin", "+"+strconv.Itoa(int(olderThan/time.Minute)))
	}
	args = append(args, "-print", "-exec", "rm", "-f", "{}", "+")
	res, err := h.Run(ctx, Cmd{Args: args, Sudo: sudo})
	if err != nil {
		return nil, fmt.Errorf("host %s: cleaning temp files in %s: %w", h.Name(), dir, err)
	}
	var removed []string
	sc := bufio.NewScanner(bytes.NewReader(res.Stdout))
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			removed = append(removed, line)
		}
	}
	return removed, nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if len(line) > 200 {
		line = line[:200]
	}
	return string(line)
}

// restoreScript renames "<path>.prev" over path; exit 3: no .prev file.
const restoreScript = `[ -f "$1.prev" ] || exit 3
mv -f "$1.prev" "$1"`

// RestorePrevious puts "<path>.prev", which an Upload with KeepPrevious
// kept, back at path: a rename, so atomic, and the previous inode returns.
// Without a .prev file it changes nothing and fails with fs.ErrNotExist.
func RestorePrevious(ctx context.Context, h Host, file string, sudo bool) error {
	if !path.IsAbs(file) {
		return fmt.Errorf("host %s: restoring %q: not an absolute path", h.Name(), file)
	}
	_, err := h.Run(ctx, Cmd{Args: []string{"sh", "-c", restoreScript, "sh", file}, Sudo: sudo})
	var exit *ExitError
	if errors.As(err, &exit) && exit.Code == 3 {
		return fmt.Errorf("host %s: restoring %s: no %s.prev: %w", h.Name(), file, file, fs.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("host %s: restoring %s from %s.prev: %w", h.Name(), file, file, err)
	}
	return nil
}

// batchFinalizeScript sets mode and owner on, keeps .prev of and renames
// each of several temp files, in order; its arguments come in groups of
// five: temp, target, mode, owner and keep (0/1). It prints "ok <i>" after
// each file is in place, so a failure part way says how far it got.
const batchFinalizeScript = `i=0
while [ $# -ge 5 ]; do
	tmp=$1 target=$2 mode=$3 owner=$4 keep=$5; shift 5
	if [ -d "$target" ]; then echo "$target is a directory" >&2; exit 3; fi
	chmod "$mode" "$tmp" || exit 1
	if [ -n "$owner" ]; then chown "$owner" "$tmp" || exit 1; fi
	if [ "$keep" = 1 ] && [ -f "$target" ]; then ln -f "$target" "$target.prev" || exit 1; fi
	mv -f "$tmp" "$target" || exit 1
	echo "ok $i"
	i=$((i+1))
done`

// finisher is a host that can put a temp file in place (mode, owner, .prev,
// rename) without starting a program on it: over SFTP, or with system
// calls on the local machine. Only files the connecting user wrote (not
// through sudo) are finished this way.
type finisher interface {
	// canFinish tells whether finish works on this host, as root when
	// root is set (SFTP servers without OpenSSH's hardlink and
	// posix-rename extensions cannot; nor can hosts where sudo cannot
	// run sftp-server, as root).
	canFinish(ctx context.Context, root bool) bool
	// finish does for one file what batchFinalizeScript does; uid and
	// gid are -1 to keep the temp file's.
	finish(ctx context.Context, f finishing, root bool) error
	// readSum reads a file back (over SFTP) and returns its sha256.
	readSum(ctx context.Context, path string, root bool) (string, error)
	// prepareDirs does what prepareScript does.
	prepareDirs(ctx context.Context, dirs, clean []string, root bool) error
}

// readBackMax is the largest temp file verified by reading it back rather
// than by a command that hashes it on the host: a session and a program
// on the host cost more than reading a small file.
const readBackMax = 64 << 10

// finishing is one temp file to put in place.
type finishing struct {
	tmp, target string
	mode        fs.FileMode
	uid, gid    int
	keep        bool
}

// errIsDirectory: an upload's target is a directory.
var errIsDirectory = errors.New("is a directory")

// prepareScript removes, from the directories before "--", the temp files
// interrupted uploads left, after making those and the ones after it: one
// mkdir and one find, however many directories.
const prepareScript = `set -e
for a do
	shift
	[ "$a" != -- ] || break
	set -- "$@" "$a"
	n=$((${n:-0}+1))
done
mkdir -p "$@"
shift $(($# - ${n:-0}))
[ $# -eq 0 ] || find "$@" -maxdepth 1 -type f -name '.*` + TempMarker + `*' -exec rm -f {} +`

// PrepareDirs makes dirs (with their parents) and removes, from clean, the
// temp files interrupted uploads left (all of them: no upload may be
// running). Where uploads finish over SFTP it sends SFTP requests only;
// elsewhere it runs one command (with `sudo -n` when sudo is set and the
// host elevates).
func PrepareDirs(ctx context.Context, h Host, dirs, clean []string, sudo bool) error {
	for _, d := range append(slices.Clone(dirs), clean...) {
		if !path.IsAbs(d) {
			return fmt.Errorf("host %s: preparing %q: not an absolute directory", h.Name(), d)
		}
	}
	s, staged := h.(stager)
	root := staged && sudo && s.elevates()
	if f, ok := h.(finisher); ok && staged && f.canFinish(ctx, root) {
		if err := f.prepareDirs(ctx, dirs, clean, root); err != nil {
			return fmt.Errorf("host %s: creating directories and removing interrupted uploads: %w", h.Name(), err)
		}
		return nil
	}
	args := append(append(append([]string{"sh", "-c", prepareScript, "sh"}, clean...), "--"), dirs...)
	if _, err := h.Run(ctx, Cmd{Args: args, Sudo: sudo}); err != nil {
		return fmt.Errorf("host %s: creating directories and removing interrupted uploads: %w", h.Name(), err)
	}
	return nil
}

// isTemp tells whether a directory entry's name is an upload's temp file.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, TempMarker)
}

// UploadAll writes several files as Upload writes each one, in a few
// round trips instead of a few per file: every temp file is written and
// verified, the hooks run, and the files are put in place in the order
// given. When the connecting user wrote them (over SFTP) and the owners
// are numeric, small files are verified by reading them back and all are
// put in place with SFTP requests, so only large files need a command on
// the host (one, hashing them all); otherwise one command hashes all the
// temp files and one puts them in place. Each file is replaced
// atomically; the batch is not: it returns how many of ups, from the
// first, are in place, also when it fails. On failure the temp files not
// yet renamed are removed. Hosts that are not SSH or local hosts get one
// Upload per file.
func UploadAll(ctx context.Context, h Host, ups []Upload) (int, error) {
	s, ok := h.(stager)
	if !ok {
		for i, up := range ups {
			if err := h.Upload(ctx, up); err != nil {
				return i, err
			}
		}
		return len(ups), nil
	}
	return uploadAll(ctx, s, ups)
}

func uploadAll(ctx context.Context, h stager, ups []Upload) (int, error) {
	if len(ups) == 0 {
		return 0, nil
	}
	temps := make([]string, 0, len(ups))
	sums := make([]string, 0, len(ups))
	sudo := false
	for _, up := range ups {
		sudo = sudo || up.Sudo
	}
	removeTemps := func(from int) {
		if from >= len(temps) {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = h.Run(ctx, Cmd{Args: append([]string{"rm", "-f"}, temps[from:]...), Sudo: sudo})
	}
	fail := func(up Upload, step string, err error) error {
		return fmt.Errorf("host %s: upload %s: %s: %w", h.Name(), up.Path, step, err)
	}
	for _, up := range ups {
		if err := checkUpload(up); err != nil {
			return 0, fail(up, "checking", err)
		}
	}
	steps := make([]finishing, len(ups))
	numeric := true
	for i, up := range ups {
		mode := up.Mode.Perm()
		if mode == 0 {
			mode = 0o600
		}
		uid, okU := numericID(up.Owner)
		gid, okG := numericID(up.Group)
		numeric = numeric && okU && okG
		steps[i] = finishing{target: up.Path, mode: mode, uid: uid, gid: gid, keep: up.KeepPrevious}
	}
	root := sudo && h.elevates()
	fin, ok := h.(finisher)
	ok = ok && numeric && fin.canFinish(ctx, root)
	var large []string
	got := map[string]string{}
	for i, up := range ups {
		tmp, sent, size, err := writeTemp(ctx, h, up)
		if tmp != "" {
			temps = append(temps, tmp)
		}
		if err != nil {
			removeTemps(0)
			return 0, fail(up, "writing the temp file", err)
		}
		sums = append(sums, sent)
		steps[i].tmp = tmp
		if !ok || size > readBackMax {
			large = append(large, tmp)
			continue
		}
		if got[tmp], err = fin.readSum(ctx, tmp, root); err != nil {
			removeTemps(0)
			return 0, fail(up, "reading the temp file back", err)
		}
	}
	if len(large) > 0 {
		hashed, err := SHA256Files(ctx, h, large, sudo)
		if err != nil {
			removeTemps(0)
			return 0, fail(ups[0], "hashing the temp files", err)
		}
		maps.Copy(got, hashed)
	}
	for i, up := range ups {
		if got[temps[i]] != sums[i] {
			removeTemps(0)
			return 0, fail(up, "verifying the temp file", fmt.Errorf("%w: %s %s, the host has %s", ErrChecksumMismatch, sentWord(up), sums[i], orNone(got[temps[i]])))
		}
	}
	for i, up := range ups {
		if up.Before == nil {
			continue
		}
		if err := up.Before(ctx, h, temps[i]); err != nil {
			removeTemps(0)
			return 0, fail(up, "preparing the temp file", err)
		}
	}
	var done int
	var err error
	if ok {
		for _, st := range steps {
			if err = fin.finish(ctx, st, root); err != nil {
				break
			}
			done++
		}
	} else {
		done, err = finalizeBatch(ctx, h, ups, steps, sudo)
	}
	if err != nil {
		removeTemps(done)
		return done, fail(ups[min(done, len(ups)-1)], "moving the file into place", err)
	}
	return done, nil
}

// finalizeBatch puts the temp files in place with one command and returns
// how many, from the first, are in place.
func finalizeBatch(ctx context.Context, h Host, ups []Upload, steps []finishing, sudo bool) (int, error) {
	args := []string{"sh", "-c", batchFinalizeScript, "sh"}
	for i, st := range steps {
		owner := ups[i].Owner
		if ups[i].Group != "" {
			owner += ":" + ups[i].Group
		}
		keep := "0"
		if st.keep {
			keep = "1"
		}
		args = append(args, st.tmp, st.target, fmt.Sprintf("%04o", st.mode), owner, keep)
	}
	res, err := h.Run(ctx, Cmd{Args: args, Sudo: sudo})
	done := 0
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if rest, ok := strings.CutPrefix(line, "ok "); ok {
			if n, err := strconv.Atoi(rest); err == nil && n == done {
				done++
			}
		}
	}
	if err != nil {
		return done, err
	}
	if done != len(ups) {
		return done, fmt.Errorf("the host confirmed %d of %d files", done, len(ups))
	}
	return done, nil
}

// numericID parses a numeric user or group ("" is -1: unchanged); ok is
// false for a name.
func numericID(s string) (int, bool) {
	if s == "" {
		return -1, true
	}
	n, err := strconv.ParseUint(s, 10, 31)
	return int(n), err == nil
}

// sentWord says what a checked sha256 is: the caller's expectation, or
// the hash of the bytes sent.
func sentWord(up Upload) string {
	if up.SHA256 != "" {
		return "expected sha256"
	}
	return "sent sha256"
}

func orNone(s string) string {
	if s == "" {
		return "no file"
	}
	return s
}

var (
	_ finisher = (*SSH)(nil)
	_ finisher = (*Local)(nil)
)
