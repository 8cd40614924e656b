package remote

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// UnknownHostError: the host has no entry in known_hosts, and accepting new
// host keys was not asked for.
type UnknownHostError struct {
	Host        string   // the host's name in fleetctl
	Address     string   // host:port as dialled
	KeyType     string   // the key the host presented
	Fingerprint string   // its SHA256 fingerprint
	KnownHosts  []string // the files searched
}

func (e *UnknownHostError) Error() string {
	host, port := splitHostPortDefault(e.Address)
	file := "~/.ssh/known_hosts"
	if len(e.KnownHosts) > 0 {
		file = e.KnownHosts[0]
	}
	return fmt.Sprintf("host %s (%s): unknown host key %s %s, not in %s; "+
		"check the fingerprint out of band, then add the key with `ssh-keyscan -p %s -t %s %s >> %s`, "+
		"or rerun with --accept-new-host-keys to trust it on first use",
		e.Host, e.Address, e.KeyType, e.Fingerprint, strings.Join(e.KnownHosts, ", "),
		port, shortKeyType(e.KeyType), host, file)
}

// Is makes errors.Is(err, ErrHostKeyUnknown) true.
func (e *UnknownHostError) Is(target error) bool { return target == ErrHostKeyUnknown }

// HostKeyChangedError: the host presented a key other than the one recorded
// in known_hosts. Either the host was reinstalled or someone is in the
// middle; fleetctl refuses to connect either way.
type HostKeyChangedError struct {
	Host        string
	Address     string
	KeyType     string // the presented key; empty when the host offered no key of a known type
	Fingerprint string
	Known       []KnownKey // what known_hosts holds for the host
}

// KnownKey is one known_hosts entry.
type KnownKey struct {
	File        string
	Line        int
	KeyType     string
	Fingerprint string
}

func (e *HostKeyChangedError) Error() string {
	var known []string
	for _, k := range e.Known {
		known = append(known, fmt.Sprintf("%s %s (%s:%d)", k.KeyType, k.Fingerprint, k.File, k.Line))
	}
	got := e.KeyType + " " + e.Fingerprint
	if e.KeyType == "" {
		got = "no key of the recorded types"
	}
	file := "~/.ssh/known_hosts"
	if len(e.Known) > 0 {
		file = e.Known[0].File
	}
	return fmt.Sprintf("host %s (%s): HOST KEY CHANGED: the host presented %s, known_hosts has %s; "+
		"this is either a reinstalled host or a man-in-the-middle attack. If you know the host was reinstalled, "+
		"remove the old key with `ssh-keygen -R %s -f %s` and add the new one after checking its fingerprint",
		e.Host, e.Address, got, strings.Join(known, ", "), Quote(knownhosts.Normalize(e.Address)), file)
}

// Is makes errors.Is(err, ErrHostKeyChanged) true.
func (e *HostKeyChangedError) Is(target error) bool { return target == ErrHostKeyChanged }

// hostKeys verifies host keys for one host against known_hosts files.
type hostKeys struct {
	host      string   // fleetctl's name for the host
	files     []string // known_hosts files; new keys go to the first
	acceptNew bool
	onAccept  func(file, line string) // observes recorded keys (logging)
}

// appendMu serializes appends within this process; the file lock covers
// other processes.
var appendMu sync.Mutex

func (h *hostKeys) db() (ssh.HostKeyCallback, error) {
	var existing, versions []string
	settled := true
	for _, f := range h.files {
		fi, err := os.Stat(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
		existing, versions = append(existing, f), append(versions, fileVersion(fi))
		settled = settled && time.Since(fi.ModTime()) > racyWindow
	}
	if len(existing) == 0 {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	return parseKnownHosts(existing, strings.Join(versions, "\n"), settled)
}

// knownHostsCache holds parsed known_hosts files by their paths, with the
// files' versions (fileVersion) when parsed: the hosts of a run, which
// usually share one file, parse it once, and the mux, which checks every
// connection it lends, re-reads a file only when it has changed.
var knownHostsCache = struct {
	sync.Mutex
	m map[string]parsedKnownHosts
}{m: map[string]parsedKnownHosts{}}

type parsedKnownHosts struct {
	versions string
	check    ssh.HostKeyCallback
}

// racyWindow: a file modified this recently is parsed anew each time, as
// a rewrite to the same size could still leave its version unchanged (file
// times are only as fine as the kernel's clock tick).
const racyWindow = time.Second

// parseKnownHosts parses files, or returns them parsed from the cache
// when their versions are those cached. Only settled files are cached.
func parseKnownHosts(files []string, versions string, settled bool) (ssh.HostKeyCallback, error) {
	key := strings.Join(files, "\x00")
	c := &knownHostsCache
	c.Lock() // hosts dialled at once parse the file once between them
	defer c.Unlock()
	if p, ok := c.m[key]; ok && p.versions == versions {
		return p.check, nil
	}
	check, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("reading known_hosts: %w", err)
	}
	if settled {
		c.m[key] = parsedKnownHosts{versions: versions, check: check}
	} else {
		delete(c.m, key)
	}
	return check, nil
}

// known returns the keys known_hosts records for address (host:port).
func (h *hostKeys) known(address string) ([]knownhosts.KnownKey, error) {
	cb, err := h.db()
	if err != nil {
		return nil, err
	}
	// Probe with a key nobody has: the KeyError lists the recorded keys.
	err = cb(address, &net.TCPAddr{}, probeKey)
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		return ke.Want, nil
	}
	if err == nil {
		return nil, fmt.Errorf("known_hosts accepted a random probe key for %s", address)
	}
	return nil, fmt.Errorf("known_hosts for %s: %w", address, err)
}

// algorithms are the host key algorithms to offer for the recorded keys, so
// the server presents a key known_hosts can verify. Nil means no preference.
func algorithms(known []knownhosts.KnownKey) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range known {
		algos := []string{k.Key.Type()}
		if k.Key.Type() == ssh.KeyAlgoRSA {
			algos = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, a := range algos {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// callback is the ssh.HostKeyCallback for the host.
func (h *hostKeys) callback() (ssh.HostKeyCallback, error) {
	cb, err := h.db()
	if err != nil {
		return nil, err
	}
	return func(address string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(address, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			var re *knownhosts.RevokedError
			if errors.As(err, &re) {
				return fmt.Errorf("host %s (%s): host key %s is marked @revoked in %s:%d; refusing to connect",
					h.host, address, ssh.FingerprintSHA256(key), re.Revoked.Filename, re.Revoked.Line)
			}
			return fmt.Errorf("host %s (%s): checking host key: %w", h.host, address, err)
		}
		if len(ke.Want) > 0 {
			return h.changed(address, key, ke.Want)
		}
		if !h.acceptNew {
			return &UnknownHostError{Host: h.host, Address: address, KeyType: key.Type(),
				Fingerprint: ssh.FingerprintSHA256(key), KnownHosts: h.files}
		}
		return h.record(address, key)
	}, nil
}

func (h *hostKeys) changed(address string, key ssh.PublicKey, want []knownhosts.KnownKey) error {
	e := &HostKeyChangedError{Host: h.host, Address: address}
	if key != nil {
		e.KeyType, e.Fingerprint = key.Type(), ssh.FingerprintSHA256(key)
	}
	for _, k := range want {
		e.Known = append(e.Known, KnownKey{File: k.Filename, Line: k.Line, KeyType: k.Key.Type(),
			Fingerprint: ssh.FingerprintSHA256(k.Key)})
	}
	sort.Slice(e.Known, func(i, j int) bool {
		if e.Known[i].File != e.Known[j].File {
			return e.Known[i].File < e.Known[j].File
		}
		return e.Known[i].Line < e.Known[j].Line
	})
	return e
}

// record appends the key to the first known_hosts file (trust on first
// use). Under the lock it checks again, so two fleetctl runs accepting the
// same host write one line, and a key recorded meanwhile is honoured.
func (h *hostKeys) record(address string, key ssh.PublicKey) error {
	if len(h.files) == 0 {
		return fmt.Errorf("host %s (%s): no known_hosts file to record the new key in", h.host, address)
	}
	file := h.files[0]
	appendMu.Lock()
	defer appendMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("recording host key of %s: %w", h.host, err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("recording host key of %s: %w", h.host, err)
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return fmt.Errorf("recording host key of %s: locking %s: %w", h.host, file, err)
	}
	defer unlockFile(f)

	cb, err := h.db()
	if err != nil {
		return err
	}
	err = cb(address, &net.TCPAddr{}, key)
	var ke *knownhosts.KeyError
	switch {
	case err == nil:
		return nil // recorded meanwhile
	case errors.As(err, &ke) && len(ke.Want) > 0:
		return h.changed(address, key, ke.Want)
	}

	line := knownhosts.Line([]string{knownhosts.Normalize(address)}, key) + "\n"
	if end, err := lastByte(f); err != nil {
		return fmt.Errorf("recording host key of %s: %w", h.host, err)
	} else if end != 0 && end != '\n' {
		line = "\n" + line
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("recording host key of %s in %s: %w", h.host, file, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("recording host key of %s in %s: %w", h.host, file, err)
	}
	if h.onAccept != nil {
		h.onAccept(file, strings.TrimSpace(line))
	}
	return nil
}

// lastByte returns the file's last byte, 0 for an empty file.
func lastByte(f *os.File) (byte, error) {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return 0, err
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, st.Size()-1); err != nil && err != io.EOF {
		return 0, err
	}
	return b[0], nil
}

// probeKey is a throwaway key used to list known_hosts entries.
var probeKey = func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
}()

func shortKeyType(t string) string {
	switch {
	case t == ssh.KeyAlgoED25519:
		return "ed25519"
	case t == ssh.KeyAlgoRSA:
		return "rsa"
	case strings.HasPrefix(t, "ecdsa-"):
		return "ecdsa"
	}
	return t
}

func splitHostPortDefault(address string) (host, port string) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return address, "22"
	}
	return host, port
}
