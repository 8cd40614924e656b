package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/vzfleet/vzfleet/node/vm"
	"github.com/vzfleet/vzfleet/node/vm/leases"
)

// Names inside a machine's directory.
const (
	guestDirName = "guest"
	logName      = "guest.log"
	hostKeyName  = "ssh_host_ed25519_key"
	simDirName   = "sim"
	powerOffName = "poweroff-requested"
	panicName    = "panic-requested"
	// sharesDir is where macOS automounts virtio-fs shares tagged with
	// VZVirtioFileSystemDeviceConfiguration.macOSGuestAutomountTag.
	sharesDir = "Volumes/My Shared Files"
)

// Machine is one simulated guest. Besides vm.Machine it tells tests and
// tools where the guest is (Addr, GuestDir, HostKey).
type Machine struct {
	d        *Driver
	spec     vm.Spec
	dir      string
	guestDir string
	mac      net.HardwareAddr
	hostKey  ssh.Signer
	sshCfg   *ssh.ServerConfig
	log      *guestLog
	changes  *changes

	mu       sync.Mutex
	state    vm.State
	released bool
	run      *run // resources of the current boot, nil when stopped
}

// run holds what one boot of the guest owns; powerOff gives it all back.
type run struct {
	ctx    context.Context // done when the guest powers off
	cancel context.CancelFunc
	slot   *slot
	disk   *os.File
	ip     net.IP
	ln     net.Listener

	mu    sync.Mutex
	conns map[*ssh.ServerConn]bool
	procs map[int]bool // process group IDs of running commands
	// tag is an environment entry every guest process of this boot
	// inherits, so power-off finds those a session left behind.
	tag string
	wg  sync.WaitGroup
}

var _ vm.Machine = (*Machine)(nil)

func newMachine(d *Driver, spec vm.Spec) (*Machine, error) {
	dir := filepath.Join(d.opts.StateDir, spec.ID)
	m := &Machine{
		d: d, spec: spec, dir: dir,
		guestDir: filepath.Join(dir, guestDirName),
		mac:      spec.Network.MAC,
		log:      &guestLog{path: filepath.Join(dir, logName), console: spec.ConsoleLogPath},
		changes:  newChanges(),
	}
	for _, p := range []string{m.guestDir, filepath.Join(dir, simDirName)} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("vm %s: %w", spec.ID, err)
		}
	}
	if m.mac == nil {
		m.mac = make(net.HardwareAddr, 6)
		rand.Read(m.mac)
		m.mac[0] = m.mac[0]&^1 | 2
	}
	var err error
	if m.hostKey, err = loadHostKey(filepath.Join(dir, hostKeyName)); err != nil {
		return nil, fmt.Errorf("vm %s: %w", spec.ID, err)
	}
	if m.sshCfg, err = d.serverConfig(m.hostKey); err != nil {
		return nil, fmt.Errorf("vm %s: %w", spec.ID, err)
	}
	return m, nil
}

// loadHostKey reads the guest's host key, creating it on first use; it
// stays the same across supervisor restarts, as a real guest's does.
func loadHostKey(path string) (ssh.Signer, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := createHostKey(path); err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return s, nil
}

func createHostKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	// link(2) keeps the first key if two processes race.
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// ID is the spec's ID.
func (m *Machine) ID() string { return m.spec.ID }

// MAC is the guest's MAC address (the spec's, or a random one).
func (m *Machine) MAC() net.HardwareAddr { return m.mac }

// GuestDir is the guest's filesystem: commands run there.
func (m *Machine) GuestDir() string { return m.guestDir }

// HostKey is the public host key the guest's SSH server presents.
func (m *Machine) HostKey() ssh.PublicKey { return m.hostKey.PublicKey() }

// Addr is the guest's SSH address while it runs, or "".
func (m *Machine) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.run == nil || m.run.ip == nil {
		return ""
	}
	return net.JoinHostPort(m.run.ip.String(), fmt.Sprint(m.d.opts.GuestSSHPort))
}

// State is the current lifecycle state.
func (m *Machine) State() vm.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Changes delivers every state transition until Release.
func (m *Machine) Changes() <-chan vm.State { return m.changes.out }

// setState records and announces s; m.mu must be held.
func (m *Machine) setState(s vm.State) {
	m.state = s
	m.changes.push(s)
}

// Start boots the guest: it takes a running slot (failing with
// vm.ErrLimitExceeded when the host runs its maximum), opens and locks the
// disk, waits the boot delay, then leases an address and starts sshd. It
// returns once the guest is Running.
func (m *Machine) Start(ctx context.Context) error {
	id := m.spec.ID
	m.mu.Lock()
	if m.released || (m.state != vm.StateStopped && m.state != vm.StateError) {
		st := m.state
		m.mu.Unlock()
		return fmt.Errorf("vm %s: start: %w: the machine is %s", id, vm.ErrInvalidState, st)
	}
	r, err := m.acquire()
	if err != nil {
		m.mu.Unlock()
		return err
	}
	m.run = r
	m.setState(vm.StateStarting)
	m.mu.Unlock()
	m.log.write("kernel", 0, fmt.Sprintf("Darwin Kernel Version (simulated by vz-node sim); %d CPUs, %d MiB", m.spec.CPUs, m.spec.MemoryBytes>>20), true)

	boot := time.NewTimer(m.d.opts.BootDelay)
	defer boot.Stop()
	select {
	case <-boot.C:
	case <-ctx.Done():
		m.powerOff(r, "start canceled")
		return fmt.Errorf("vm %s: start: %w", id, ctx.Err())
	case <-r.ctx.Done():
		return fmt.Errorf("vm %s: start: %w: stopped while starting", id, vm.ErrInvalidState)
	}

	if err := m.bringUp(r); err != nil {
		m.powerOff(r, err.Error())
		return err
	}
	m.mu.Lock()
	if m.run != r {
		m.mu.Unlock()
		return fmt.Errorf("vm %s: start: %w: stopped while starting", id, vm.ErrInvalidState)
	}
	m.setState(vm.StateRunning)
	m.mu.Unlock()
	return nil
}

// acquire takes what a boot needs before it begins; m.mu is held.
func (m *Machine) acquire() (*run, error) {
	id, opts := m.spec.ID, m.d.opts
	sl, err := acquireSlot(opts.StateDir, m.d.host.MaxRunning)
	if errors.Is(err, errNoSlot) {
		return nil, fmt.Errorf("vm %s: start: %w: %s (%d of %d running on this host)",
			id, vm.ErrLimitExceeded, limitText, m.d.host.MaxRunning, m.d.host.MaxRunning)
	}
	if err != nil {
		return nil, fmt.Errorf("vm %s: start: %w", id, err)
	}
	disk, err := openDisk(m.spec.DiskPath)
	if err != nil {
		sl.release()
		return nil, fmt.Errorf("vm %s: start: %w", id, err)
	}
	for _, p := range []string{m.spec.AuxPath} {
		if p == "" {
			continue
		}
		if err := checkImage(p, false); err != nil {
			disk.Close()
			sl.release()
			return nil, fmt.Errorf("vm %s: start: auxiliary storage: %w", id, err)
		}
	}
	for _, s := range m.spec.Shares {
		if info, err := os.Stat(s.HostPath); err != nil || !info.IsDir() {
			disk.Close()
			sl.release()
			return nil, fmt.Errorf("vm %s: start: shared directory %q: %s is not a directory", id, s.Tag, s.HostPath)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	tag := "VZSIM_BOOT=" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + id
	return &run{ctx: ctx, cancel: cancel, slot: sl, disk: disk, conns: map[*ssh.ServerConn]bool{}, procs: map[int]bool{}, tag: tag}, nil
}

// openDisk opens the guest's disk read-write and locks it, as the
// framework does: a disk image serves one running machine at a time.
func openDisk(path string) (*os.File, error) {
	if err := checkImage(path, true); err != nil {
		return nil, fmt.Errorf("disk image: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("disk image: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("disk image %s is in use by another virtual machine: %w", path, vm.ErrInvalidState)
		}
		return nil, fmt.Errorf("disk image %s: lock: %w", path, err)
	}
	return f, nil
}

// bringUp is the guest's boot: its filesystem, a DHCP lease, sshd.
func (m *Machine) bringUp(r *run) error {
	id := m.spec.ID
	if err := m.prepareGuest(); err != nil {
		return fmt.Errorf("vm %s: start: %w", id, err)
	}
	ip, err := m.claimAddress()
	if err != nil {
		return fmt.Errorf("vm %s: start: %w", id, err)
	}
	m.mu.Lock()
	if m.run != r {
		m.mu.Unlock()
		leases.Release(m.d.opts.LeasesPath, m.mac)
		return fmt.Errorf("vm %s: start: %w: stopped while starting", id, vm.ErrInvalidState)
	}
	r.ip = ip
	m.mu.Unlock()
	m.log.write("bootpd", 97, fmt.Sprintf("DHCP ACK %s to %s", ip, leases.FormatMAC(m.mac)), true)

	addr := net.JoinHostPort(ip.String(), fmt.Sprint(m.d.opts.GuestSSHPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("vm %s: start: guest sshd on %s: %w (another server on that port? set a different guest SSH port)", id, addr, err)
	}
	m.mu.Lock()
	if m.run != r {
		m.mu.Unlock()
		ln.Close()
		return fmt.Errorf("vm %s: start: %w: stopped while starting", id, vm.ErrInvalidState)
	}
	// Set under m.mu so a powerOff that follows sees them.
	r.ln = ln
	r.wg.Add(2)
	m.mu.Unlock()
	go m.serve(r)
	go m.watchPowerOff(r)
	m.log.write("sshd", 120, fmt.Sprintf("Server listening on %s port %d.", ip, m.d.opts.GuestSSHPort), true)
	return nil
}

// prepareGuest lays out the guest's filesystem for this boot: shims for
// the macOS commands the sim provides, and the virtio-fs shares.
func (m *Machine) prepareGuest() error {
	sim := filepath.Join(m.dir, simDirName)
	os.Remove(filepath.Join(sim, powerOffName))
	os.Remove(filepath.Join(sim, panicName))
	for name, body := range shims(sim, m.log.path) {
		if err := os.WriteFile(filepath.Join(sim, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	shares := filepath.Join(m.guestDir, sharesDir)
	if err := os.RemoveAll(shares); err != nil {
		return err
	}
	if len(m.spec.Shares) == 0 {
		return nil
	}
	if err := os.MkdirAll(shares, 0o755); err != nil {
		return err
	}
	for _, s := range m.spec.Shares {
		if err := os.Symlink(s.HostPath, filepath.Join(shares, s.Tag)); err != nil {
			return err
		}
	}
	return nil
}

// watchPowerOff powers the machine off when the guest's shutdown command
// asks for it, or stops it in error when the guest panics. It also renews
// the guest's DHCP lease.
func (m *Machine) watchPowerOff(r *run) {
	defer r.wg.Done()
	sim := filepath.Join(m.dir, simDirName)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(renewed) > leaseTime/2 {
			// The guest renews its lease halfway through, as DHCP clients do.
			renewed = time.Now()
			leases.Put(m.d.opts.LeasesPath, leases.New(m.spec.ID, r.ip, m.mac, renewed.Add(leaseTime)))
		}
		if os.Remove(filepath.Join(sim, panicName)) == nil {
			go m.powerOffAs(r, "kernel panic", vm.StateError)
			return
		}
		if os.Remove(filepath.Join(sim, powerOffName)) == nil {
			// Going down takes a moment, time enough for the shutdown
			// command's session to report its exit as on a real guest.
			select {
			case <-r.ctx.Done():
			case <-time.After(shutdownGrace):
			}
			go m.powerOff(r, "shutdown -h now")
			return
		}
	}
}

// RequestStop presses the power button: the guest shuts down shortly.
func (m *Machine) RequestStop(ctx context.Context) error {
	m.mu.Lock()
	r, st := m.run, m.state
	m.mu.Unlock()
	if st != vm.StateRunning {
		return fmt.Errorf("vm %s: request stop: %w: the machine is %s", m.spec.ID, vm.ErrInvalidState, st)
	}
	m.log.write("loginwindow", 150, "power button pressed: shutting down", true)
	time.AfterFunc(requestStopDelay, func() { m.powerOff(r, "power button") })
	return nil
}

// Stop powers the guest off at once.
func (m *Machine) Stop(ctx context.Context) error {
	m.mu.Lock()
	r, st := m.run, m.state
	m.mu.Unlock()
	if r == nil || st == vm.StateStopping {
		return fmt.Errorf("vm %s: stop: %w: the machine is %s", m.spec.ID, vm.ErrInvalidState, st)
	}
	m.powerOff(r, "stop")
	return nil
}

// powerOff ends boot r (if it is still the current one): sessions and
// their processes are killed, the lease released, disk and slot freed.
func (m *Machine) powerOff(r *run, reason string) { m.powerOffAs(r, reason, vm.StateStopped) }

// powerOffAs is powerOff ending in state final (Stopped, or Error as when
// Virtualization.framework reports the guest stopped with an error).
func (m *Machine) powerOffAs(r *run, reason string, final vm.State) {
	m.mu.Lock()
	if m.run != r {
		m.mu.Unlock()
		return
	}
	m.run = nil
	m.setState(vm.StateStopping)
	m.mu.Unlock()

	m.log.write("shutdown", 1, "SHUTDOWN_TIME: "+reason, true)
	r.cancel()
	if r.ln != nil {
		r.ln.Close()
	}
	r.killAll()
	waited := make(chan struct{})
	go func() { r.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
	}
	if r.ip != nil {
		leases.Release(m.d.opts.LeasesPath, m.mac)
	}
	unix.Flock(int(r.disk.Fd()), unix.LOCK_UN)
	r.disk.Close()
	r.slot.release()
	m.log.write("kernel", 0, "system powered off", true)

	m.mu.Lock()
	m.setState(final)
	m.mu.Unlock()
}

// Release closes Changes; the machine must be stopped.
func (m *Machine) Release() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != vm.StateStopped && m.state != vm.StateError {
		return fmt.Errorf("vm %s: release: %w: the machine is %s", m.spec.ID, vm.ErrInvalidState, m.state)
	}
	if !m.released {
		m.released = true
		m.changes.close()
	}
	return nil
}

// shims are the scripts on the guest's PATH standing in for macOS
// commands that need the machine: shutdown asks for power-off through a
// file the machine watches; logger appends to the guest's log. One is the
// sim's own: vzsim-panic crashes the guest (the machine ends in Error), so
// tests can make a VM fail.
func shims(simDir, logFile string) map[string]string {
	powerOffFile := filepath.Join(simDir, powerOffName)
	return map[string]string{
		"vzsim-panic": `#!/bin/sh
# Not a macOS command: makes the simulated guest panic.
echo "panic(cpu 0 caller 0x0): requested by vzsim-panic" >&2
: > ` + shellQuote(filepath.Join(simDir, panicName)) + `
`,
		"shutdown": `#!/bin/sh
# shutdown(8) of the simulated macOS guest: it can only power off.
case "$1 $2" in
"-h now"|"-h +0"|"-p now") ;;
*) echo "usage: shutdown -h now (the simulated guest can only power off)" >&2; exit 64 ;;
esac
echo "Shutdown NOW!"
: > ` + shellQuote(powerOffFile) + `
`,
		"sudo": `#!/bin/sh
# sudo(8) of the simulated guest: the guest user may run anything.
while [ $# -gt 0 ]; do
	case "$1" in
	--) shift; break ;;
	-u|-g|-p|-C|-D|-h|-R|-T|-U) shift; shift ;;
	-*) shift ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "usage: sudo command" >&2; exit 1; }
exec "$@"
`,
		"logger": `#!/bin/sh
# logger(1) of the simulated guest: appends to the guest's unified log.
tag=logger
while [ $# -gt 0 ]; do
	case "$1" in
	-t) tag=$2; shift; shift ;;
	-*) shift ;;
	*) break ;;
	esac
done
msg="$*"
[ -n "$msg" ] || msg=$(tr '\n' ' ')
printf '%s  localhost %s[%d]: %s\n' "$(date '+%Y-%m-%d %H:%M:%S.000000%z')" "$tag" "$$" "$msg" >> ` + shellQuote(logFile) + `
`,
	}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// changes is an unbounded queue of state transitions feeding a channel,
// so a slow reader never blocks the machine and never misses a state.
type changes struct {
	out  chan vm.State
	wake chan struct{}
	done chan struct{}
	mu   sync.Mutex
	q    []vm.State
}

func newChanges() *changes {
	c := &changes{out: make(chan vm.State), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.pump()
	return c
}

func (c *changes) push(s vm.State) {
	c.mu.Lock()
	c.q = append(c.q, s)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *changes) close() { close(c.done) }

func (c *changes) pump() {
	defer close(c.out)
	for {
		c.mu.Lock()
		if len(c.q) == 0 {
			c.mu.Unlock()
			select {
			case <-c.wake:
				continue
			case <-c.done:
				return
			}
		}
		s := c.q[0]
		c.q = c.q[1:]
		c.mu.Unlock()
		select {
		case c.out <- s:
		case <-c.done:
			// Released: hand what is left to a reader still listening.
			c.mu.Lock()
			rest := append([]vm.State{s}, c.q...)
			c.mu.Unlock()
			for _, s := range rest {
				select {
				case c.out <- s:
				case <-time.After(50 * time.Millisecond):
					return
				}
			}
			return
		}
	}
}
