package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vzfleet/vzfleet/node/vm"
	"github.com/vzfleet/vzfleet/node/vm/guest"
	"github.com/vzfleet/vzfleet/node/vm/leases"
	"github.com/vzfleet/vzfleet/node/vm/overlay"
)

// leaseFinder finds guests in a dhcpd_leases file, with ARP as fallback.
type leaseFinder struct{ path string }

func (f leaseFinder) Lookup(ctx context.Context, mac net.HardwareAddr) (net.IP, error) {
	return leases.Resolve(ctx, f.path, mac)
}

// overlayMaker clones an image into dir/overlay; a restarted VM gets a fresh
// clone, as a restarted container gets a fresh writable layer.
type overlayMaker struct{}

const overlayID = "overlay"

func (overlayMaker) Create(_ context.Context, img LocalImage, dir string) (Overlay, error) {
	store := overlay.Store{Root: dir}
	if err := store.Remove(overlayID); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Overlay{}, fmt.Errorf("remove the previous overlay: %w", err)
	}
	o, err := store.Create(overlayID, img.DiskPath, img.NVRAMPath)
	if err != nil {
		return Overlay{}, err
	}
	return Overlay{DiskPath: o.DiskPath, AuxPath: o.AuxPath, MAC: o.MAC, MachineID: o.MachineIdentifier}, nil
}

// sshGuest reaches guests with node/vm/guest, one SSH connection per
// operation (exec, probe, hook), pinning each guest's host key in its VM
// directory.
type sshGuest struct {
	user     string
	password string
	signers  []ssh.Signer
}

// newGuestClient reads the guest credentials (VZ_SSH_USER with
// VZ_SSH_PASSWORD or VZ_SSH_PASSWORD_FILE, and/or the key in
// VZ_SSH_KEY_FILE).
func newGuestClient(cfg Config) (*sshGuest, error) {
	g := &sshGuest{user: cfg.SSHUser, password: cfg.SSHPassword}
	if cfg.SSHPasswordFile != "" {
		p, err := readPasswordFile(cfg.SSHPasswordFile)
		if err != nil {
			return nil, err
		}
		g.password = p
	}
	if cfg.SSHKeyFile != "" {
		pem, err := os.ReadFile(cfg.SSHKeyFile)
		if err != nil {
			return nil, fmt.Errorf("guest SSH key: %w", err)
		}
		s, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, fmt.Errorf("guest SSH key %s: %w", cfg.SSHKeyFile, err)
		}
		g.signers = append(g.signers, s)
	}
	return g, nil
}

// readPasswordFile reads a guest SSH password file: the first line, which
// must not be empty, from a file nobody but its owner can read.
func readPasswordFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("guest SSH password file (%s): %w", EnvSSHPassFile, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("guest SSH password file %s is mode %04o: it holds a secret, so make it readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("guest SSH password file: %w", err)
	}
	p, _, _ := strings.Cut(string(data), "\n")
	p = strings.TrimSuffix(p, "\r")
	if p == "" {
		return "", fmt.Errorf("guest SSH password file %s is empty: write the guests' password on its first line", path)
	}
	return p, nil
}

// login is what simulated guests accept: the same credentials.
func (g *sshGuest) login() vm.GuestLogin {
	l := vm.GuestLogin{User: g.user, Password: g.password}
	for _, s := range g.signers {
		l.AuthorizedKeys = append(l.AuthorizedKeys, ssh.MarshalAuthorizedKey(s.PublicKey())...)
	}
	return l
}

func (g *sshGuest) config(t GuestTarget) guest.Config {
	return guest.Config{Addr: t.Addr, User: g.user, Signers: g.signers, Password: g.password, HostKeyPath: t.KnownHostsPath}
}

func (g *sshGuest) WaitSSH(ctx context.Context, t GuestTarget) error {
	c, err := guest.WaitSSH(ctx, g.config(t), 200*time.Millisecond)
	if err != nil {
		return err
	}
	return c.Close()
}

func (g *sshGuest) Exec(ctx context.Context, t GuestTarget, r ExecRequest) (int, error) {
	c, err := guest.Dial(ctx, g.config(t))
	if err != nil {
		return -1, err
	}
	defer c.Close()
	e := guest.Exec{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, TTY: r.TTY}
	if r.Resize != nil {
		ch := make(chan guest.TermSize)
		e.Resize = ch
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			defer close(ch)
			for {
				select {
				case <-rctx.Done():
					return
				case s, ok := <-r.Resize:
					if !ok {
						return
					}
					select {
					case ch <- guest.TermSize{Width: s.Width, Height: s.Height}:
					case <-rctx.Done():
						return
					}
				}
			}
		}()
	}
	if len(r.Argv) == 0 {
		return c.Shell(ctx, e)
	}
	return c.Run(ctx, r.Argv, e)
}

func (g *sshGuest) Shutdown(ctx context.Context, t GuestTarget) error {
	c, err := guest.Dial(ctx, g.config(t))
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Shutdown(ctx)
}
