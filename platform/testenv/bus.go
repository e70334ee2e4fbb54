package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/bus"
)

// Bus connects to the NATS server at cfg.URL and declares streams on it
// (bus.DefaultStreams when none are given), as a service does at
// start-up, failing the test if either fails. cfg is passed as given, so
// a test keeps its connection's name, credentials and limits. The
// connection is closed in tb.Cleanup.
func Bus(tb testing.TB, cfg bus.Config, streams ...jetstream.StreamConfig) *bus.Bus {
	tb.Helper()
	// Connect retries an unreachable server until its context ends: a
	// bound makes a server that never comes up fail the test, not hang it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Connect(ctx, cfg, nil)
	if err != nil {
		tb.Fatalf("testenv: connect to %s: %v", cfg.URL, err)
	}
	tb.Cleanup(b.Close)
	if err := b.EnsureStreams(ctx, streams...); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return b
}
