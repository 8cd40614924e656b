package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// startProbes runs the VM container's startup, readiness and liveness
// probes against the guest and reports through events. Without a readiness
// probe the VM is ready once its SSH server answers.
func (w *podWorker) startProbes() {
	ctx := w.newActivity()
	pod, view := w.snapshot()
	c := vmContainer(pod)
	t := w.p.target(w.uid, w.dir, view.PodIP)
	vars := vmEnv(c, view.PodIP)
	env := probeEnv{c: c, addr: guestAddr(view.PodIP), exec: func(ctx context.Context, argv []string) error { return w.p.execSucceeds(ctx, t, vars, argv) }}
	go func() {
		if c.StartupProbe != nil {
			if err := probeUntil(ctx, env, c.StartupProbe, true); err != nil {
				if ctx.Err() == nil {
					w.event(corev1.EventTypeWarning, "Unhealthy", "Startup probe failed: %v", err)
					w.post(event{kind: evUnhealthy, err: err})
				}
				return
			}
		}
		if c.ReadinessProbe == nil {
			w.post(event{kind: evProbe, ready: true})
		} else {
			go readinessLoop(ctx, env, c.ReadinessProbe, func(ready bool, err error) {
				if err != nil {
					w.event(corev1.EventTypeWarning, "Unhealthy", "Readiness probe failed: %v", err)
				}
				w.post(event{kind: evProbe, ready: ready})
			})
		}
		if c.LivenessProbe != nil {
			if err := probeUntil(ctx, env, c.LivenessProbe, false); err != nil && ctx.Err() == nil {
				w.event(corev1.EventTypeWarning, "Unhealthy", "Liveness probe failed: %v", err)
				w.post(event{kind: evUnhealthy, err: err})
			}
		}
	}()
}

// probeEnv is what probes run against: the container, where its network
// probes reach it, and how a command runs in it.
type probeEnv struct {
	c    corev1.Container
	addr portAddr
	// proxied is set when addr leads to a port proxy (see tcpConnect).
	proxied bool
	exec    func(ctx context.Context, argv []string) error
}

// portAddr is the address (host:port) where vz-node reaches a container's
// TCP port.
type portAddr func(ctx context.Context, port int) (string, error)

// guestAddr reaches a VM's ports at its address, ip.
func guestAddr(ip string) portAddr {
	return func(_ context.Context, port int) (string, error) {
		return net.JoinHostPort(ip, strconv.Itoa(port)), nil
	}
}

// handlerAddr is where a network probe or hook on port p goes: host when
// the handler names one, else the container's own port.
func handlerAddr(ctx context.Context, own portAddr, c corev1.Container, host string, p intstr.IntOrString) (string, error) {
	port, err := resolvePort(p, c)
	if err != nil {
		return "", err
	}
	if host != "" {
		return net.JoinHostPort(host, strconv.Itoa(port)), nil
	}
	return own(ctx, port)
}

// proxyHangUp is how long a TCP probe through a port proxy waits for the
// proxy to hang up.
const proxyHangUp = 200 * time.Millisecond

// tcpConnect succeeds when a TCP connection to addr opens. Through a port
// proxy (proxied: Docker's published ports, with docker-proxy or Docker
// Desktop's forwarder), the connection always opens: the proxy accepts it
// and then connects to the container, hanging up at once when nothing
// listens there. So there the connection must also stay open, or bring
// data, for proxyHangUp.
func tcpConnect(ctx context.Context, addr string, proxied bool) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if !proxied {
		return nil
	}
	deadline := time.Now().Add(proxyHangUp)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	var b [1]byte
	n, err := conn.Read(b[:])
	if ne, ok := err.(net.Error); n > 0 || ok && ne.Timeout() {
		return nil
	}
	return fmt.Errorf("dial tcp %s: the port proxy hung up: nothing listens on the container's port", addr)
}

type probeTiming struct {
	initial, period, timeout time.Duration
	success, failure         int
}

func timing(p *corev1.Probe) probeTiming {
	t := probeTiming{
		initial: time.Duration(p.InitialDelaySeconds) * time.Second,
		period:  time.Duration(p.PeriodSeconds) * time.Second,
		timeout: time.Duration(p.TimeoutSeconds) * time.Second,
		success: int(p.SuccessThreshold),
		failure: int(p.FailureThreshold),
	}
	if t.period <= 0 {
		t.period = 10 * time.Second
	}
	if t.timeout <= 0 {
		t.timeout = time.Second
	}
	if t.success <= 0 {
		t.success = 1
	}
	if t.failure <= 0 {
		t.failure = 3
	}
	return t
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// probeUntil runs probe until it succeeds (untilSuccess: the startup probe)
// or until it fails failureThreshold times in a row (liveness). It returns
// the last failure.
func probeUntil(ctx context.Context, env probeEnv, probe *corev1.Probe, untilSuccess bool) error {
	tm := timing(probe)
	if !sleepCtx(ctx, tm.initial) {
		return ctx.Err()
	}
	fails := 0
	for {
		err := probeOnce(ctx, env, probe, tm.timeout)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			fails = 0
			if untilSuccess {
				return nil
			}
		} else if fails++; fails >= tm.failure {
			return err
		}
		if !sleepCtx(ctx, tm.period) {
			return ctx.Err()
		}
	}
}

// readinessLoop runs a readiness probe until ctx ends and reports each
// change of readiness, with the failure that ended a ready spell.
func readinessLoop(ctx context.Context, env probeEnv, probe *corev1.Probe, report func(ready bool, err error)) {
	tm := timing(probe)
	if !sleepCtx(ctx, tm.initial) {
		return
	}
	ready, succ, fails := false, 0, 0
	for {
		err := probeOnce(ctx, env, probe, tm.timeout)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			succ, fails = succ+1, 0
			if !ready && succ >= tm.success {
				ready = true
				report(true, nil)
			}
		} else {
			succ, fails = 0, fails+1
			if ready && fails >= tm.failure || !ready && fails == 1 {
				var lost error
				if ready {
					lost = err
				}
				ready = false
				report(false, lost)
			}
		}
		if !sleepCtx(ctx, tm.period) {
			return
		}
	}
}

// probeOnce runs one probe with its timeout.
func probeOnce(ctx context.Context, env probeEnv, probe *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := probe.ProbeHandler
	switch {
	case h.Exec != nil:
		return env.exec(ctx, h.Exec.Command)
	case h.TCPSocket != nil:
		addr, err := handlerAddr(ctx, env.addr, env.c, h.TCPSocket.Host, h.TCPSocket.Port)
		if err != nil {
			return err
		}
		return tcpConnect(ctx, addr, env.proxied && h.TCPSocket.Host == "")
	case h.HTTPGet != nil:
		return httpGet(ctx, env.addr, env.c, h.HTTPGet)
	case h.GRPC != nil:
		addr, err := env.addr(ctx, int(h.GRPC.Port))
		if err != nil {
			return err
		}
		var service string
		if h.GRPC.Service != nil {
			service = *h.GRPC.Service
		}
		return grpcHealth(ctx, addr, service)
	}
	return fmt.Errorf("probe has no handler")
}

// httpGet runs an HTTP probe or hook of container c, whose own ports own
// reaches.
func httpGet(ctx context.Context, own portAddr, c corev1.Container, g *corev1.HTTPGetAction) error {
	addr, err := handlerAddr(ctx, own, c, g.Host, g.Port)
	if err != nil {
		return err
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u := url.URL{Scheme: scheme, Host: addr, Path: g.Path}
	if i := strings.IndexByte(g.Path, '?'); i >= 0 {
		u.Path, u.RawQuery = g.Path[:i], g.Path[i+1:]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	// Like the kubelet: probes of HTTPS endpoints do not verify certificates.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true} //nolint:gosec
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe %s answered %s", u.String(), resp.Status)
	}
	return nil
}

func resolvePort(p intstr.IntOrString, c corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("port %d out of range", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("named port %q is not declared by container %q", p.StrVal, c.Name)
}

// runHook runs a postStart or preStop handler in the guest.
func (p *PodProvider) runHook(ctx context.Context, pod *corev1.Pod, t GuestTarget, h *corev1.LifecycleHandler) error {
	c := vmContainer(pod)
	ip, _, _ := net.SplitHostPort(t.Addr)
	switch {
	case h.Exec != nil:
		return p.execSucceeds(ctx, t, vmEnv(c, ip), h.Exec.Command)
	case h.HTTPGet != nil:
		return httpGet(ctx, guestAddr(ip), c, h.HTTPGet)
	case h.TCPSocket != nil:
		addr, err := handlerAddr(ctx, guestAddr(ip), c, h.TCPSocket.Host, h.TCPSocket.Port)
		if err != nil {
			return err
		}
		return tcpConnect(ctx, addr, false)
	case h.Sleep != nil:
		sleepCtx(ctx, time.Duration(h.Sleep.Seconds)*time.Second)
		return nil
	}
	return fmt.Errorf("lifecycle hook has no handler")
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func decodeBasic(auth string) (user, pass string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(auth)
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	return user, pass, ok
}

// execSucceeds runs argv in the guest and fails unless it exits 0, quoting
// the start of its output, as exec probes and hooks both need.
func (p *PodProvider) execSucceeds(ctx context.Context, t GuestTarget, env, argv []string) error {
	var out bytes.Buffer
	code, err := p.cfg.Guest.Exec(ctx, t, ExecRequest{Argv: withEnv(env, argv), Stdout: &out, Stderr: &out})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("command %q exited with %d: %s", argv, code, truncate(out.String(), 200))
	}
	return nil
}
