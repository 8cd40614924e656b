package remote

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vzfleet/vzfleet/internal/sshsession"
)

// ServeMux runs the mux for dir (see Mux) until ctx ends, a stop request
// comes, or it has held no connection for a while. It returns at once,
// without error, when another mux already serves dir.
func ServeMux(ctx context.Context, dir string, log *slog.Logger) error {
	if err := privateDir(dir); err != nil {
		return fmt.Errorf("mux: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, muxName()+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("mux: %w", err)
	}
	defer lock.Close()
	if ok, err := tryLockFile(lock); err != nil || !ok {
		return err // another mux serves dir
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return err
	}
	// The key first: a client that finds the socket must find its key.
	if err := replaceFile(muxHostKey(dir), ssh.MarshalAuthorizedKey(signer.PublicKey())); err != nil {
		return fmt.Errorf("mux: %w", err)
	}
	sock := muxSocket(dir)
	os.Remove(sock) // left by a mux that died; the lock says none runs
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("mux: %w", err)
	}
	defer os.Remove(sock)
	cfg := &ssh.ServerConfig{NoClientAuth: true, ServerVersion: "SSH-2.0-vzfleet-mux", Config: muxSSH}
	cfg.AddHostKey(signer)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &muxd{log: log, cfg: cfg, stop: cancel, ups: map[string]*upstream{}, conns: map[*ssh.ServerConn]bool{}, idleSince: time.Now()}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go d.reap(ctx)
	log.Info("mux serving", "socket", sock)
	for {
		nc, err := ln.Accept()
		if err != nil {
			break
		}
		go d.serve(ctx, nc)
	}
	d.closeAll()
	log.Info("mux stopped")
	return nil
}

// muxd is the mux's state: the hosts' connections and the clients.
type muxd struct {
	log  *slog.Logger
	cfg  *ssh.ServerConfig
	stop context.CancelFunc

	mu        sync.Mutex
	ups       map[string]*upstream
	conns     map[*ssh.ServerConn]bool
	idleSince time.Time // when the mux last held something
}

// upstream is one host's connection, lent to at most one client at a time.
type upstream struct {
	ssh       *SSH
	persist   time.Duration
	lent      bool
	free      chan struct{} // closed when the client it is lent to has gone
	idleSince time.Time
}

// leaseWait is how long a lease request waits for the connection's
// client to let go before it is told the connection is in use.
const leaseWait = 500 * time.Millisecond

// release takes the connection back from its client; d.mu is held.
func (up *upstream) release() {
	up.lent, up.idleSince = false, time.Now()
	close(up.free)
}

// reap closes connections idle for longer than they should persist, and
// stops the mux once it holds none and serves no one.
func (d *muxd) reap(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		for key, up := range d.ups {
			if !up.lent && time.Since(up.idleSince) > up.persist {
				delete(d.ups, key)
				go up.ssh.Close()
				d.log.Info("closed idle connection", "host", up.ssh.cfg.Name)
			}
		}
		empty := len(d.ups) == 0 && len(d.conns) == 0
		if !empty {
			d.idleSince = time.Now()
		}
		done := empty && time.Since(d.idleSince) > 2*time.Second
		d.mu.Unlock()
		if done {
			d.stop()
			return
		}
	}
}

func (d *muxd) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.conns {
		c.Close()
	}
	for key, up := range d.ups {
		delete(d.ups, key)
		go up.ssh.Close()
	}
}

// serve is one client: a lease request, then its sessions and requests
// relayed to the host.
func (d *muxd) serve(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	if uid, err := peerUID(nc); err != nil || uid != os.Geteuid() {
		d.log.Warn("refused a client of another user", "uid", uid, "err", err)
		return
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(nc, d.cfg)
	if err != nil {
		d.log.Warn("client handshake failed", "err", err)
		return
	}
	nc.SetDeadline(time.Time{})
	d.mu.Lock()
	d.conns[sc] = true
	d.mu.Unlock()

	var (
		mu     sync.Mutex
		client *ssh.Client
		hostUp <-chan struct{} // closed when the host's connection has ended
		lent   *upstream       // set under mu, which a lease holds throughout
	)
	ended := make(chan struct{}) // closed when this client has gone
	defer close(ended)
	defer func() {
		mu.Lock() // waits for a lease under way
		up := lent
		mu.Unlock()
		d.mu.Lock()
		delete(d.conns, sc)
		if up != nil {
			up.release()
		}
		d.mu.Unlock()
	}()
	go func() {
		for r := range reqs {
			switch r.Type {
			case leaseRequest:
				mu.Lock()
				if lent == nil {
					var reply leaseReply
					lent, client, hostUp, reply = d.lease(ctx, r.Payload)
					if client != nil {
						go func(up <-chan struct{}) {
							select {
							case <-up:
								sc.Close() // the client redials
							case <-ended:
							}
						}(hostUp)
					}
					answer, _ := json.Marshal(reply)
					r.Reply(true, answer)
				} else {
					r.Reply(false, nil)
				}
				mu.Unlock()
			case holdRequest:
				err := d.hold(ctx, r.Payload)
				if err != nil {
					d.log.Warn("hold", "err", err)
				}
				r.Reply(err == nil, nil)
			case listRequest:
				answer, err := json.Marshal(d.list())
				r.Reply(err == nil, answer)
			case stopRequest:
				d.log.Info("stop requested")
				r.Reply(true, nil)
				d.stop()
			default:
				mu.Lock()
				c := client
				mu.Unlock()
				if c == nil {
					r.Reply(false, nil)
					continue
				}
				// keepalive@openssh.com and the like ask the host, so a
				// client learns when the host is gone.
				ok, payload, err := c.SendRequest(r.Type, r.WantReply, r.Payload)
				if r.WantReply {
					r.Reply(ok && err == nil, payload)
				}
			}
		}
	}()
	for ch := range chans {
		mu.Lock()
		c, up := client, hostUp
		mu.Unlock()
		if c == nil {
			ch.Reject(ssh.Prohibited, "no host connection lent yet")
			continue
		}
		go relayChannel(c, up, ch)
	}
}

// list describes the connections the mux holds, by host name.
func (d *muxd) list() []MuxConnection {
	d.mu.Lock()
	defer d.mu.Unlock()
	list := []MuxConnection{}
	for _, up := range d.ups {
		mc := MuxConnection{Host: up.ssh.cfg.Name, Address: up.ssh.target.user + "@" + up.ssh.target.addr(),
			Lent: up.lent, Persist: up.persist, Up: up.ssh.live()}
		for _, j := range up.ssh.jumps {
			mc.Jumps = append(mc.Jumps, j.user+"@"+j.addr())
		}
		if !up.lent {
			mc.Idle = time.Since(up.idleSince).Round(time.Second)
		}
		list = append(list, mc)
	}
	slices.SortFunc(list, func(a, b MuxConnection) int { return cmp.Compare(a.Host, b.Host) })
	return list
}

// parseSpec reads the payload of a hold or lease request.
func parseSpec(payload []byte) (spec leaseSpec, key string, err error) {
	if err := json.Unmarshal(payload, &spec); err != nil {
		return spec, "", fmt.Errorf("bad request to the mux: %w", err)
	}
	return spec, spec.key(), nil
}

// hold makes the mux hold a connection to the host the request names,
// dialling it in the background; a client that connected directly asks
// for it as it closes, so the next run finds the connection open.
func (d *muxd) hold(ctx context.Context, payload []byte) error {
	spec, key, err := parseSpec(payload)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	up := d.ups[key]
	if up == nil {
		target, jumps := spec.Target.hop(), make([]hop, 0, len(spec.Jumps))
		for _, j := range spec.Jumps {
			jumps = append(jumps, j.hop())
		}
		// One attempt, strict host keys: if it fails, the next run
		// connects directly and reports why as usual.
		cfg := Config{Name: spec.Name, ConnectTimeout: cmp.Or(spec.ConnectTimeout, 15*time.Second), KeepAlive: 15 * time.Second,
			DialAttempts: 1, RetryBackoff: 250 * time.Millisecond, MaxSessions: 8, Logger: d.log}
		up = &upstream{ssh: &SSH{cfg: cfg, target: target, jumps: jumps, sem: make(chan struct{}, 1)}, idleSince: time.Now()}
		d.ups[key] = up
		go func() {
			if _, _, err := up.ssh.connect(ctx); err != nil {
				d.log.Warn("could not connect", "host", spec.Name, "err", err)
				d.mu.Lock()
				if d.ups[key] == up && !up.lent {
					delete(d.ups, key)
					go up.ssh.Close()
				}
				d.mu.Unlock()
				return
			}
			d.log.Info("connected", "host", spec.Name)
		}()
	}
	up.persist = spec.Persist
	return nil
}

// lease lends the client the connection its request names, if the mux
// holds it. done is closed when the connection ends.
func (d *muxd) lease(ctx context.Context, payload []byte) (up *upstream, c *ssh.Client, done <-chan struct{}, reply leaseReply) {
	spec, key, err := parseSpec(payload)
	if err != nil {
		return nil, nil, nil, leaseReply{Error: err.Error()}
	}
	d.mu.Lock()
	up = d.ups[key]
	if up == nil {
		d.mu.Unlock()
		return nil, nil, nil, leaseReply{Error: "no connection held for the host"}
	}
	// A client that just closed its connection may not have been noticed
	// yet: wait for it a little before calling the connection in use.
	wait := time.NewTimer(leaseWait)
	defer wait.Stop()
	for up.lent {
		free := up.free
		d.mu.Unlock()
		select {
		case <-free:
		case <-wait.C:
			return nil, nil, nil, leaseReply{Error: "the connection is in use by another fleetctl"}
		}
		d.mu.Lock()
		if d.ups[key] != up {
			d.mu.Unlock()
			return nil, nil, nil, leaseReply{Error: "the connection closed while waiting for it"}
		}
	}
	up.lent, up.free = true, make(chan struct{})
	up.persist = spec.Persist
	d.mu.Unlock()

	// Waits for a dial under way; redials (once) a connection that ended.
	// A connection known_hosts no longer vouches for is closed: the client
	// then dials the host itself and reports the key as usual.
	c, done, err = up.ssh.connect(ctx)
	if err == nil {
		if err = up.ssh.checkHostKeys(); err != nil {
			d.log.Warn("closing a connection whose host key known_hosts no longer accepts", "host", spec.Name, "err", err)
		}
	}
	if err != nil {
		d.mu.Lock()
		if d.ups[key] == up {
			delete(d.ups, key)
		}
		up.release()
		d.mu.Unlock()
		go up.ssh.Close()
		return nil, nil, nil, leaseReply{Error: err.Error()}
	}
	return up, c, done, leaseReply{}
}

// openedChannel is a channel opened on the host's connection, with its
// requests.
type openedChannel struct {
	ssh.Channel
	reqs <-chan *ssh.Request
}

// relayChannel opens the client's channel on the host's connection and
// relays both ways: data, stderr, end of input, requests (exec, signals,
// exit status) and the close.
func relayChannel(c *ssh.Client, hostUp <-chan struct{}, nc ssh.NewChannel) {
	o, err := sshsession.Open(context.Background(), func() (openedChannel, error) {
		ch, reqs, err := c.OpenChannel(nc.ChannelType(), nc.ExtraData())
		return openedChannel{ch, reqs}, err
	}, hostUp)
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			nc.Reject(oce.Reason, oce.Message)
		} else {
			nc.Reject(ssh.ConnectionFailed, err.Error())
		}
		return
	}
	up := o.Channel
	local, localReqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	var toLocal sync.WaitGroup
	toLocal.Go(func() { io.Copy(local, up) })
	toLocal.Go(func() { io.Copy(local.Stderr(), up.Stderr()) })
	go func() {
		io.Copy(up, local)
		up.CloseWrite()
	}()
	go io.Copy(up.Stderr(), local.Stderr())
	// A reply the host gave reaches the client before the channel's close
	// does: the host may answer an exec and end the command at once, and
	// the client would read a close before its answer as a failed exec.
	var replying sync.RWMutex
	go func() {
		forwardRequests(localReqs, up, &replying)
		up.Close() // the client closed the channel
	}()
	forwardRequests(o.reqs, local, nil) // until the host closes the channel
	toLocal.Wait()
	replying.Lock()
	local.CloseWrite()
	local.Close()
	replying.Unlock()
}

// forwardRequests relays reqs to a channel and the answers back, each
// under a read lock of replying when it is not nil.
func forwardRequests(reqs <-chan *ssh.Request, to ssh.Channel, replying *sync.RWMutex) {
	for r := range reqs {
		if replying != nil {
			replying.RLock()
		}
		ok, err := to.SendRequest(r.Type, r.WantReply, r.Payload)
		if r.WantReply {
			r.Reply(ok && err == nil, nil)
		}
		if replying != nil {
			replying.RUnlock()
		}
	}
}

// replaceFile writes path (0600) through a temporary file and a rename, so
// a reader sees the old content or the new, whole.
func replaceFile(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
