package bus

import (
	"context"
	"sync"
)

// A consumer with several workers applies its batches concurrently, so two
// events of one customer fetched in consecutive batches could be applied
// in either order, each without seeing the other's writes: a handler
// deciding "is this the customer's first order?" would answer yes twice.
// Sequence restores the order where it matters: a batch waits for the
// batches fetched before it, in the same process, that touch one of its
// keys.

// sequencer tracks one consumer's batches in flight, in fetch order.
type sequencer struct {
	mu       sync.Mutex
	inflight []*ticket
}

// ticket is one batch in flight.
type ticket struct {
	earlier  []*ticket // in flight when this batch was fetched
	mu       sync.Mutex
	keys     map[string]struct{}
	declared chan struct{} // closed once keys are set
	done     chan struct{} // closed once the batch's transaction ended
}

type ticketKey struct{}

// enter registers a batch just fetched. The caller holds the fetch lock,
// so tickets are issued in fetch (stream) order.
func (s *sequencer) enter() *ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &ticket{earlier: append([]*ticket(nil), s.inflight...), declared: make(chan struct{}), done: make(chan struct{})}
	s.inflight = append(s.inflight, t)
	return t
}

// leave ends a batch: the batches fetched after it stop waiting for it.
func (s *sequencer) leave(t *ticket) {
	s.mu.Lock()
	for i, x := range s.inflight {
		if x == t {
			s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	close(t.done)
}

// Sequence declares the keys (customers, say) the handler's batch is about
// to read and write, and waits until every batch this consumer fetched
// earlier that shares one of them, or has not declared its keys yet, has
// committed or rolled back. Call it in the handler before touching rows
// that such batches may touch. With one worker, or outside a consumer's
// handler, it returns at once. It returns ctx's error if ctx ends first
// (the batch fails and is redelivered).
func Sequence(ctx context.Context, keys []string) error {
	t, ok := ctx.Value(ticketKey{}).(*ticket)
	if !ok {
		return nil
	}
	t.mu.Lock()
	first := t.keys == nil
	if first {
		t.keys = make(map[string]struct{}, len(keys))
	}
	for _, k := range keys {
		t.keys[k] = struct{}{}
	}
	t.mu.Unlock()
	if first {
		close(t.declared)
	}
	for _, e := range t.earlier {
		select {
		case <-e.done:
			continue
		case <-e.declared:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !e.shares(keys) {
			continue
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// shares reports whether t declared one of keys.
func (t *ticket) shares(keys []string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if _, ok := t.keys[k]; ok {
			return true
		}
	}
	return false
}
