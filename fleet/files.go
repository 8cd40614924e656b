package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
)

// FileKind names what a managed file is for.
type FileKind string

// The files fleetctl installs on a host.
const (
	KindEntitlements     FileKind = "entitlements"
	KindConfig           FileKind = "config"
	KindCA               FileKind = "cluster-ca"
	KindKubeconfig       FileKind = "kubeconfig"
	KindServingCert      FileKind = "serving-cert"
	KindServingKey       FileKind = "serving-key"
	KindGuestSSHKey      FileKind = "guest-ssh-key"
	KindGuestSSHPassword FileKind = "guest-ssh-password"
	KindBinary           FileKind = "binary"
	KindPlist            FileKind = "plist"
)

// File is one managed file in its desired state.
type File struct {
	Kind    FileKind
	Path    string // absolute path on the host
	Content []byte
	Mode    fs.FileMode
	// Owner and Group are numeric: root:wheel is 0:0 on macOS.
	Owner, Group string
	// Secret files are written 0600 and never shown: diffs say
	// "(secret changed)".
	Secret bool
	// Sign: the temp file is codesigned on the host (with the entitlements)
	// before it is renamed into place.
	Sign bool
	// DependsOn lists paths whose change forces this file to be installed
	// again (the binary is signed with the entitlements).
	DependsOn []string
	// Restart: vz-node must restart to see a change (kickstart).
	Restart bool

	// sum caches SHA256 and size the length of Content: the binary's are
	// known before (and without) its content is read.
	sum  string
	size int64
}

// Size is the length of the desired content.
func (f File) Size() int64 {
	if f.Content == nil {
		return f.size
	}
	return int64(len(f.Content))
}

// SHA256 is the hex digest of the desired content.
func (f File) SHA256() string {
	if f.sum != "" {
		return f.sum
	}
	return sha256Hex(f.Content)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stateFileName is the record of what fleetctl installed, in ConfigDir.
const stateFileName = ".vzfleet-state.json"

// installState is what fleetctl installed on a host: per path the sha256 of
// what was sent and of what ended up on disk (they differ when codesign
// signed the binary on the host). It holds no secrets.
type installState struct {
	Files map[string]installedFile `json:"files"`
	// Version is what the installed binary reports as its version.
	Version string `json:"version,omitempty"`
}

type installedFile struct {
	Source    string `json:"source"`
	Installed string `json:"installed"`
	// Stat is "size mtime inode" right after the install; while it holds,
	// the file is taken to be unchanged without hashing it.
	Stat string `json:"stat,omitempty"`
}

// encode writes the state on one line, so the facts script can print it.
func (s installState) encode() []byte {
	b, _ := json.Marshal(s) // map keys come out sorted: stable bytes

	return append(b, '\n')
}

func decodeState(b []byte) (installState, error) {
	var s installState
	if len(b) == 0 {
		return installState{Files: map[string]installedFile{}}, nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return installState{Files: map[string]installedFile{}}, fmt.Errorf("reading fleetctl's state file: %w", err)
	}
	if s.Files == nil {
		s.Files = map[string]installedFile{}
	}
	return s, nil
}

func statePath(configDir string) string { return path.Join(configDir, stateFileName) }
