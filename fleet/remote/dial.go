package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Config says how to reach one host. Fields left zero come from
// ~/.ssh/config (for the alias in Address) and then from ssh's defaults.
type Config struct {
	// Name is the host's name in messages; default Address.
	Name string
	// Address is a host name, an IP address or a ~/.ssh/config alias.
	Address string
	// Port, User: as ssh's -p and -l.
	Port int
	User string
	// IdentityFiles are private keys to offer (besides the agent's). Keys
	// from ~/.ssh/config are added; without any, ssh's default files
	// (~/.ssh/id_ed25519, id_ecdsa, id_rsa) are tried.
	IdentityFiles []string
	// IdentitiesOnly offers only the identity files' keys, also when the
	// agent holds others (as ssh's IdentitiesOnly; the config's applies too).
	IdentitiesOnly bool
	// NoAgent disables ssh-agent; otherwise SSH_AUTH_SOCK (or the config's
	// IdentityAgent) is used when set.
	NoAgent bool
	// ProxyJump is a comma-separated list of jump hosts,
	// [user@]host[:port] each, as ssh's -J; "none" disables the config's.
	ProxyJump string
	// KnownHostsFiles to verify host keys against; default the config's
	// UserKnownHostsFile, else ~/.ssh/known_hosts. New keys go to the first.
	KnownHostsFiles []string
	// AcceptNewHostKeys records keys of hosts not in known_hosts (trust on
	// first use). A changed key is refused regardless.
	AcceptNewHostKeys bool
	// Sudo elevates commands and uploads that ask for it with `sudo -n`.
	Sudo bool
	// SudoPath is the sudo program; default "sudo".
	SudoPath string
	// SSHConfigFile is the ssh_config to honour; default ~/.ssh/config;
	// "none" reads none. The system-wide /etc/ssh/ssh_config is not read.
	SSHConfigFile string
	// ConnectTimeout bounds each TCP connect plus SSH handshake; default 15s.
	ConnectTimeout time.Duration
	// KeepAlive is the interval of keepalive probes; default 15s, negative
	// disables. After 3 unanswered probes the connection is closed.
	KeepAlive time.Duration
	// DialAttempts is how often a transient network error while dialling
	// (refused, reset, timed out) is tried again; default 4 attempts.
	// Authentication and host key errors are never retried.
	DialAttempts int
	// RetryBackoff is the first pause between attempts; it doubles up to
	// 5s. Default 250ms.
	RetryBackoff time.Duration
	// MaxSessions bounds the sessions open at once on the connection
	// (sshd's MaxSessions is 10 by default); default 8.
	MaxSessions int
	// Logger receives debug records (never secrets); default slog.Default().
	Logger *slog.Logger
	// Mux, if set, borrows the connection from a mux that keeps it open
	// between runs (see Mux), and connects directly when that fails.
	Mux *Mux
}

// hop is one resolved SSH endpoint.
type hop struct {
	alias      string
	hostname   string
	port       int
	user       string
	identities []string
	knownHosts []string
	agentSock  string
	// identitiesOnly limits the agent's keys to those of the identity files.
	identitiesOnly bool
	// From ssh_config; zero when not set there.
	connectTimeout time.Duration
	aliveInterval  time.Duration // negative: disabled ("ServerAliveInterval 0")
}

func (h hop) addr() string { return net.JoinHostPort(h.hostname, strconv.Itoa(h.port)) }

// resolve applies Config, then ssh_config, then defaults.
func resolve(cfg Config) (target hop, jumps []hop, err error) {
	if cfg.Address == "" {
		return hop{}, nil, errors.New("ssh: no host address given")
	}
	sc := &sshConfig{}
	if cfg.SSHConfigFile != "none" {
		file := cfg.SSHConfigFile
		if file == "" {
			file = expandHome("~/.ssh/config")
		}
		if sc, err = loadSSHConfig(file); err != nil {
			return hop{}, nil, err
		}
	}
	target, err = resolveHop(sc, cfg, cfg.Address, cfg.User, cfg.Port)
	if err != nil {
		return hop{}, nil, err
	}
	jump := cfg.ProxyJump
	if jump == "" {
		jump = sc.lookup(cfg.Address).ProxyJump
	}
	if jump == "" || strings.EqualFold(jump, "none") {
		return target, nil, nil
	}
	for _, spec := range strings.Split(jump, ",") {
		u, h, p, err := parseJump(strings.TrimSpace(spec))
		if err != nil {
			return hop{}, nil, fmt.Errorf("ProxyJump %q: %w", jump, err)
		}
		j, err := resolveHop(sc, Config{IdentityFiles: cfg.IdentityFiles, KnownHostsFiles: cfg.KnownHostsFiles,
			NoAgent: cfg.NoAgent, IdentitiesOnly: cfg.IdentitiesOnly}, h, u, p)
		if err != nil {
			return hop{}, nil, err
		}
		jumps = append(jumps, j)
	}
	return target, jumps, nil
}

func resolveHop(sc *sshConfig, cfg Config, alias, userName string, port int) (hop, error) {
	s := sc.lookup(alias)
	h := hop{alias: alias, hostname: alias, port: port, user: userName}
	if s.HostName != "" {
		h.hostname = s.HostName
	}
	if h.port == 0 && s.Port != "" {
		p, err := strconv.Atoi(s.Port)
		if err != nil || p <= 0 || p > 65535 {
			return hop{}, fmt.Errorf("ssh config: host %s: bad Port %q", alias, s.Port)
		}
		h.port = p
	}
	if h.port == 0 {
		h.port = 22
	}
	if h.user == "" {
		h.user = s.User
	}
	if h.user == "" {
		h.user = localUser()
	}
	if s.ConnectTimeout != "" {
		sec, err := strconv.Atoi(s.ConnectTimeout)
		if err != nil || sec < 0 {
			return hop{}, fmt.Errorf("ssh config: host %s: bad ConnectTimeout %q", alias, s.ConnectTimeout)
		}
		h.connectTimeout = time.Duration(sec) * time.Second
	}
	if s.ServerAliveInterval != "" {
		sec, err := strconv.Atoi(s.ServerAliveInterval)
		if err != nil || sec < 0 {
			return hop{}, fmt.Errorf("ssh config: host %s: bad ServerAliveInterval %q", alias, s.ServerAliveInterval)
		}
		h.aliveInterval = time.Duration(sec) * time.Second
		if sec == 0 {
			h.aliveInterval = -1
		}
	}
	portStr := strconv.Itoa(h.port)
	expand := func(p string) (string, error) {
		out, err := expandTokens(p, h.hostname, h.user, portStr)
		if err != nil {
			return "", fmt.Errorf("ssh config: host %s: %w", alias, err)
		}
		return out, nil
	}
	for _, f := range cfg.IdentityFiles {
		f, err := expand(f)
		if err != nil {
			return hop{}, err
		}
		h.identities = append(h.identities, f)
	}
	for _, f := range s.IdentityFiles {
		f, err := expand(f)
		if err != nil {
			return hop{}, err
		}
		h.identities = append(h.identities, f)
	}
	files := cfg.KnownHostsFiles
	if len(files) == 0 {
		files = s.UserKnownHostsFiles
	}
	if len(files) == 0 {
		files = []string{"~/.ssh/known_hosts"}
	}
	for _, f := range files {
		if f == "none" {
			continue
		}
		f, err := expand(f)
		if err != nil {
			return hop{}, err
		}
		h.knownHosts = append(h.knownHosts, f)
	}
	h.identitiesOnly = cfg.IdentitiesOnly || s.IdentitiesOnly == "yes"
	if !cfg.NoAgent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		switch a := s.IdentityAgent; {
		case strings.EqualFold(a, "none"):
			sock = ""
		case a == "SSH_AUTH_SOCK" || a == "":
		case strings.HasPrefix(a, "$"):
			sock = os.Getenv(strings.Trim(a[1:], "{}"))
		default:
			var err error
			if sock, err = expand(a); err != nil {
				return hop{}, err
			}
		}
		h.agentSock = sock
	}
	return h, nil
}

// parseJump parses [ssh://][user@]host[:port].
func parseJump(spec string) (userName, host string, port int, err error) {
	spec = strings.TrimPrefix(spec, "ssh://")
	if i := strings.LastIndex(spec, "@"); i >= 0 {
		userName, spec = spec[:i], spec[i+1:]
	}
	host = spec
	if h, p, err := net.SplitHostPort(spec); err == nil {
		host = h
		if port, err = strconv.Atoi(p); err != nil || port <= 0 || port > 65535 {
			return "", "", 0, fmt.Errorf("bad port %q", p)
		}
	}
	if host == "" || strings.ContainsAny(host, " /") {
		return "", "", 0, fmt.Errorf("bad jump host %q", spec)
	}
	return userName, host, port, nil
}

// Dial connects to the host (through its jump hosts), verifying host keys
// and authenticating, and returns the host. The connection is reused by
// every call and redialled when it was lost.
func Dial(ctx context.Context, cfg Config) (*SSH, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.Address
	}
	if cfg.SudoPath == "" {
		cfg.SudoPath = "sudo"
	}
	target, jumps, err := resolve(cfg)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", cfg.Name, err)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = target.connectTimeout
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = target.aliveInterval
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.DialAttempts <= 0 {
		cfg.DialAttempts = 4
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 250 * time.Millisecond
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &SSH{cfg: cfg, target: target, jumps: jumps, sem: make(chan struct{}, max(cfg.MaxSessions-1, 1))} // one session serves SFTP
	if _, _, err := s.connect(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// dialChain dials the jumps in order and then the target through them. It
// returns, besides the connections, the host key each hop presented.
func (s *SSH) dialChain(ctx context.Context) (*ssh.Client, []*ssh.Client, []presentedKey, error) {
	var via *ssh.Client
	var chain []*ssh.Client
	var keys []presentedKey
	closeAll := func() {
		for i := len(chain) - 1; i >= 0; i-- {
			chain[i].Close()
		}
	}
	for i, j := range s.jumps {
		name := fmt.Sprintf("%s (jump host %d of %d for %s)", j.alias, i+1, len(s.jumps), s.cfg.Name)
		c, key, err := s.dialHop(ctx, via, j, name)
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		chain, keys = append(chain, c), append(keys, key)
		via = c
	}
	c, key, err := s.dialHop(ctx, via, s.target, s.cfg.Name)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return c, chain, append(keys, key), nil
}

// presentedKey is the host key a hop presented when it was dialled, kept so
// that a connection held open can be checked against known_hosts again.
type presentedKey struct {
	name    string // fleetctl's name for the hop
	address string // host:port as dialled
	remote  net.Addr
	key     ssh.PublicKey
	files   []string // the hop's known_hosts files
}

// verify checks the key against the hop's known_hosts files as they are
// now; a key no longer there, replaced or revoked fails as it would when
// dialling.
func (p presentedKey) verify() error {
	check, err := (&hostKeys{host: p.name, files: p.files}).callback()
	if err != nil {
		return fmt.Errorf("host %s: %w", p.name, err)
	}
	return check(p.address, p.remote, p.key)
}

// dialHop connects to one endpoint, directly or through via, retrying
// transient network errors with backoff, and returns the key it presented.
func (s *SSH) dialHop(ctx context.Context, via *ssh.Client, h hop, name string) (*ssh.Client, presentedKey, error) {
	log := s.cfg.Logger.With("host", name, "addr", h.addr())
	keys := &hostKeys{host: name, files: h.knownHosts, acceptNew: s.cfg.AcceptNewHostKeys,
		onAccept: func(file, line string) {
			log.Info("recorded new host key", "file", file, "entry", line)
		}}
	known, err := keys.known(h.addr())
	if err != nil {
		return nil, presentedKey{}, fmt.Errorf("host %s: %w", name, err)
	}
	check, err := keys.callback()
	if err != nil {
		return nil, presentedKey{}, fmt.Errorf("host %s: %w", name, err)
	}
	// The callback runs again at each re-keying, in the connection's
	// own goroutine: the latest key is kept atomically.
	var presented atomic.Pointer[presentedKey]
	record := func(address string, remote net.Addr, key ssh.PublicKey) error {
		presented.Store(&presentedKey{name: name, address: address, remote: remote, key: key, files: h.knownHosts})
		return check(address, remote, key)
	}
	backoff := s.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		c, err := s.handshake(ctx, via, h, name, record, algorithms(known))
		if err == nil {
			log.Debug("connected", "user", h.user, "attempt", attempt)
			return c, *presented.Load(), nil
		}
		if changed := noCommonHostKey(err, keys, h.addr(), known); changed != nil {
			return nil, presentedKey{}, changed
		}
		if !transient(err) || attempt >= s.cfg.DialAttempts || ctx.Err() != nil {
			return nil, presentedKey{}, err
		}
		log.Debug("dial attempt failed, retrying", "attempt", attempt, "err", err, "backoff", backoff)
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil, presentedKey{}, fmt.Errorf("host %s: %w (after %v)", name, ctx.Err(), err)
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *SSH) handshake(ctx context.Context, via *ssh.Client, h hop, name string,
	check ssh.HostKeyCallback, algos []string) (*ssh.Client, error) {
	auth, notes, cleanup, err := authMethods(h, name)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()

	var conn net.Conn
	if via == nil {
		d := net.Dialer{KeepAlive: 30 * time.Second}
		conn, err = d.DialContext(ctx, "tcp", h.addr())
	} else {
		conn, err = via.DialContext(ctx, "tcp", h.addr())
	}
	if err != nil {
		return nil, &dialError{host: name, addr: h.addr(), err: err}
	}
	// The deadline also covers the handshake; channels through a jump host
	// have no SetDeadline, so close the connection instead.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(conn, h.addr(), &ssh.ClientConfig{
		User:              h.user,
		Auth:              auth,
		HostKeyCallback:   check,
		HostKeyAlgorithms: algos,
		ClientVersion:     "SSH-2.0-vzfleet",
	})
	if !stop() {
		if cc != nil {
			cc.Close()
		}
		conn.Close()
		return nil, &dialError{host: name, addr: h.addr(), err: fmt.Errorf("handshake: %w", ctx.Err())}
	}
	if err != nil {
		conn.Close()
		// Host key errors speak for themselves, without "ssh: handshake failed".
		var unknown *UnknownHostError
		if errors.As(err, &unknown) {
			return nil, unknown
		}
		var changed *HostKeyChangedError
		if errors.As(err, &changed) {
			return nil, changed
		}
		if strings.Contains(err.Error(), "Too many authentication failures") {
			return nil, fmt.Errorf("host %s (%s): authentication as %q failed: sshd gave up after too many keys (%w); "+
				"offer only the right one with IdentitiesOnly (ssh_config `IdentitiesOnly yes` with an IdentityFile)",
				name, h.addr(), h.user, err)
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("host %s (%s): authentication as %q failed (%w); check that the host's "+
				"authorized_keys holds one of the offered keys (agent: %v, files: %s)%s",
				name, h.addr(), h.user, err, h.agentSock != "", strings.Join(h.identities, ", "), notes)
		}
		return nil, &dialError{host: name, addr: h.addr(), err: err}
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

// noCommonHostKey turns "no common algorithm for host key" into the
// changed-key error: the host no longer offers any of the recorded types.
func noCommonHostKey(err error, keys *hostKeys, addr string, known []knownhosts.KnownKey) error {
	if len(known) == 0 || !strings.Contains(err.Error(), "no common algorithm for host key") {
		return nil
	}
	return keys.changed(addr, nil, known)
}

// dialError is a failure to reach the host, before any authentication.
type dialError struct {
	host, addr string
	err        error
}

func (e *dialError) Error() string {
	return fmt.Sprintf("host %s: connecting to %s: %v", e.host, e.addr, e.err)
}

func (e *dialError) Unwrap() error { return e.err }

// transient reports network errors worth another attempt: refused, reset
// and timed-out connections, and connections dropped before the handshake
// finished. Authentication and host key errors are never transient.
func transient(err error) bool {
	var de *dialError
	if !errors.As(err, &de) {
		return false
	}
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		return oce.Reason == ssh.ConnectionFailed
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, io.EOF), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}

// authMethods gathers the identity files' keys, then the agent's. notes
// tell about keys that could not be used; cleanup closes the agent
// connection.
func authMethods(h hop, name string) ([]ssh.AuthMethod, string, func(), error) {
	var signers []ssh.Signer
	cleanup := func() {}
	var problems []string
	// Public keys of the identity files, to match agent keys (an encrypted
	// file is fine when the agent holds its key).
	filePubs := map[string]bool{}
	type encryptedKey struct {
		file string
		pub  ssh.PublicKey // nil when unknown
	}
	var encrypted []encryptedKey
	files := h.identities
	explicit := len(files) > 0
	if !explicit {
		for _, f := range []string{"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"} {
			files = append(files, expandHome(f))
		}
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && !explicit {
				continue
			}
			problems = append(problems, fmt.Sprintf("identity file %s: %v", f, err))
			continue
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			pub := missing.PublicKey
			if pub == nil {
				pub = readPublicKey(f + ".pub")
			}
			if pub != nil {
				filePubs[string(pub.Marshal())] = true
			}
			encrypted = append(encrypted, encryptedKey{f, pub})
		case err != nil:
			problems = append(problems, fmt.Sprintf("identity file %s: %v", f, err))
		default:
			signers = append(signers, signer)
			filePubs[string(signer.PublicKey().Marshal())] = true
		}
	}
	// Agent keys after the files: with many keys in the agent, sshd's
	// MaxAuthTries would otherwise end before the configured one.
	inAgent := map[string]bool{}
	if h.agentSock != "" {
		conn, err := net.Dial("unix", h.agentSock)
		if err != nil {
			problems = append(problems, fmt.Sprintf("ssh-agent at %s: %v", h.agentSock, err))
		} else {
			cleanup = func() { conn.Close() }
			as, err := agent.NewClient(conn).Signers()
			if err != nil {
				problems = append(problems, fmt.Sprintf("ssh-agent: %v", err))
			}
			for _, a := range as {
				key := string(a.PublicKey().Marshal())
				if h.identitiesOnly && !filePubs[key] {
					continue
				}
				inAgent[key] = true
				signers = append(signers, a)
			}
		}
	}
	for _, k := range encrypted {
		if k.pub != nil && inAgent[string(k.pub.Marshal())] {
			continue
		}
		problems = append(problems, fmt.Sprintf("identity file %s is encrypted with a passphrase, "+
			"which fleetctl cannot ask for: load it into ssh-agent (ssh-add %s) or use an unencrypted deploy key", k.file, k.file))
	}
	if len(signers) == 0 {
		cleanup()
		detail := "no ssh-agent (SSH_AUTH_SOCK is unset) and no key file"
		if len(problems) > 0 {
			detail = strings.Join(problems, "; ")
		}
		return nil, "", nil, fmt.Errorf("host %s: no SSH key to log in with: %s", name, detail)
	}
	notes := ""
	if len(problems) > 0 {
		notes = "; not offered: " + strings.Join(problems, "; ")
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, notes, cleanup, nil
}

// readPublicKey reads an authorized_keys-format public key file; nil when
// there is none.
func readPublicKey(file string) ssh.PublicKey {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil
	}
	return pub
}

func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
