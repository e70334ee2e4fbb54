// Package server runs a Retain process: the gRPC server (health, reflection,
// auth, tracing, recovery), the ops HTTP server (/healthz, /readyz,
// /metrics) and the supervisor that starts every component and stops them in
// order on shutdown.
package server

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// CheckFunc reports whether a dependency is usable; nil means ready.
type CheckFunc func(ctx context.Context) error

// DefaultCheckTimeout bounds one readiness check so a hung dependency makes
// the process unready instead of hanging the probe. It is under the
// chart's probe timeout (2 s), so the probe gets the answer that says why.
const DefaultCheckTimeout = 1500 * time.Millisecond

// Readiness aggregates readiness checks and the draining flag. The ops server
// serves it on /readyz and the gRPC server maps it to health status.
type Readiness struct {
	mu       sync.Mutex
	checks   []namedCheck
	draining chan struct{}
	once     sync.Once
	timeout  time.Duration
}

type namedCheck struct {
	name  string
	check CheckFunc
}

// NewReadiness returns a Readiness with no checks: ready until draining.
func NewReadiness() *Readiness {
	return &Readiness{draining: make(chan struct{}), timeout: DefaultCheckTimeout}
}

// AddCheck registers check under name (e.g. "postgres", "nats").
func (r *Readiness) AddCheck(name string, check CheckFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, namedCheck{name: name, check: check})
}

// SetDraining marks the process as shutting down; readiness stays false from
// then on. Safe to call more than once.
func (r *Readiness) SetDraining() {
	r.once.Do(func() { close(r.draining) })
}

// Draining is closed once shutdown has begun.
func (r *Readiness) Draining() <-chan struct{} { return r.draining }

// IsDraining reports whether shutdown has begun.
func (r *Readiness) IsDraining() bool {
	select {
	case <-r.draining:
		return true
	default:
		return false
	}
}

// Check runs every check concurrently, each bounded by DefaultCheckTimeout,
// and returns the reasons the process is not ready keyed by check name
// ("draining" while shutting down). An empty map means ready. A check
// still running at its bound is not waited for: one that does not heed
// its context (a NATS client's status waits behind a write blocked on a
// hung server) would otherwise hold the whole answer.
func (r *Readiness) Check(ctx context.Context) map[string]string {
	reasons := map[string]string{}
	if r.IsDraining() {
		// Checks are pointless once draining: dependencies are going away.
		reasons["draining"] = "shutting down"
		return reasons
	}
	r.mu.Lock()
	checks := append([]namedCheck(nil), r.checks...)
	r.mu.Unlock()

	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- safeCheck(cctx, c.check) }()
			var err error
			select {
			case err = <-done:
			case <-cctx.Done():
				// Its own answer if it has one by now (it heeded the
				// context), else that it gave none.
				select {
				case err = <-done:
				case <-time.After(50 * time.Millisecond):
					err = fmt.Errorf("no answer within %s", r.timeout)
				}
			}
			if err != nil {
				mu.Lock()
				reasons[c.name] = err.Error()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return reasons
}

// Ready is Check reduced to a bool.
func (r *Readiness) Ready(ctx context.Context) bool {
	return len(r.Check(ctx)) == 0
}

func safeCheck(ctx context.Context, check CheckFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check panicked: %v", p)
		}
	}()
	return check(ctx)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
