//go:build unix

package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vzfleet/vzfleet/node/vm"
)

// request is one line a client sends on the control socket.
type request struct {
	Op string `json:"op"`
}

// response is one line the supervisor answers with.
type response struct {
	State State  `json:"state"`
	Error string `json:"error,omitempty"`
}

// Control operations.
const (
	opStatus      = "status"
	opWatch       = "watch"
	opRequestStop = "request-stop"
	opStop        = "stop"
)

// supervisor owns one machine and its published state.
type supervisor struct {
	dir string
	log *slog.Logger

	mu            sync.Mutex
	state         State
	watchers      map[chan State]struct{}
	stopRequested bool
	machine       vm.Machine
}

// Run is the body of `vz-node vm run`: boot the VM in dir, serve the control
// socket, and return once the VM has stopped. Cancelling ctx (SIGTERM) powers
// the VM off. The returned error is also recorded in state.json.
func Run(ctx context.Context, dir string, log *slog.Logger) error {
	spec, err := ReadSpec(dir)
	if err != nil {
		return fmt.Errorf("supervisor %s: %w", dir, err)
	}
	s := &supervisor{
		dir:      dir,
		log:      log,
		watchers: map[chan State]struct{}{},
		state: State{
			PID:    os.Getpid(),
			Phase:  PhaseStarting,
			Socket: SocketPath(dir),
			MAC:    spec.Machine.Network.MAC.String(),
		},
	}
	ln, err := listen(s.state.Socket)
	if err != nil {
		return s.fail(ReasonStartFailed, err)
	}
	defer ln.Close()
	defer os.Remove(s.state.Socket)
	go s.serve(ln)
	if err := s.publish(func(*State) {}); err != nil {
		return err
	}

	drv, err := vm.New(spec.Driver, spec.DriverOptions)
	if err != nil {
		return s.fail(ReasonStartFailed, err)
	}
	if err := drv.Validate(spec.Machine); err != nil {
		return s.fail(ReasonInvalidSpec, err)
	}
	m, err := drv.Create(ctx, spec.Machine)
	if err != nil {
		return s.fail(classify(err), err)
	}
	s.mu.Lock()
	s.machine = m
	s.mu.Unlock()
	if err := m.Start(ctx); err != nil {
		_ = m.Release()
		return s.fail(classify(err), err)
	}
	if err := s.publish(func(st *State) {
		st.Phase = PhaseRunning
		st.StartedAt = time.Now().UTC().Truncate(time.Second)
	}); err != nil {
		log.Warn("record running state", "err", err)
	}
	log.Info("VM running", "id", spec.Machine.ID)
	return s.wait(ctx, m)
}

// wait follows the machine until it stops.
func (s *supervisor) wait(ctx context.Context, m vm.Machine) error {
	changes := m.Changes()
	for {
		select {
		case <-ctx.Done():
			s.markStopRequested()
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := m.Stop(stopCtx)
			cancel()
			if err != nil {
				s.log.Warn("hard stop on signal", "err", err)
			}
			ctx = context.Background()
		case st, ok := <-changes:
			if !ok || st == vm.StateStopped || st == vm.StateError {
				return s.finish(m, st, ok)
			}
			if st == vm.StateStopping {
				_ = s.publish(func(x *State) { x.Phase = PhaseStopping })
			}
		}
		if m.State() == vm.StateStopped {
			return s.finish(m, vm.StateStopped, true)
		}
	}
}

func (s *supervisor) finish(m vm.Machine, st vm.State, open bool) error {
	if err := m.Release(); err != nil {
		s.log.Warn("release machine", "err", err)
	}
	s.mu.Lock()
	requested := s.stopRequested
	s.mu.Unlock()
	reason := ReasonGuestShutdown
	if requested {
		reason = ReasonStopRequested
	}
	phase := PhaseStopped
	msg := ""
	if st == vm.StateError || !open {
		phase, reason, msg = PhaseFailed, ReasonCrashed, "the virtual machine stopped with an error"
	}
	err := s.publish(func(x *State) {
		x.Phase = phase
		x.ExitReason = reason
		x.Message = msg
		x.FinishedAt = time.Now().UTC().Truncate(time.Second)
	})
	s.closeWatchers()
	s.log.Info("VM stopped", "reason", reason)
	return err
}

func classify(err error) string {
	switch {
	case errors.Is(err, vm.ErrLimitExceeded):
		return ReasonLimitExceeded
	case errors.Is(err, vm.ErrInvalidSpec):
		return ReasonInvalidSpec
	default:
		return ReasonStartFailed
	}
}

// fail records a VM that could not start and returns err.
func (s *supervisor) fail(reason string, err error) error {
	perr := s.publish(func(x *State) {
		x.Phase = PhaseFailed
		x.ExitReason = reason
		x.Message = err.Error()
		x.FinishedAt = time.Now().UTC().Truncate(time.Second)
	})
	s.closeWatchers()
	return errors.Join(fmt.Errorf("%s: %w", reason, err), perr)
}

// publish updates the state, writes state.json and then tells every
// watcher, all under the lock: state.json is never older than what a
// watcher saw, and an agent that removes the VM's directory once it sees
// the VM stopped finds nothing more written into it afterwards.
func (s *supervisor) publish(update func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	update(&s.state)
	st := s.state
	err := WriteJSON(filepath.Join(s.dir, StateFile), st)
	for w := range s.watchers {
		select {
		case w <- st:
		default: // a slow watcher re-reads status after reconnecting
		}
	}
	return err
}

func (s *supervisor) closeWatchers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		close(w)
		delete(s.watchers, w)
	}
}

func (s *supervisor) markStopRequested() {
	s.mu.Lock()
	s.stopRequested = true
	s.mu.Unlock()
}

func listen(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

func (s *supervisor) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *supervisor) handle(c net.Conn) {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return
	}
	var req request
	enc := json.NewEncoder(c)
	if err := json.Unmarshal(line, &req); err != nil {
		_ = enc.Encode(response{Error: "bad request: " + err.Error()})
		return
	}
	s.mu.Lock()
	st, m := s.state, s.machine
	s.mu.Unlock()
	switch req.Op {
	case opStatus:
		_ = enc.Encode(response{State: st})
	case opWatch:
		s.watch(c, enc)
	case opRequestStop, opStop:
		if m == nil || st.Terminal() {
			_ = enc.Encode(response{State: st, Error: "the VM is not running"})
			return
		}
		s.markStopRequested()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if req.Op == opStop {
			err = m.Stop(ctx)
		} else {
			err = m.RequestStop(ctx)
		}
		resp := response{State: st}
		if err != nil {
			resp.Error = err.Error()
		}
		_ = enc.Encode(resp)
	default:
		_ = enc.Encode(response{State: st, Error: "unknown op " + req.Op})
	}
}

func (s *supervisor) watch(c net.Conn, enc *json.Encoder) {
	ch := make(chan State, 16)
	s.mu.Lock()
	st := s.state
	if st.Terminal() {
		s.mu.Unlock()
		_ = enc.Encode(response{State: st})
		return
	}
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	if enc.Encode(response{State: st}) != nil {
		s.unwatch(ch)
		return
	}
	for st := range ch {
		if err := enc.Encode(response{State: st}); err != nil {
			s.unwatch(ch)
			return
		}
	}
}

func (s *supervisor) unwatch(ch chan State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.watchers[ch]; ok {
		delete(s.watchers, ch)
		close(ch)
	}
}
