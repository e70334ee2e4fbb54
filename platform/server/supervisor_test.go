package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder collects lifecycle events from several goroutines in order.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// recorded is a component that notes when it starts, when it is asked to
// stop (and whether readiness was already draining) and when it has stopped.
func recorded(rec *recorder, name string, readiness func() *Readiness, started *sync.WaitGroup) Component {
	return ComponentFunc(func(ctx context.Context) error {
		rec.add("%s started", name)
		started.Done()
		<-ctx.Done()
		rec.add("%s stopping draining=%v", name, readiness().IsDraining())
		rec.add("%s stopped", name)
		return ctx.Err()
	})
}

func TestSupervisorStopsInReverseOrderAfterDraining(t *testing.T) {
	rec := &recorder{}
	sup := NewSupervisor(SupervisorConfig{}, nil)
	var started sync.WaitGroup
	started.Add(3)
	for _, name := range []string{"bus", "consumer", "http"} {
		sup.Add(name, recorded(rec, name, sup.Readiness, &started))
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	started.Wait()
	if !sup.Readiness().Ready(context.Background()) {
		t.Fatal("not ready while running")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after a requested shutdown", err)
	}

	got := rec.list()[3:] // start order is concurrent; stop order is not
	want := []string{
		"http stopping draining=true", "http stopped",
		"consumer stopping draining=true", "consumer stopped",
		"bus stopping draining=true", "bus stopped",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("shutdown sequence:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if sup.Readiness().Ready(context.Background()) {
		t.Error("ready after shutdown")
	}
}

func TestSupervisorFailurePropagation(t *testing.T) {
	boom := errors.New("nats connection lost")
	tests := []struct {
		name    string
		failing Component
		want    string
		is      error
	}{
		{"error stops everything and is returned", ComponentFunc(func(context.Context) error { return boom }), "component failing: nats connection lost", boom},
		{"early nil return is a failure", ComponentFunc(func(context.Context) error { return nil }), "component failing: exited before shutdown", nil},
		{"panic is a failure", ComponentFunc(func(context.Context) error { panic("oops") }), "component failing: panic: oops", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			sup := NewSupervisor(SupervisorConfig{}, nil)
			var started sync.WaitGroup
			started.Add(2)
			sup.Add("first", recorded(rec, "first", sup.Readiness, &started))
			sup.Add("last", recorded(rec, "last", sup.Readiness, &started))
			gate := make(chan struct{})
			sup.Add("failing", ComponentFunc(func(ctx context.Context) error {
				<-gate
				return tt.failing.Run(ctx)
			}))

			done := make(chan error, 1)
			go func() { done <- sup.Run(context.Background()) }()
			started.Wait()
			close(gate)
			err := <-done
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Run = %v, want %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Run error does not wrap %v", tt.is)
			}
			got := rec.list()[2:]
			want := []string{"last stopping draining=true", "last stopped", "first stopping draining=true", "first stopped"}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("others stopped as %v, want %v", got, want)
			}
		})
	}
}

func TestSupervisorShutdownErrors(t *testing.T) {
	t.Run("error returned while stopping is reported", func(t *testing.T) {
		sup := NewSupervisor(SupervisorConfig{}, nil)
		sup.Add("clean", ComponentFunc(func(ctx context.Context) error { <-ctx.Done(); return nil }))
		sup.Add("dirty", ComponentFunc(func(ctx context.Context) error { <-ctx.Done(); return errors.New("flush failed") }))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := sup.Run(ctx)
		if err == nil || err.Error() != "component dirty: flush failed" {
			t.Fatalf("Run = %v", err)
		}
	})
	t.Run("stuck component hits the overall timeout and later ones are still cancelled", func(t *testing.T) {
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		sup := NewSupervisor(SupervisorConfig{ShutdownTimeout: 50 * time.Millisecond}, nil)
		firstCancelled := make(chan struct{})
		sup.Add("first", ComponentFunc(func(ctx context.Context) error {
			<-ctx.Done()
			close(firstCancelled)
			return nil
		}))
		sup.Add("stuck", ComponentFunc(func(context.Context) error { <-release; return nil }))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := sup.Run(ctx)
		if err == nil || !strings.Contains(err.Error(), "shutdown timed out") || !strings.Contains(err.Error(), "stuck") {
			t.Fatalf("Run = %v", err)
		}
		<-firstCancelled
	})
	t.Run("Add after Run panics", func(t *testing.T) {
		sup := NewSupervisor(SupervisorConfig{}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := sup.Run(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		sup.Add("late", ComponentFunc(func(context.Context) error { return nil }))
	})
	t.Run("context values reach components", func(t *testing.T) {
		type key struct{}
		sup := NewSupervisor(SupervisorConfig{}, nil)
		var got any
		sup.Add("c", ComponentFunc(func(ctx context.Context) error { got = ctx.Value(key{}); <-ctx.Done(); return nil }))
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
		cancel()
		if err := sup.Run(ctx); err != nil || got != "v" {
			t.Fatalf("Run = %v, value %v", err, got)
		}
	})
}

func TestSupervisorConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  SupervisorConfig
		ok   bool
	}{
		{"zero uses defaults", SupervisorConfig{}, true},
		{"drain shorter than timeout", SupervisorConfig{ShutdownTimeout: time.Second, DrainDelay: 100 * time.Millisecond}, true},
		{"negative timeout", SupervisorConfig{ShutdownTimeout: -1}, false},
		{"drain longer than timeout", SupervisorConfig{ShutdownTimeout: time.Second, DrainDelay: 2 * time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestReadyzFlipsWhileDraining runs ops under a supervisor: a component
// stopped before ops sees /readyz answer 503 during shutdown.
func TestReadyzFlipsWhileDraining(t *testing.T) {
	tel, _ := newTelemetry(t)
	sup := NewSupervisor(SupervisorConfig{}, tel.Logger)
	ops, err := NewOps(OpsConfig{Addr: "127.0.0.1:0"}, OpsDeps{Telemetry: tel, Readiness: sup.Readiness()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ops.Listen(); err != nil {
		t.Fatal(err)
	}
	url := "http://" + ops.Addr() + "/readyz"
	sup.Add("ops", ops)

	statusDuringShutdown := make(chan int, 1)
	running := make(chan struct{})
	sup.Add("worker", ComponentFunc(func(ctx context.Context) error {
		close(running)
		<-ctx.Done()
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		statusDuringShutdown <- resp.StatusCode
		return nil
	}))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	<-running
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz while running = %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := <-statusDuringShutdown; got != http.StatusServiceUnavailable {
		t.Errorf("/readyz during shutdown = %d, want 503", got)
	}
}
