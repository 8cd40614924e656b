// Package sidecar runs the Docker sidecars of vz-node's pods: every
// container after a pod's first (the macOS VM) is a Docker container on the
// host. It holds a small client for the Docker Engine API (v1.41, Docker
// 20.10 and later, which Docker Desktop and colima serve on a Mac), the
// mapping from a pod's container to a Docker container, and from Docker's
// state back to a Kubernetes container status.
package sidecar

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// apiVersion is the Engine API version every request names: Docker 20.10's,
// which later engines still serve.
const apiVersion = "/v1.41"

// Client talks to one Docker engine.
type Client struct {
	host string
	dial func(ctx context.Context) (net.Conn, error)
	hc   *http.Client
}

// New returns a client for host, a DOCKER_HOST value: unix:///path or
// tcp://host:port (plain HTTP; meant for loopback).
func New(host string) (*Client, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	var network, addr string
	switch u.Scheme {
	case "unix":
		network, addr = "unix", u.Path
	case "tcp", "http":
		network, addr = "tcp", u.Host
	default:
		return nil, fmt.Errorf("DOCKER_HOST %q: want unix:///path/to/docker.sock or tcp://host:port", host)
	}
	if addr == "" {
		return nil, fmt.Errorf("DOCKER_HOST %q names no socket or address", host)
	}
	c := &Client{host: host}
	c.dial = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
	}}
	return c, nil
}

// Host is the DOCKER_HOST the client talks to.
func (c *Client) Host() string { return c.host }

// APIError is an error answer of the Docker engine.
type APIError struct {
	Op      string
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("docker %s: %s (HTTP %d)", e.Op, e.Message, e.Status)
}

// IsNotFound reports whether err is Docker's "no such container/image".
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// IsConflict reports whether err is Docker's "name already in use".
func IsConflict(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusConflict
}

// request builds a request to the versioned API path.
func request(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	u := "http://docker" + apiVersion + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// do sends a request and turns an error status into an *APIError. The
// caller closes the body of a successful response.
func (c *Client) do(req *http.Request, op string) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker %s at %s: %w", op, c.host, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, apiError(op, resp)
	}
	return resp, nil
}

func apiError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var m struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	if msg == "" {
		msg = resp.Status
	}
	return &APIError{Op: op, Status: resp.StatusCode, Message: msg}
}

// call sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) call(ctx context.Context, op, method, path string, q url.Values, body, out any) error {
	req, err := request(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	resp, err := c.do(req, op)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("docker %s: read answer: %w", op, err)
	}
	return nil
}

// Ping checks that the engine answers.
func (c *Client) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, "ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Auth is a registry credential for a pull.
type Auth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	ServerAddress string `json:"serveraddress,omitempty"`
}

// ImageID returns the ID of the local image ref, or an error that
// IsNotFound recognises when the engine does not have it.
func (c *Client) ImageID(ctx context.Context, ref string) (string, error) {
	var img struct {
		ID string `json:"Id"`
	}
	err := c.call(ctx, "inspect image "+ref, http.MethodGet, "/images/"+ref+"/json", nil, nil, &img)
	return img.ID, err
}

// Pull pulls ref, with auth when not nil. The engine streams progress
// messages; a failure arrives as one of them.
func (c *Client) Pull(ctx context.Context, ref string, auth *Auth) error {
	req, err := request(ctx, http.MethodPost, "/images/create", url.Values{"fromImage": {ref}}, nil)
	if err != nil {
		return err
	}
	if auth != nil {
		b, err := json.Marshal(auth)
		if err != nil {
			return err
		}
		req.Header.Set("X-Registry-Auth", base64.URLEncoding.EncodeToString(b))
	}
	op := "pull " + ref
	resp, err := c.do(req, op)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("docker %s: read progress: %w", op, err)
		}
		if m.Error != "" || m.ErrorDetail.Message != "" {
			return &APIError{Op: op, Status: http.StatusOK, Message: cmpOr(m.ErrorDetail.Message, m.Error)}
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ContainerSpec is what Create makes.
type ContainerSpec struct {
	Name          string
	Image         string
	Entrypoint    []string
	Cmd           []string
	Env           []string
	WorkingDir    string
	Labels        map[string]string
	TTY           bool
	OpenStdin     bool
	RestartPolicy string // "no", "unless-stopped", "on-failure", "always"
	MemoryBytes   int64
	NanoCPUs      int64
	Binds         []string // host:container[:ro]
	Ports         []Port
	// NetworkMode is "container:ID" to join that container's network
	// namespace; empty means the engine's default network.
	NetworkMode string
}

// Port publishes a container port on the host. Several Ports may publish
// the same container port.
type Port struct {
	ContainerPort int
	Protocol      string // "tcp", "udp" or "sctp"
	HostIP        string // empty: every address of the host
	HostPort      int    // 0: a free port the engine picks
}

// key is how the Engine API names the container port: "8080/tcp".
func (p Port) key() string { return strconv.Itoa(p.ContainerPort) + "/" + p.Protocol }

// Create creates a container and returns its ID. A name in use gives an
// error that IsConflict recognises.
func (c *Client) Create(ctx context.Context, s ContainerSpec) (string, error) {
	type restart struct {
		Name string
	}
	type binding struct {
		HostIP   string `json:"HostIp"`
		HostPort string
	}
	type hostConfig struct {
		RestartPolicy restart
		Memory        int64                `json:",omitempty"`
		NanoCpus      int64                `json:",omitempty"`
		Binds         []string             `json:",omitempty"`
		PortBindings  map[string][]binding `json:",omitempty"`
		NetworkMode   string               `json:",omitempty"`
	}
	body := struct {
		Image        string
		Entrypoint   []string `json:",omitempty"`
		Cmd          []string `json:",omitempty"`
		Env          []string `json:",omitempty"`
		WorkingDir   string   `json:",omitempty"`
		Labels       map[string]string
		Tty          bool
		OpenStdin    bool
		AttachStdin  bool
		AttachStdout bool
		AttachStderr bool
		ExposedPorts map[string]struct{} `json:",omitempty"`
		HostConfig   hostConfig
	}{
		Image: s.Image, Entrypoint: s.Entrypoint, Cmd: s.Cmd, Env: s.Env, WorkingDir: s.WorkingDir,
		Labels: s.Labels, Tty: s.TTY, OpenStdin: s.OpenStdin,
		HostConfig: hostConfig{RestartPolicy: restart{s.RestartPolicy}, Memory: s.MemoryBytes, NanoCpus: s.NanoCPUs, Binds: s.Binds, NetworkMode: s.NetworkMode},
	}
	for _, p := range s.Ports {
		if body.ExposedPorts == nil {
			body.ExposedPorts, body.HostConfig.PortBindings = map[string]struct{}{}, map[string][]binding{}
		}
		hostPort := ""
		if p.HostPort != 0 {
			hostPort = strconv.Itoa(p.HostPort)
		}
		body.ExposedPorts[p.key()] = struct{}{}
		body.HostConfig.PortBindings[p.key()] = append(body.HostConfig.PortBindings[p.key()], binding{p.HostIP, hostPort})
	}
	var out struct {
		ID string `json:"Id"`
	}
	err := c.call(ctx, "create container "+s.Name, http.MethodPost, "/containers/create", url.Values{"name": {s.Name}}, body, &out)
	return out.ID, err
}

// Start starts a container; starting a running one is not an error.
func (c *Client) Start(ctx context.Context, id string) error {
	return c.call(ctx, "start container "+id, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil)
}

// Stop sends the container's stop signal and kills it after grace.
func (c *Client) Stop(ctx context.Context, id string, grace time.Duration) error {
	q := url.Values{"t": {strconv.Itoa(int(grace.Seconds()))}}
	return c.call(ctx, "stop container "+id, http.MethodPost, "/containers/"+id+"/stop", q, nil, nil)
}

// Restart stops a container as Stop does and starts it again, keeping its
// restart policy (which a kill or stop would suspend).
func (c *Client) Restart(ctx context.Context, id string, grace time.Duration) error {
	q := url.Values{"t": {strconv.Itoa(int(grace.Seconds()))}}
	return c.call(ctx, "restart container "+id, http.MethodPost, "/containers/"+id+"/restart", q, nil, nil)
}

// Wait blocks until the container is not running and returns the exit
// code of its last run; for a container that has already exited it
// returns at once.
func (c *Client) Wait(ctx context.Context, id string) (int, error) {
	var out struct {
		StatusCode int
		Error      *struct{ Message string }
	}
	op := "wait for container " + id
	if err := c.call(ctx, op, http.MethodPost, "/containers/"+id+"/wait", url.Values{"condition": {"not-running"}}, nil, &out); err != nil {
		return 0, err
	}
	if out.Error != nil && out.Error.Message != "" {
		return out.StatusCode, fmt.Errorf("docker %s: %s", op, out.Error.Message)
	}
	return out.StatusCode, nil
}

// Remove removes a container, killing it if it runs; a container that is
// already gone is not an error.
func (c *Client) Remove(ctx context.Context, id string) error {
	err := c.call(ctx, "remove container "+id, http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// State is a container's state as Docker reports it.
type State struct {
	Status     string // created, running, restarting, paused, exited, dead
	Running    bool
	Restarting bool
	OOMKilled  bool
	ExitCode   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	Pid        int
}

// Container is what Inspect reports.
type Container struct {
	ID           string `json:"Id"`
	Name         string
	Image        string // the image ID
	RestartCount int
	State        State
	Config       struct {
		Image  string
		Labels map[string]string
		Tty    bool
	}
	HostConfig struct {
		NetworkMode string // "container:<sandbox ID>" for a pod's containers
	}
	NetworkSettings struct {
		// Ports maps "8080/tcp" to where the engine publishes it, once
		// the container runs.
		Ports map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string
		}
	}
}

// LoopbackAddr is the address on the host's loopback interface where the
// engine forwards the container's TCP port, or false if it publishes the
// port nowhere loopback reaches. This is how the host reaches a container
// on every engine: Docker Desktop's containers have addresses that macOS
// cannot route to.
func (ct Container) LoopbackAddr(port int) (string, bool) {
	found := ""
	for _, b := range ct.NetworkSettings.Ports[strconv.Itoa(port)+"/tcp"] {
		switch b.HostIP {
		case "127.0.0.1":
			return net.JoinHostPort(b.HostIP, b.HostPort), true
		case "", "0.0.0.0", "::":
			found = net.JoinHostPort("127.0.0.1", b.HostPort)
		}
	}
	return found, found != ""
}

// Inspect reads a container by ID or name.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	var ct Container
	err := c.call(ctx, "inspect container "+id, http.MethodGet, "/containers/"+id+"/json", nil, nil, &ct)
	return ct, err
}

// Summary is one container of a List.
type Summary struct {
	ID     string `json:"Id"`
	Names  []string
	Labels map[string]string
	State  string
}

// List returns every container (running or not) carrying all of labels.
func (c *Client) List(ctx context.Context, labels map[string]string) ([]Summary, error) {
	q := url.Values{"all": {"1"}}
	if len(labels) > 0 {
		f, err := labelFilter(labels)
		if err != nil {
			return nil, err
		}
		q.Set("filters", f)
	}
	var out []Summary
	err := c.call(ctx, "list containers", http.MethodGet, "/containers/json", q, nil, &out)
	return out, err
}

func labelFilter(labels map[string]string, extra ...string) (string, error) {
	f := map[string][]string{}
	for k, v := range labels {
		f["label"] = append(f["label"], k+"="+v)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f[extra[i]] = append(f[extra[i]], extra[i+1])
	}
	b, err := json.Marshal(f)
	return string(b), err
}

// Event is one container event of the engine's event stream.
type Event struct {
	Action     string // create, start, die, stop, kill, destroy, ...
	ID         string
	Attributes map[string]string // the container's labels, and exitCode on "die"
}

// Events calls fn for each container event of containers carrying labels,
// until ctx ends or the stream breaks (the error says which). connected
// runs once the engine has accepted the subscription, before any event.
func (c *Client) Events(ctx context.Context, labels map[string]string, connected func(), fn func(Event)) error {
	f, err := labelFilter(labels, "type", "container")
	if err != nil {
		return err
	}
	req, err := request(ctx, http.MethodGet, "/events", url.Values{"filters": {f}}, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, "events")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	connected()
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Action string
			Actor  struct {
				ID         string
				Attributes map[string]string
			}
		}
		if err := dec.Decode(&m); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("docker event stream at %s: %w", c.host, err)
		}
		fn(Event{Action: m.Action, ID: m.Actor.ID, Attributes: m.Actor.Attributes})
	}
}

// Usage is a container's resource use at one moment.
type Usage struct {
	Time             time.Time
	CPUNanoseconds   uint64
	MemoryBytes      uint64 // in use, page cache excluded
	MemoryUsageBytes uint64 // as the cgroup counts it
}

// Stats samples a container's CPU and memory use once.
func (c *Client) Stats(ctx context.Context, id string) (Usage, error) {
	var s struct {
		Read     time.Time `json:"read"`
		CPUStats struct {
			CPUUsage struct {
				TotalUsage uint64 `json:"total_usage"`
			} `json:"cpu_usage"`
		} `json:"cpu_stats"`
		MemoryStats struct {
			Usage uint64            `json:"usage"`
			Stats map[string]uint64 `json:"stats"`
		} `json:"memory_stats"`
	}
	q := url.Values{"stream": {"false"}, "one-shot": {"true"}}
	if err := c.call(ctx, "stats of container "+id, http.MethodGet, "/containers/"+id+"/stats", q, nil, &s); err != nil {
		return Usage{}, err
	}
	u := Usage{Time: s.Read, CPUNanoseconds: s.CPUStats.CPUUsage.TotalUsage, MemoryUsageBytes: s.MemoryStats.Usage}
	// The working set, as the kubelet counts it: usage minus inactive file
	// pages (cgroup v2 "inactive_file", v1 "total_inactive_file").
	inactive := s.MemoryStats.Stats["inactive_file"]
	if v, ok := s.MemoryStats.Stats["total_inactive_file"]; ok {
		inactive = v
	}
	u.MemoryBytes = u.MemoryUsageBytes
	if inactive < u.MemoryBytes {
		u.MemoryBytes -= inactive
	}
	return u, nil
}
