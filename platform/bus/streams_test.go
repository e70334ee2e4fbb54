package bus_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// connectLogged connects a bus (as one service replica would) whose log
// lines end up in the returned buffer.
func connectLogged(t *testing.T, url string) (*bus.Bus, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, bus.Config{URL: url, Name: t.Name()}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(b.Close)
	return b, logs
}

func streamConfig(t *testing.T, b *bus.Bus, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := b.JS.Stream(testCtx(t), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().Config
}

// TestEnsureStreamsNeverShrinks: a missing stream is created with the
// configured settings; a service declaring smaller ones later (one replica
// started with RETAIN_EVENTS_MAX_AGE=2h) neither shrinks nor flaps the
// streams, and says so, naming the stream, the setting, both values and
// how to lower it deliberately; a larger declaration raises them.
func TestEnsureStreamsNeverShrinks(t *testing.T) {
	srv := testenv.NATS(t)
	ctx := testCtx(t)
	first, firstLogs := connectLogged(t, srv.URL())
	configured := bus.StreamOptions{MaxAge: 720 * time.Hour, Duplicates: 10 * time.Minute, Replicas: 1}
	if err := first.EnsureStreams(ctx, bus.DefaultStreams(configured)...); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bus.EventsStream, bus.SignalsStream, bus.NotificationsStream, bus.DeliveriesStream} {
		if cfg := streamConfig(t, first, name); cfg.MaxAge != 720*time.Hour || cfg.Duplicates != 10*time.Minute || cfg.Replicas != 1 {
			t.Errorf("%s created with max age %s, duplicates %s, replicas %d; want the configured 720h, 10m, 1", name, cfg.MaxAge, cfg.Duplicates, cfg.Replicas)
		}
	}
	if !strings.Contains(firstLogs.String(), "stream created") {
		t.Errorf("creation not logged:\n%s", firstLogs)
	}

	// An operator's own limit, which no declaration makes, is kept.
	cfg := streamConfig(t, first, bus.EventsStream)
	cfg.MaxBytes = 1 << 30
	if _, err := first.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	t.Run("a smaller max age does not shrink the streams and is logged", func(t *testing.T) {
		other, logs := connectLogged(t, srv.URL())
		smaller := bus.StreamOptions{MaxAge: 2 * time.Hour, Duplicates: time.Minute, Replicas: 1}
		for range 2 { // a restart says it again, and still changes nothing
			if err := other.EnsureStreams(ctx, bus.DefaultStreams(smaller)...); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range []string{bus.EventsStream, bus.SignalsStream, bus.NotificationsStream, bus.DeliveriesStream} {
			cfg := streamConfig(t, other, name)
			if cfg.MaxAge != 720*time.Hour || cfg.Duplicates != 10*time.Minute {
				t.Errorf("%s now keeps max age %s, duplicates %s; want 720h and 10m kept", name, cfg.MaxAge, cfg.Duplicates)
			}
		}
		if cfg := streamConfig(t, other, bus.EventsStream); cfg.MaxBytes != 1<<30 {
			t.Errorf("the operator's max bytes were reset to %d", cfg.MaxBytes)
		}
		out := logs.String()
		for _, want := range []string{
			"stream=RETAIN_EVENTS setting=max_age stream_value=720h service_value=2h variable=RETAIN_EVENTS_MAX_AGE",
			"stream=RETAIN_DELIVERIES setting=max_age",
			"stream=RETAIN_SIGNALS setting=duplicate_window stream_value=10m service_value=1m variable=RETAIN_DUPLICATE_WINDOW",
			"nats stream edit RETAIN_EVENTS --max-age=2h",
			"config.eventsMaxAge",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "stream updated") {
			t.Errorf("a smaller declaration updated a stream:\n%s", out)
		}
	})

	t.Run("a larger max age raises the streams", func(t *testing.T) {
		other, logs := connectLogged(t, srv.URL())
		if err := other.EnsureStreams(ctx, bus.EventsStreamConfig(bus.StreamOptions{MaxAge: 1000 * time.Hour})); err != nil {
			t.Fatal(err)
		}
		cfg := streamConfig(t, other, bus.EventsStream)
		if cfg.MaxAge != 1000*time.Hour || cfg.MaxBytes != 1<<30 {
			t.Errorf("max age %s, max bytes %d; want 1000h and the operator's 1 GiB", cfg.MaxAge, cfg.MaxBytes)
		}
		if out := logs.String(); !strings.Contains(out, "max_age 720h -> 1000h") {
			t.Errorf("the raise is not logged:\n%s", out)
		}
		// The replica still configured with 720h now leaves it alone.
		if err := first.EnsureStreams(ctx, bus.EventsStreamConfig(configured)); err != nil {
			t.Fatal(err)
		}
		if cfg := streamConfig(t, first, bus.EventsStream); cfg.MaxAge != 1000*time.Hour {
			t.Errorf("max age %s after a 720h replica restarted; want 1000h kept", cfg.MaxAge)
		}
	})

	t.Run("a stream kept for ever is not given an age", func(t *testing.T) {
		cfg := streamConfig(t, first, bus.SignalsStream)
		cfg.MaxAge = 0
		if _, err := first.JS.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if err := first.EnsureStreams(ctx, bus.SignalsStreamConfig(configured)); err != nil {
			t.Fatal(err)
		}
		if cfg := streamConfig(t, first, bus.SignalsStream); cfg.MaxAge != 0 {
			t.Errorf("max age %s; want 0 (unlimited) kept", cfg.MaxAge)
		}
	})
}

// TestEnsureStreamsUpdatesTheDeclaration: what the code declares (here the
// description and atomic publish) is still brought up to date in place.
func TestEnsureStreamsUpdatesTheDeclaration(t *testing.T) {
	srv := testenv.NATS(t)
	ctx := testCtx(t)
	b, _ := connectLogged(t, srv.URL())
	old := bus.DeliveriesStreamConfig(bus.StreamOptions{})
	old.Description, old.AllowAtomicPublish = "old", false
	if _, err := b.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureStreams(ctx, bus.DeliveriesStreamConfig(bus.StreamOptions{})); err != nil {
		t.Fatal(err)
	}
	want := bus.DeliveriesStreamConfig(bus.StreamOptions{})
	if cfg := streamConfig(t, b, bus.DeliveriesStream); cfg.Description != want.Description || !cfg.AllowAtomicPublish {
		t.Errorf("stream not brought up to date: %+v", cfg)
	}
}

func TestStreamOptionsMessages(t *testing.T) {
	err := bus.StreamOptions{MaxAge: -time.Hour, Duplicates: -time.Second, Replicas: 9}.Validate()
	for _, want := range []string{
		"RETAIN_EVENTS_MAX_AGE (-events-max-age): must not be negative, got -1h0m0s",
		"RETAIN_DUPLICATE_WINDOW (-duplicate-window): must not be negative",
		"RETAIN_STREAM_REPLICAS (-stream-replicas): must be 1-5, got 9",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v; want %q", err, want)
		}
	}
	err = bus.StreamOptions{MaxAge: 5 * time.Minute}.Validate()
	if err == nil || !strings.Contains(err.Error(), "RETAIN_DUPLICATE_WINDOW (-duplicate-window): 10m exceeds RETAIN_EVENTS_MAX_AGE 5m") {
		t.Errorf("a default window longer than the max age: %v", err)
	}
}
