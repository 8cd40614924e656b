// Package supervisor runs one VM per process so VMs outlive vz-node.
//
// vz-node starts `vz-node vm run --state-dir S --id UID` detached (its own
// session, output to a log file). The supervisor boots the machine described
// by S/vms/UID/spec.json with the named driver, records its progress in
// state.json and answers on a unix control socket (status, watch,
// request-stop, stop). When vz-node restarts it finds the directory, reads
// state.json, reconnects to the socket and re-adopts the VM.
package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vzfleet/vzfleet/node/vm"
)

// File names inside a VM directory.
const (
	SpecFile   = "spec.json"
	StateFile  = "state.json"
	LogFile    = "supervisor.log"
	socketName = "control.sock"
)

// Spec is what the agent asks a supervisor to run.
type Spec struct {
	Driver        string     `json:"driver"`
	DriverOptions vm.Options `json:"driverOptions"`
	Machine       vm.Spec    `json:"machine"`
}

// Phase is the supervisor's view of its VM.
type Phase string

// Phases a supervisor reports.
const (
	PhaseStarting Phase = "Starting"
	PhaseRunning  Phase = "Running"
	PhaseStopping Phase = "Stopping"
	// PhaseStopped: the VM stopped (by itself or on request); see ExitReason.
	PhaseStopped Phase = "Stopped"
	// PhaseFailed: the VM could not start or crashed; see ExitReason/Message.
	PhaseFailed Phase = "Failed"
)

// Exit reasons recorded with PhaseStopped/PhaseFailed.
const (
	ReasonGuestShutdown = "GuestShutdown" // the guest powered itself off
	ReasonStopRequested = "StopRequested" // the agent asked for the stop
	ReasonLimitExceeded = "LimitExceeded" // the host runs its maximum VMs; retry
	ReasonInvalidSpec   = "InvalidSpec"   // the spec can never boot
	ReasonStartFailed   = "StartFailed"
	ReasonCrashed       = "Crashed" // the supervisor vanished without a record
)

// State is the supervisor's record in state.json and on the watch stream.
type State struct {
	PID        int       `json:"pid"`
	Phase      Phase     `json:"phase"`
	Socket     string    `json:"socket"`
	MAC        string    `json:"mac,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	ExitReason string    `json:"exitReason,omitempty"`
	Message    string    `json:"message,omitempty"`
}

// Terminal reports whether the VM will not run again under this supervisor.
func (s State) Terminal() bool { return s.Phase == PhaseStopped || s.Phase == PhaseFailed }

// Dir returns the directory of VM id under stateDir.
func Dir(stateDir, id string) string { return filepath.Join(stateDir, "vms", id) }

// List returns the IDs of all VM directories under stateDir.
func List(stateDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(stateDir, "vms"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list VM state: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// SocketPath returns the control socket of the VM in dir. Unix socket paths
// are limited to ~104 bytes, so deep state directories (as under
// ~/Library/Application Support) use a short name in the temp directory.
func SocketPath(dir string) string {
	p := filepath.Join(dir, socketName)
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(os.TempDir(), "vz-node-"+hex.EncodeToString(sum[:8])+".sock")
}

// WriteSpec records spec in dir (created if needed).
func WriteSpec(dir string, spec Spec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("VM state dir: %w", err)
	}
	return WriteJSON(filepath.Join(dir, SpecFile), spec)
}

// ReadSpec reads dir's spec.json.
func ReadSpec(dir string) (Spec, error) {
	var s Spec
	return s, ReadJSON(filepath.Join(dir, SpecFile), &s)
}

// ReadState reads dir's state.json. A missing file is os.ErrNotExist.
func ReadState(dir string) (State, error) {
	var s State
	return s, ReadJSON(filepath.Join(dir, StateFile), &s)
}

// WriteJSON writes v to path atomically (temp file + rename), mode 0600.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadJSON decodes path into v.
func ReadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
