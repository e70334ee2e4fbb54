package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/retainhq/retain/platform/config"
)

// Component is anything the supervisor runs: Run blocks until ctx is
// cancelled (then cleans up and returns) or the component fails.
// Returning ctx's error after cancellation counts as a clean stop.
type Component interface {
	Run(ctx context.Context) error
}

// ComponentFunc adapts a function to Component.
type ComponentFunc func(ctx context.Context) error

// Run calls f.
func (f ComponentFunc) Run(ctx context.Context) error { return f(ctx) }

// SupervisorConfig tunes shutdown.
type SupervisorConfig struct {
	// ShutdownTimeout bounds the whole shutdown, all components together;
	// zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// DrainDelay is how long readiness is reported false before the first
	// component is stopped, so load balancers stop routing here first.
	DrainDelay time.Duration
}

// DefaultShutdownTimeout fits inside Kubernetes' default 30 s grace period.
const DefaultShutdownTimeout = 25 * time.Second

// RegisterFlags binds -shutdown-timeout/RETAIN_SHUTDOWN_TIMEOUT and
// -drain-delay/RETAIN_DRAIN_DELAY, with the current values as defaults.
func (c *SupervisorConfig) RegisterFlags(fs *flag.FlagSet) {
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	config.DurationVar(fs, &c.ShutdownTimeout, "shutdown-timeout", "RETAIN_SHUTDOWN_TIMEOUT", "time allowed for a graceful shutdown")
	config.DurationVar(fs, &c.DrainDelay, "drain-delay", "RETAIN_DRAIN_DELAY", "time readiness is false before components stop")
}

// Validate reports every invalid field.
func (c SupervisorConfig) Validate() error {
	var v config.Validator
	v.Check(c.ShutdownTimeout >= 0, config.SettingName("RETAIN_SHUTDOWN_TIMEOUT", "shutdown-timeout"), "must not be negative, got %s", c.ShutdownTimeout)
	v.Check(c.DrainDelay >= 0, config.SettingName("RETAIN_DRAIN_DELAY", "drain-delay"), "must not be negative, got %s", c.DrainDelay)
	v.Check(c.ShutdownTimeout == 0 || c.DrainDelay < c.ShutdownTimeout, config.SettingName("RETAIN_DRAIN_DELAY", "drain-delay"),
		"must be shorter than the shutdown timeout (%s), got %s", c.ShutdownTimeout, c.DrainDelay)
	return v.Err()
}

// Supervisor runs components and stops them in reverse order of Add, so a
// server added after the bus connection stops taking requests before that
// connection drains.
type Supervisor struct {
	cfg       SupervisorConfig
	logger    *slog.Logger
	readiness *Readiness

	mu         sync.Mutex
	components []supervised
	started    bool
}

type supervised struct {
	name string
	c    Component
}

// NewSupervisor returns a Supervisor; logger nil discards logs.
func NewSupervisor(cfg SupervisorConfig, logger *slog.Logger) *Supervisor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	return &Supervisor{cfg: cfg, logger: logger, readiness: NewReadiness()}
}

// Readiness is set draining when shutdown begins; give it to the ops and
// gRPC servers and register dependency checks on it.
func (s *Supervisor) Readiness() *Readiness { return s.readiness }

// Add registers c. Components start in order of Add (concurrently: Add order
// does not wait for readiness) and stop in reverse order. Add panics after Run
// has started, which is a wiring bug.
func (s *Supervisor) Add(name string, c Component) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic(fmt.Sprintf("server: Supervisor.Add(%q) after Run", name))
	}
	s.components = append(s.components, supervised{name: name, c: c})
}

type running struct {
	supervised
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid after done is closed
}

type exit struct {
	index int
	err   error
}

// Run starts every component and blocks until ctx is done or a component
// returns. Then it marks readiness draining, waits DrainDelay, and stops the
// components one at a time in reverse order of Add, waiting for each before
// stopping the next, all within ShutdownTimeout. It returns the error of the
// component that failed first, else the first error reported during
// shutdown, else nil (a shutdown requested through ctx is not an error).
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("supervisor: Run called twice")
	}
	s.started = true
	comps := s.components
	s.mu.Unlock()

	// Components get contexts detached from ctx's cancellation (keeping its
	// values) so each can be stopped individually, in order.
	base := context.WithoutCancel(ctx)
	exits := make(chan exit, len(comps))
	rs := make([]*running, len(comps))
	for i, c := range comps {
		cctx, cancel := context.WithCancel(base)
		r := &running{supervised: c, cancel: cancel, done: make(chan struct{})}
		rs[i] = r
		s.logger.InfoContext(ctx, "starting component", "component", c.name)
		go func() {
			defer close(r.done)
			r.err = s.runComponent(cctx, r)
			exits <- exit{index: i, err: r.err}
		}()
	}

	var firstErr error
	failed := -1
	select {
	case <-ctx.Done():
		s.logger.InfoContext(ctx, "shutdown requested", "cause", context.Cause(ctx))
	case e := <-exits:
		failed = e.index
		name := rs[e.index].name
		if e.err == nil {
			e.err = errors.New("exited before shutdown")
		}
		firstErr = fmt.Errorf("component %s: %w", name, e.err)
		s.logger.ErrorContext(ctx, "component stopped; shutting down", "component", name, "error", e.err)
	}

	shutdownErr := s.shutdown(base, rs, failed)
	if firstErr != nil {
		return firstErr
	}
	return shutdownErr
}

// shutdown stops rs in reverse order; failed is the index of the component
// whose exit triggered it (-1 for none), already reported by Run.
func (s *Supervisor) shutdown(ctx context.Context, rs []*running, failed int) error {
	s.readiness.SetDraining()
	deadline := time.NewTimer(s.cfg.ShutdownTimeout)
	defer deadline.Stop()

	if s.cfg.DrainDelay > 0 {
		s.logger.InfoContext(ctx, "draining before stopping components", "delay", s.cfg.DrainDelay)
		select {
		case <-time.After(s.cfg.DrainDelay):
		case <-deadline.C:
		}
	}

	var errs []error
	timedOut := false
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		r.cancel()
		if timedOut || i == failed {
			continue
		}
		start := time.Now()
		select {
		case <-r.done:
			if r.err != nil && !errors.Is(r.err, context.Canceled) {
				errs = append(errs, fmt.Errorf("component %s: %w", r.name, r.err))
				s.logger.ErrorContext(ctx, "component stopped with error", "component", r.name, "error", r.err)
			} else {
				s.logger.InfoContext(ctx, "component stopped", "component", r.name, "duration", time.Since(start))
			}
		case <-deadline.C:
			// Remaining components were cancelled above or are cancelled by
			// the loop; nobody waits for them any more.
			timedOut = true
			errs = append(errs, fmt.Errorf("shutdown timed out after %s waiting for component %s", s.cfg.ShutdownTimeout, r.name))
			s.logger.ErrorContext(ctx, "shutdown timed out", "component", r.name, "timeout", s.cfg.ShutdownTimeout)
		}
	}
	return errors.Join(errs...)
}

// runComponent turns a panic into an error so one component cannot take the
// process down without an orderly shutdown of the others.
func (s *Supervisor) runComponent(ctx context.Context, r *running) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.logger.ErrorContext(ctx, "component panicked", "component", r.name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return r.c.Run(ctx)
}

// SignalContext returns a context cancelled on SIGINT or SIGTERM, for mains:
//
//	ctx, stop := server.SignalContext(context.Background())
//	defer stop()
//
// After the first signal, stop restores default handling, so a second signal
// kills the process if shutdown hangs.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}
