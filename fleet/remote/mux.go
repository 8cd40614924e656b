package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vzfleet/vzfleet/internal/version"
)

// Mux keeps hosts' SSH connections open between fleetctl runs, as
// OpenSSH's ControlPersist does: a background process (the mux) holds each
// host's verified, authenticated connection and relays the sessions of the
// next run over it, so a re-apply costs a session per host instead of a
// TCP connect, a key exchange, a login and sshd's per-connection setup.
//
// A run borrows the connections the mux holds and connects directly to
// the other hosts; as it closes a direct connection, it asks the mux
// (starting it if none runs) to hold one to that host, which the mux dials
// in the background. So the first run, which uploads the most, sends its
// bytes straight to the hosts, not relayed through the mux.
//
// The mux listens on a Unix socket in Dir, which must be a directory only
// its owner can enter; it serves only processes of its own user (checked
// with the socket's peer credentials). fleetctl reaches it over SSH too,
// with a host key the mux writes into Dir. A connection is lent to one
// fleetctl at a time; another run meanwhile connects directly. Before it
// lends a connection, the mux checks the keys its hops presented against
// their known_hosts files as they are then, and closes it if they no
// longer pass. Whatever goes wrong with the mux, fleetctl connects
// directly, as without it.
type Mux struct {
	// Dir holds the socket, the mux's public host key, its lock and its
	// log. DefaultMuxDir gives the usual place.
	Dir string
	// Persist is how long an idle connection stays open.
	Persist time.Duration
	// Command starts the mux (its argv); it must run ServeMux on Dir.
	Command []string
}

// DefaultMuxDir is $VZFLEET_SSH_MUX_DIR, else vzfleet/ssh under
// $XDG_RUNTIME_DIR, else under the user's cache directory.
func DefaultMuxDir() string {
	if d := os.Getenv("VZFLEET_SSH_MUX_DIR"); d != "" {
		return d
	}
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		var err error
		if base, err = os.UserCacheDir(); err != nil {
			base = os.TempDir()
		}
	}
	return filepath.Join(base, "vzfleet", "ssh")
}

// muxName names the socket, lock and host key after the build: its
// version and its executable file, so a fleetctl never talks to a mux
// that another build left running, not even one with the same version
// string (every development build is "dev").
var muxName = sync.OnceValue(func() string {
	exe, _ := os.Executable() // "" when the OS does not say
	return muxNameFor(version.Get().String(), fileID(exe))
})

func muxNameFor(version, exe string) string {
	sum := sha256.Sum256([]byte(version + "\n" + exe))
	return "mux-" + hex.EncodeToString(sum[:4])
}

// fileID identifies a file's content cheaply, as a rebuild or an upgrade
// in place changes it: its path and version ("" when it cannot be read).
func fileID(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return path + " " + fileVersion(fi)
}

// fileVersion is what a stat says of a file's content: device, inode,
// size and modification time. Any write changes it, except a rewrite in
// place to the same size within the file system's timestamp granularity.
func fileVersion(fi os.FileInfo) string {
	dev, ino := deviceInode(fi)
	return fmt.Sprintf("%d:%d %d %d", dev, ino, fi.Size(), fi.ModTime().UnixNano())
}

func muxSocket(dir string) string  { return filepath.Join(dir, muxName()+".sock") }
func muxHostKey(dir string) string { return hostKeyOf(muxSocket(dir)) }

// hostKeyOf is the host key file of the mux listening on sock.
func hostKeyOf(sock string) string { return strings.TrimSuffix(sock, ".sock") + ".pub" }

// maxSocketPath is the longest Unix socket path every supported OS takes
// (sun_path is 104 bytes on macOS, 108 on Linux, NUL included).
const maxSocketPath = 103

// privateDir makes dir if needed and checks that only its owner, this
// user, can enter it.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is open to other users (mode %v); make it 0700", dir, fi.Mode().Perm())
	}
	if uid, _ := fileOwner(fi); int(uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to user %d, not to this user", dir, uid)
	}
	return nil
}

// muxHop is a resolved hop as a lease request carries it: the mux dials
// exactly what the client resolved, with the client's agent.
type muxHop struct {
	Alias          string        `json:"alias"`
	Hostname       string        `json:"hostname"`
	Port           int           `json:"port"`
	User           string        `json:"user"`
	Identities     []string      `json:"identities,omitempty"`
	KnownHosts     []string      `json:"knownHosts,omitempty"`
	AgentSock      string        `json:"agentSock,omitempty"`
	IdentitiesOnly bool          `json:"identitiesOnly,omitempty"`
	ConnectTimeout time.Duration `json:"connectTimeout,omitempty"`
}

func toMuxHop(h hop) muxHop {
	return muxHop{Alias: h.alias, Hostname: h.hostname, Port: h.port, User: h.user, Identities: h.identities,
		KnownHosts: h.knownHosts, AgentSock: h.agentSock, IdentitiesOnly: h.identitiesOnly, ConnectTimeout: h.connectTimeout}
}

func (m muxHop) hop() hop {
	return hop{alias: m.Alias, hostname: m.Hostname, port: m.Port, user: m.User, identities: m.Identities,
		knownHosts: m.KnownHosts, agentSock: m.AgentSock, identitiesOnly: m.IdentitiesOnly, connectTimeout: m.ConnectTimeout}
}

// Requests on the connection to the mux.
const (
	holdRequest  = "hold@vzfleet.dev"  // payload leaseSpec
	leaseRequest = "lease@vzfleet.dev" // payload leaseSpec, reply leaseReply
	listRequest  = "list@vzfleet.dev"  // reply []MuxConnection
	stopRequest  = "stop@vzfleet.dev"
)

// MuxConnection is a connection the mux holds.
type MuxConnection struct {
	Host    string        `json:"host"`    // the inventory's name
	Address string        `json:"address"` // user@host:port
	Jumps   []string      `json:"jumps,omitempty"`
	Lent    bool          `json:"lent"`    // to a run now
	Idle    time.Duration `json:"idle"`    // since its last run ended; 0 while lent
	Persist time.Duration `json:"persist"` // how long it may stay idle
	Up      bool          `json:"up"`      // connected (not still dialling, or lost)
}

// leaseSpec names the connection to Target (through Jumps) in a request
// to hold or lend it.
type leaseSpec struct {
	Name           string        `json:"name"`
	Target         muxHop        `json:"target"`
	Jumps          []muxHop      `json:"jumps,omitempty"`
	Persist        time.Duration `json:"persist"`
	ConnectTimeout time.Duration `json:"connectTimeout"`
}

// key identifies a connection: everything that decides where it goes and
// how it logs in.
func (l leaseSpec) key() string {
	b, _ := json.Marshal(struct {
		Target muxHop   `json:"target"`
		Jumps  []muxHop `json:"jumps"`
	}{l.Target, l.Jumps})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// leaseReply answers a lease request; Error is empty when the connection
// is lent.
type leaseReply struct {
	Error string `json:"error,omitempty"`
}

// muxSSH is the algorithms of the hop to the mux, which stays on this
// machine: AES-GCM, the cheapest cipher x/crypto/ssh has with AES
// instructions, and a plain curve25519 key exchange (a post-quantum one
// would buy nothing here and costs an ML-KEM key per connection).
var muxSSH = ssh.Config{Ciphers: []string{"aes128-gcm@openssh.com"}, KeyExchanges: []string{"curve25519-sha256"}}

// spec is the request naming this host's connection.
func (s *SSH) spec() ([]byte, error) {
	spec := leaseSpec{Name: s.cfg.Name, Target: toMuxHop(s.target), Persist: s.cfg.Mux.Persist, ConnectTimeout: s.cfg.ConnectTimeout}
	for _, j := range s.jumps {
		spec.Jumps = append(spec.Jumps, toMuxHop(j))
	}
	return json.Marshal(spec)
}

// dialMux borrows the host's connection from the mux, if it holds one.
// The returned client relays every session and request to the host.
func (s *SSH) dialMux(ctx context.Context) (*ssh.Client, error) {
	m := s.cfg.Mux
	if err := privateDir(m.Dir); err != nil {
		return nil, err
	}
	payload, err := s.spec()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", muxSocket(m.Dir))
	if err != nil {
		return nil, err
	}
	// The mux may redial a connection that ended before it answers: one
	// connect timeout, and the exchange with the mux itself.
	deadline := time.Now().Add(s.cfg.ConnectTimeout + 5*time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	nc.SetDeadline(deadline)
	c, err := muxClient(nc, muxHostKey(m.Dir))
	if err != nil {
		nc.Close()
		return nil, err
	}
	var reply leaseReply
	err = muxRequest(c, leaseRequest, payload, &reply)
	if err == nil && reply.Error != "" {
		err = errors.New(reply.Error)
	}
	if err != nil || ctx.Err() != nil {
		c.Close()
		return nil, errors.Join(err, ctx.Err())
	}
	nc.SetDeadline(time.Time{})
	s.cfg.Logger.Debug("connected through the SSH mux", "host", s.cfg.Name)
	return c, nil
}

// holdInMux asks the mux to hold a connection to the host for the next
// run, starting the mux when none runs. It does not wait for the mux to
// connect.
func (s *SSH) holdInMux() error {
	m := s.cfg.Mux
	if err := privateDir(m.Dir); err != nil {
		return err
	}
	if len(muxSocket(m.Dir)) > maxSocketPath {
		return fmt.Errorf("socket path %s is too long for a Unix socket; set VZFLEET_SSH_MUX_DIR to a shorter directory", muxSocket(m.Dir))
	}
	payload, err := s.spec()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := connectMux(ctx, m)
	if err != nil {
		return err
	}
	return askMux(nc, muxHostKey(m.Dir), func(c *ssh.Client) error { return muxRequest(c, holdRequest, payload, nil) })
}

// muxRequest sends the mux a request and decodes its answer into reply,
// unless that is nil.
func muxRequest(c *ssh.Client, name string, payload []byte, reply any) error {
	ok, answer, err := c.SendRequest(name, true, payload)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("the mux refused the request %s", name)
	case reply == nil:
		return nil
	}
	return json.Unmarshal(answer, reply)
}

// muxClient speaks SSH to the mux over nc, verifying the host key the mux
// wrote into keyFile.
func muxClient(nc net.Conn, keyFile string) (*ssh.Client, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, "mux", &ssh.ClientConfig{
		User:            localUser(),
		HostKeyCallback: ssh.FixedHostKey(pub),
		ClientVersion:   "SSH-2.0-vzfleet",
		Config:          muxSSH,
	})
	if err != nil {
		return nil, fmt.Errorf("mux handshake: %w", err)
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

// spawned holds, per directory, a channel closed when the mux this
// process last started there has exited, so hosts connecting at once
// start one mux between them.
var spawned = struct {
	sync.Mutex
	exited map[string]chan struct{}
}{exited: map[string]chan struct{}{}}

// connectMux connects to the mux's socket, starting the mux when nothing
// answers there.
func connectMux(ctx context.Context, m *Mux) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", muxSocket(m.Dir))
	if err == nil || len(m.Command) == 0 {
		return nc, err
	}
	spawned.Lock()
	running := false
	if ch := spawned.exited[m.Dir]; ch != nil {
		select {
		case <-ch:
		default:
			running = true
		}
	}
	if !running {
		// Its lock keeps a second mux from starting, also when another
		// process starts one at the same time.
		exited, err := startMux(m)
		if err != nil {
			spawned.Unlock()
			return nil, err
		}
		spawned.exited[m.Dir] = exited
	}
	spawned.Unlock()
	wait := time.NewTimer(3 * time.Second)
	defer wait.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if nc, err = d.DialContext(ctx, "unix", muxSocket(m.Dir)); err == nil {
			return nc, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait.C:
			return nil, fmt.Errorf("the mux did not start (see %s): %w", muxLog(m.Dir), err)
		case <-tick.C:
		}
	}
}

func muxLog(dir string) string { return filepath.Join(dir, "mux.log") }

// startMux starts the mux in the background, in a session of its own, in
// its directory, with its output in its log (which each mux starts anew).
// Of this process's environment it gets only HOME and PATH: the requests
// it serves say how to reach each host, and secrets some runs pass in
// environment variables must not outlive those runs. The channel is
// closed when it exits.
func startMux(m *Mux) (exited chan struct{}, err error) {
	log, err := os.OpenFile(muxLog(m.Dir), os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(m.Command[0], m.Command[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = m.Dir
	cmd.Env = []string{"HOME=" + os.Getenv("HOME"), "PATH=" + os.Getenv("PATH")}
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the mux: %w", err)
	}
	exited = make(chan struct{})
	go func() {
		cmd.Wait() // reaps it if it ends before this process
		close(exited)
	}()
	return exited, nil
}

// MuxConnections lists the connections the mux serving dir holds; none
// when no mux runs.
func MuxConnections(ctx context.Context, dir string) ([]MuxConnection, error) {
	list := []MuxConnection{}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", muxSocket(dir))
	if err != nil {
		return list, nil
	}
	return list, askMux(nc, muxHostKey(dir), func(c *ssh.Client) error { return muxRequest(c, listRequest, nil, &list) })
}

// WriteMuxTable writes conns as a table, a row per connection.
func WriteMuxTable(w io.Writer, conns []MuxConnection) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tSTATE\tIDLE\tPERSIST")
	for _, c := range conns {
		state := "idle"
		switch {
		case c.Lent:
			state = "in use"
		case !c.Up:
			state = "not connected"
		}
		addr := c.Address
		for _, j := range c.Jumps {
			addr += " via " + j
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Host, addr, state, c.Idle, c.Persist)
	}
	return tw.Flush()
}

// askMux runs ask on an SSH connection to the mux over nc, then closes it.
func askMux(nc net.Conn, keyFile string, ask func(*ssh.Client) error) error {
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := muxClient(nc, keyFile)
	if err != nil {
		nc.Close()
		return err
	}
	defer c.Close()
	return ask(c)
}

// StopMux asks every mux serving dir, this build's and any other's, to
// close its connections and exit. It is no error when none runs.
func StopMux(ctx context.Context, dir string) error {
	socks, err := filepath.Glob(filepath.Join(dir, "mux-*.sock"))
	if err != nil {
		return err
	}
	var errs []error
	for _, sock := range socks {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			continue // left behind by a mux that is gone
		}
		errs = append(errs, askMux(nc, hostKeyOf(sock), func(c *ssh.Client) error {
			// The mux may close the connection before its answer arrives.
			if err := muxRequest(c, stopRequest, nil, nil); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("stop the mux %s: %w", sock, err)
			}
			return nil
		}))
	}
	return errors.Join(errs...)
}
