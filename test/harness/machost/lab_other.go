//go:build !linux

package machost

import (
	"context"
	"errors"
	"os/exec"

	"golang.org/x/crypto/ssh"
)

var errLinuxOnly = errors.New("machost: simulated Mac hosts need Linux namespaces")

// Off Linux no lab starts, so a Lab or Host never has these.
type labImpl struct{}

type hostImpl struct{ hostKey ssh.PublicKey }

// StartLab needs Linux.
func StartLab(context.Context, LabOptions) (*Lab, error) { return nil, errLinuxOnly }

// Stop does nothing off Linux.
func (l *Lab) Stop() error {
	if l != nil && l.impl != nil {
		return errLinuxOnly
	}
	return nil
}

// WriteKnownHosts needs Linux.
func (l *Lab) WriteKnownHosts(string) error { return errLinuxOnly }

// ForwardLoopback needs Linux.
func (l *Lab) ForwardLoopback(...int) error { return errLinuxOnly }

// HostKey is the host's key (nil off Linux, where no host starts).
func (h *Host) HostKey() ssh.PublicKey {
	if h.impl == nil {
		return nil
	}
	return h.impl.hostKey
}

// Start needs Linux.
func (h *Host) Start() error { return errLinuxOnly }

// Stop does nothing off Linux.
func (h *Host) Stop() {}

// Reboot needs Linux.
func (h *Host) Reboot(context.Context) error { return errLinuxOnly }

// Running is false off Linux.
func (h *Host) Running() bool { return false }

// RotateHostKey needs Linux.
func (h *Host) RotateHostKey() error { return errLinuxOnly }

// CutConnections does nothing off Linux.
func (h *Host) CutConnections() int { return 0 }

// SetLinkDown needs Linux.
func (h *Host) SetLinkDown(bool) error { return errLinuxOnly }

// LimitBandwidth needs Linux.
func (h *Host) LimitBandwidth(int) error { return errLinuxOnly }

// Command needs Linux.
func (h *Host) Command(context.Context, string, ...string) (*exec.Cmd, error) {
	return nil, errLinuxOnly
}

// Launchctl needs Linux.
func (h *Host) Launchctl(...string) (string, string, int, error) { return "", "", 0, errLinuxOnly }

// SSHLog is empty off Linux.
func (h *Host) SSHLog() string { return "" }

// LaunchdLog is empty off Linux.
func (h *Host) LaunchdLog() string { return "" }

// RemoveLeftovers has nothing to remove off Linux.
func RemoveLeftovers(func(string, ...any)) error { return nil }
