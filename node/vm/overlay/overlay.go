// Package overlay gives every pod its own copy-on-write clone of a cached VM
// image (disk and NVRAM) plus the per-machine identity macOS guests need to
// stay distinct: a fresh MAC address and machine identifier. Clones use the
// filesystem's reflink (FICLONE on Linux, clonefile on APFS) and fall back
// to a copy that keeps holes, so a mostly empty 64 GiB disk costs little
// either way.
package overlay

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Method says how a file was cloned.
type Method string

// The clone methods, best first.
const (
	Reflink    Method = "reflink"     // Linux FICLONE: shares extents, O(metadata)
	Clonefile  Method = "clonefile"   // APFS clonefile(2): shares extents
	SparseCopy Method = "sparse-copy" // data copied, holes and zero blocks kept as holes
)

// Shared reports whether the clone shares storage with its source.
func (m Method) Shared() bool { return m == Reflink || m == Clonefile }

// File names inside an overlay directory (tart's names for the same files).
const (
	DiskName     = "disk.img"
	AuxName      = "nvram.bin"
	metadataName = "overlay.json"
	tmpPrefix    = ".tmp-"
)

// staleTmpAge is how old an unfinished overlay must be before GC removes it;
// a sparse copy of a large disk can take minutes.
const staleTmpAge = time.Hour

// Overlay is one pod's private VM files.
type Overlay struct {
	ID       string `json:"id"`
	Dir      string `json:"-"`
	DiskPath string `json:"-"`
	// AuxPath is empty when the image has no NVRAM file.
	AuxPath string           `json:"-"`
	MAC     net.HardwareAddr `json:"-"`
	// MachineIdentifier is a VZMacMachineIdentifier data representation.
	MachineIdentifier []byte    `json:"machineIdentifier"`
	Method            Method    `json:"method"`
	Created           time.Time `json:"created"`
}

// metadata is what overlay.json holds.
type metadata struct {
	Overlay
	MAC    string `json:"mac"`
	HasAux bool   `json:"hasAux"`
}

// Store keeps overlays in one directory, one subdirectory per ID.
type Store struct {
	Root string
}

func (s Store) dir(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return "", fmt.Errorf("overlay id %q: must be a non-empty name without '/' that does not start with '.'", id)
	}
	return filepath.Join(s.Root, id), nil
}

// Create clones disk (and aux, if not empty) into a new overlay named id,
// with a fresh MAC address and machine identifier. The overlay appears
// only when complete; an existing overlay with the same id is an error
// wrapping os.ErrExist.
func (s Store) Create(id, disk, aux string) (*Overlay, error) {
	final, err := s.dir(id)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(final); err == nil {
		return nil, fmt.Errorf("overlay %s: %w", final, os.ErrExist)
	}
	if err := os.MkdirAll(s.Root, 0o755); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	tmp, err := os.MkdirTemp(s.Root, tmpPrefix+id+"-")
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	defer os.RemoveAll(tmp)

	o := &Overlay{ID: id, Created: time.Now().UTC()}
	if o.Method, err = Clone(disk, filepath.Join(tmp, DiskName)); err != nil {
		return nil, fmt.Errorf("overlay %s: disk: %w", id, err)
	}
	if aux != "" {
		m, err := Clone(aux, filepath.Join(tmp, AuxName))
		if err != nil {
			return nil, fmt.Errorf("overlay %s: nvram: %w", id, err)
		}
		if !m.Shared() {
			o.Method = m
		}
	}
	if o.MAC, err = NewMAC(); err != nil {
		return nil, fmt.Errorf("overlay %s: %w", id, err)
	}
	if o.MachineIdentifier, err = NewMachineIdentifier(); err != nil {
		return nil, fmt.Errorf("overlay %s: %w", id, err)
	}
	js, err := json.MarshalIndent(metadata{Overlay: *o, MAC: o.MAC.String(), HasAux: aux != ""}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("overlay %s: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, metadataName), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("overlay %s: %w", id, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, statErr := os.Stat(final); statErr == nil {
			return nil, fmt.Errorf("overlay %s: %w", final, os.ErrExist)
		}
		return nil, fmt.Errorf("overlay %s: %w", id, err)
	}
	return s.Get(id)
}

// Get loads the overlay named id; a missing one wraps os.ErrNotExist.
func (s Store) Get(id string) (*Overlay, error) {
	d, err := s.dir(id)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(d, metadataName))
	if err != nil {
		return nil, fmt.Errorf("overlay %s: %w", id, err)
	}
	var md metadata
	if err := json.Unmarshal(raw, &md); err != nil {
		return nil, fmt.Errorf("overlay %s: %s: %w", id, metadataName, err)
	}
	o := md.Overlay
	if o.MAC, err = net.ParseMAC(md.MAC); err != nil {
		return nil, fmt.Errorf("overlay %s: %s: %w", id, metadataName, err)
	}
	o.ID, o.Dir, o.DiskPath = id, d, filepath.Join(d, DiskName)
	if md.HasAux {
		o.AuxPath = filepath.Join(d, AuxName)
	}
	return &o, nil
}

// Remove deletes the overlay named id; removing a missing one is not an error.
func (s Store) Remove(id string) error {
	d, err := s.dir(id)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(d); err != nil {
		return fmt.Errorf("overlay %s: remove: %w", id, err)
	}
	return nil
}

// List returns the IDs of the complete overlays.
func (s Store) List() ([]string, error) {
	ents, err := os.ReadDir(s.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("overlay: list %s: %w", s.Root, err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// GC removes every overlay whose ID is not in live, and unfinished overlays
// left by a crash, returning what it removed.
func (s Store) GC(live map[string]bool) ([]string, error) {
	ents, err := os.ReadDir(s.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("overlay: gc %s: %w", s.Root, err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			info, err := e.Info()
			if err != nil || time.Since(info.ModTime()) < staleTmpAge {
				continue
			}
		case strings.HasPrefix(name, "."), !e.IsDir(), live[name]:
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.Root, name)); err != nil {
			errs = append(errs, fmt.Errorf("overlay: gc %s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// NewMAC returns a random locally administered unicast MAC address, as
// VZMACAddress.randomLocallyAdministeredAddress does.
func NewMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("random MAC: %w", err)
	}
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac, nil
}

// NewMachineIdentifier returns a fresh VZMacMachineIdentifier data
// representation: a binary property list holding one random ECID, as
// VZMacMachineIdentifier() generates.
func NewMachineIdentifier() ([]byte, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("random machine identifier: %w", err)
	}
	ecid := binary.BigEndian.Uint64(b[:]) &^ (1 << 63) // a positive plist integer
	return ecidPlist(ecid), nil
}

// ecidPlist encodes {"ECID": ecid} as a bplist00 document.
func ecidPlist(ecid uint64) []byte {
	p := []byte("bplist00")
	dictOff := len(p)
	p = append(p, 0xD1, 1, 2) // dict of 1 entry: key object 1, value object 2
	keyOff := len(p)
	p = append(p, 0x54, 'E', 'C', 'I', 'D') // ASCII string of 4
	intOff := len(p)
	p = append(p, 0x13) // integer of 2^3 bytes
	p = binary.BigEndian.AppendUint64(p, ecid)
	tableOff := len(p)
	p = append(p, byte(dictOff), byte(keyOff), byte(intOff))
	p = append(p, 0, 0, 0, 0, 0, 0) // unused, sort version
	p = append(p, 1, 1)             // offset size, object reference size
	p = binary.BigEndian.AppendUint64(p, 3)
	p = binary.BigEndian.AppendUint64(p, 0)
	p = binary.BigEndian.AppendUint64(p, uint64(tableOff))
	return p
}
