package node

import (
	"sort"
	"sync"
)

// slots hands out the host's VM slots (Virtualization.framework runs at most
// two macOS guests) first come, first served. A pod holds its slot from the
// moment its VM is launched until the VM has stopped.
type slots struct {
	mu    sync.Mutex
	max   int
	held  map[string]bool
	queue []slotWaiter
}

type slotWaiter struct {
	uid   string
	grant func()
}

func newSlots(max int) *slots { return &slots{max: max, held: map[string]bool{}} }

// acquire takes a slot for uid at once and returns true, or queues uid and
// calls grant (from another goroutine) once a slot is free.
func (s *slots) acquire(uid string, grant func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[uid] {
		return true
	}
	if len(s.held) < s.max && len(s.queue) == 0 {
		s.held[uid] = true
		return true
	}
	for _, w := range s.queue {
		if w.uid == uid {
			return false
		}
	}
	s.queue = append(s.queue, slotWaiter{uid, grant})
	return false
}

// hold records a slot taken by a VM found running (re-adoption), even above
// the limit: the VM exists, so it counts.
func (s *slots) hold(uid string) {
	s.mu.Lock()
	s.held[uid] = true
	s.mu.Unlock()
}

// release frees uid's slot (or its place in the queue) and grants freed
// slots to the next waiters.
func (s *slots) release(uid string) {
	s.mu.Lock()
	delete(s.held, uid)
	for i, w := range s.queue {
		if w.uid == uid {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			break
		}
	}
	var grants []func()
	for len(s.held) < s.max && len(s.queue) > 0 {
		w := s.queue[0]
		s.queue = s.queue[1:]
		s.held[w.uid] = true
		grants = append(grants, w.grant)
	}
	s.mu.Unlock()
	for _, g := range grants {
		go g()
	}
}

// snapshot returns the holders (sorted) and the number waiting.
func (s *slots) snapshot() (held []string, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid := range s.held {
		held = append(held, uid)
	}
	sort.Strings(held)
	return held, len(s.queue)
}
