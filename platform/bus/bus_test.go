package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testLogger is silent unless RETAIN_TEST_LOG=1: workers log from
// goroutines that may outlive a subtest.
func testLogger() *slog.Logger {
	if os.Getenv("RETAIN_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t testing.TB, url string, cfg bus.Config, opts ...bus.Option) *bus.Bus {
	t.Helper()
	cfg.URL = url
	if cfg.Name == "" {
		cfg.Name = t.Name()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, cfg, testLogger(), opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// setupNATS starts a server (fsync always) and declares the Retain streams.
func setupNATS(t testing.TB, opts ...bus.Option) (*testenv.NATSServer, *bus.Bus) {
	t.Helper()
	srv := testenv.NATS(t)
	b := connect(t, srv.URL(), bus.Config{}, opts...)
	if err := b.EnsureStreams(testCtx(t)); err != nil {
		t.Fatalf("ensure streams: %v", err)
	}
	return srv, b
}

// setupPG gives a fresh migrated database with a table the test handlers
// apply effects to. applied has no unique key on purpose: an effect applied
// twice shows up as two rows.
func setupPG(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx := testCtx(t)
	pool := testenv.MigratedPool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE applied (msg_id text NOT NULL, subject text NOT NULL, payload bytea)`); err != nil {
		t.Fatalf("create applied: %v", err)
	}
	return pool
}

func streamMsgs(t testing.TB, b *bus.Bus, stream string) uint64 {
	t.Helper()
	s, err := b.JS.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}

// events builds n order.placed messages with ids prefix-0..n-1.
func events(prefix string, n int) []bus.Message {
	out := make([]bus.Message, n)
	for i := range out {
		out[i] = bus.Message{
			Subject: bus.EventSubject("acme", "order.placed"),
			ID:      fmt.Sprintf("%s-%d", prefix, i),
			Type:    "order.placed",
			Data:    fmt.Appendf(nil, "payload %s-%d", prefix, i),
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes. It waits for
// asynchronous work to finish; it asserts nothing about how long that took.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last state: %s)", what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     bus.Config
		wantErr string
	}{
		{name: "zero value means defaults", cfg: bus.Config{}},
		{name: "explicit values", cfg: bus.Config{URL: "nats://n:4222", Name: "ingest", ConnectTimeout: time.Second, MaxBatchSize: 500}},
		{name: "negative connect timeout", cfg: bus.Config{ConnectTimeout: -1}, wantErr: "ConnectTimeout"},
		{name: "negative publish timeout", cfg: bus.Config{PublishTimeout: -1}, wantErr: "PublishTimeout"},
		{name: "negative batch size", cfg: bus.Config{MaxBatchSize: -1}, wantErr: "MaxBatchSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestConsumerConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     bus.ConsumerConfig
		wantErr string
	}{
		{name: "minimal", cfg: bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "metrics-facts"}},
		{name: "missing stream", cfg: bus.ConsumerConfig{Durable: "x"}, wantErr: "Stream"},
		{name: "missing durable", cfg: bus.ConsumerConfig{Stream: bus.EventsStream}, wantErr: "Durable"},
		{name: "negative batch", cfg: bus.ConsumerConfig{Stream: "S", Durable: "d", BatchSize: -1}, wantErr: "BatchSize"},
		{name: "negative max deliver", cfg: bus.ConsumerConfig{Stream: "S", Durable: "d", MaxDeliver: -1}, wantErr: "MaxDeliver"},
		{name: "negative backoff", cfg: bus.ConsumerConfig{Stream: "S", Durable: "d", Backoff: bus.Backoff{Initial: -1}}, wantErr: "Backoff"},
		{name: "exclusive", cfg: bus.ConsumerConfig{Stream: "S", Durable: "d", Exclusive: true, LeaseTTL: 3 * time.Second}},
		{name: "negative lease ttl", cfg: bus.ConsumerConfig{Stream: "S", Durable: "d", Exclusive: true, LeaseTTL: -time.Second}, wantErr: "LeaseTTL must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestStreamOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    bus.StreamOptions
		wantErr bool
	}{
		{name: "defaults", opts: bus.StreamOptions{}},
		{name: "custom", opts: bus.StreamOptions{MaxAge: time.Hour, Duplicates: time.Minute, Replicas: 3}},
		{name: "dedupe window longer than max age", opts: bus.StreamOptions{MaxAge: time.Minute, Duplicates: time.Hour}, wantErr: true},
		{name: "negative max age", opts: bus.StreamOptions{MaxAge: -time.Hour}, wantErr: true},
		{name: "too many replicas", opts: bus.StreamOptions{Replicas: 7}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"event subject has tenant then type", bus.EventSubject("acme", "order.placed"), "retain.events.acme.order.placed"},
		{"signal subject", bus.SignalSubject("acme", "churn.risk_changed"), "retain.signals.acme.churn.risk_changed"},
		{"notification subject", bus.NotificationSubject("acme", "notification.requested"), "retain.notifications.acme.notification.requested"},
		{"delivery subject", bus.DeliverySubject("acme", "notification.sent"), "retain.deliveries.acme.notification.sent"},
		{"type filter spans tenants", bus.EventTypeFilter("ticket.opened"), "retain.events.*.ticket.opened"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	b := bus.Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		delivered uint64
		base      time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{50, time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after delivery %d", tt.delivered), func(t *testing.T) {
			got := b.Delay(tt.delivered)
			lo, hi := time.Duration(float64(tt.base)*0.8), time.Duration(float64(tt.base)*1.2)
			if got < lo || got > hi {
				t.Fatalf("Delay(%d) = %s, want %s +-20%%", tt.delivered, got, tt.base)
			}
		})
	}
}

func TestMigrationsAreEmbedded(t *testing.T) {
	migs, err := bus.Migrations.Migrations()
	if err != nil {
		t.Fatalf("parse migrations: %v", err)
	}
	if len(migs) == 0 || migs[0].Version != 1 || bus.Migrations.Component != "bus" {
		t.Fatalf("unexpected migrations %+v (component %q)", migs, bus.Migrations.Component)
	}
}

func TestMigrateTwiceIsANoop(t *testing.T) {
	pool := setupPG(t)
	if err := pg.Migrate(testCtx(t), pool, nil, bus.Migrations); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
}

func TestConnect(t *testing.T) {
	t.Run("retries until the server is up", func(t *testing.T) {
		srv := testenv.NATS(t)
		srv.Shutdown()
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := bus.Connect(ctx, bus.Config{URL: srv.URL()}, testLogger())
			if err == nil {
				b.Close()
			}
			done <- err
		}()
		srv.Restart(t)
		if err := <-done; err != nil {
			t.Fatalf("connect after server start: %v", err)
		}
	})
	t.Run("gives up when the context ends", func(t *testing.T) {
		srv := testenv.NATS(t)
		srv.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := bus.Connect(ctx, bus.Config{URL: srv.URL()}, testLogger())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("drain closes the connection", func(t *testing.T) {
		srv := testenv.NATS(t)
		b := connect(t, srv.URL(), bus.Config{})
		if err := b.Drain(testCtx(t)); err != nil {
			t.Fatalf("drain: %v", err)
		}
		if !b.NC.IsClosed() {
			t.Fatal("connection still open after Drain")
		}
	})
}

func TestEnsureStreams(t *testing.T) {
	srv := testenv.NATS(t)
	b := connect(t, srv.URL(), bus.Config{})
	ctx := testCtx(t)

	t.Run("declaring twice is fine", func(t *testing.T) {
		for i := range 2 {
			if err := b.EnsureStreams(ctx); err != nil {
				t.Fatalf("ensure streams (round %d): %v", i+1, err)
			}
		}
	})
	t.Run("streams are declared as the architecture says", func(t *testing.T) {
		tests := []struct {
			stream    string
			subject   string
			retention jetstream.RetentionPolicy
		}{
			{bus.EventsStream, "retain.events.>", jetstream.LimitsPolicy},
			{bus.SignalsStream, "retain.signals.>", jetstream.LimitsPolicy},
			{bus.NotificationsStream, "retain.notifications.>", jetstream.WorkQueuePolicy},
			{bus.DeliveriesStream, "retain.deliveries.>", jetstream.LimitsPolicy},
		}
		for _, tt := range tests {
			s, err := b.JS.Stream(ctx, tt.stream)
			if err != nil {
				t.Fatalf("stream %s: %v", tt.stream, err)
			}
			cfg := s.CachedInfo().Config
			if len(cfg.Subjects) != 1 || cfg.Subjects[0] != tt.subject || cfg.Retention != tt.retention ||
				cfg.Storage != jetstream.FileStorage || !cfg.AllowAtomicPublish ||
				cfg.MaxAge != bus.DefaultMaxAge || cfg.Duplicates != bus.DefaultDuplicates {
				t.Fatalf("stream %s declared as %+v", tt.stream, cfg)
			}
		}
	})
	t.Run("larger options raise the stream in place", func(t *testing.T) {
		if err := b.EnsureStreams(ctx, bus.EventsStreamConfig(bus.StreamOptions{MaxAge: 1000 * time.Hour, Duplicates: time.Hour})); err != nil {
			t.Fatalf("update: %v", err)
		}
		s, err := b.JS.Stream(ctx, bus.EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := s.CachedInfo().Config; cfg.MaxAge != 1000*time.Hour || cfg.Duplicates != time.Hour {
			t.Fatalf("stream not updated: MaxAge %s, Duplicates %s", cfg.MaxAge, cfg.Duplicates)
		}
	})
}

func traceIDOf(ctx context.Context) string {
	return trace.SpanContextFromContext(ctx).TraceID().String()
}
