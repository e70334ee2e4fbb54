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

// TestEnsureStreamsAsPublisher: a service updates only the stream it
// publishes on (decision 0045). One that does not publish on a stream
// creates it when it is missing, but leaves an existing one as it is,
// warning of each setting it would raise or change and naming the stream's
// publisher; the publisher raises and updates its stream.
func TestEnsureStreamsAsPublisher(t *testing.T) {
	srv := testenv.NATS(t)
	ctx := testCtx(t)
	configured := bus.StreamOptions{MaxAge: 720 * time.Hour, Duplicates: 10 * time.Minute, Replicas: 1}
	larger := bus.StreamOptions{MaxAge: 1000 * time.Hour, Duplicates: 20 * time.Minute, Replicas: 1}
	admin, _ := connectLogged(t, srv.URL()) // an operator's nats CLI
	updated := func(log, stream string) bool {
		return strings.Contains(log, `msg="stream updated" component=bus stream=`+stream+" ")
	}

	t.Run("a missing stream is created by any service", func(t *testing.T) {
		metrics, _ := connectLogged(t, srv.URL())
		if err := metrics.EnsureStreamsAs(ctx, "metrics", bus.DefaultStreams(configured)...); err != nil {
			t.Fatal(err)
		}
		for _, sc := range bus.DefaultStreams(configured) {
			if cfg := streamConfig(t, metrics, sc.Name); cfg.MaxAge != 720*time.Hour || cfg.Description != sc.Description {
				t.Errorf("%s created with max age %s, description %q; want it as declared", sc.Name, cfg.MaxAge, cfg.Description)
			}
		}
	})

	// What an earlier release declared, to be brought up to date.
	signals := streamConfig(t, admin, bus.SignalsStream)
	signals.Description = "old"
	if _, err := admin.JS.UpdateStream(ctx, signals); err != nil {
		t.Fatal(err)
	}

	t.Run("a service leaves the streams it does not publish on and warns", func(t *testing.T) {
		campaign, logs := connectLogged(t, srv.URL())
		for range 2 { // a restart says it again, and still changes nothing
			if err := campaign.EnsureStreamsAs(ctx, "campaign", bus.DefaultStreams(larger)...); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range []string{bus.EventsStream, bus.SignalsStream, bus.DeliveriesStream} {
			if cfg := streamConfig(t, campaign, name); cfg.MaxAge != 720*time.Hour || cfg.Duplicates != 10*time.Minute {
				t.Errorf("%s now keeps max age %s, duplicates %s; want 720h and 10m, raised only by its publisher", name, cfg.MaxAge, cfg.Duplicates)
			}
		}
		if cfg := streamConfig(t, campaign, bus.SignalsStream); cfg.Description != "old" {
			t.Errorf("%s's description is now %q; want it left to its publisher", bus.SignalsStream, cfg.Description)
		}
		if cfg := streamConfig(t, campaign, bus.NotificationsStream); cfg.MaxAge != 1000*time.Hour || cfg.Duplicates != 20*time.Minute {
			t.Errorf("campaign's own %s keeps max age %s, duplicates %s; want it raised to 1000h and 20m", bus.NotificationsStream, cfg.MaxAge, cfg.Duplicates)
		}
		out := logs.String()
		for _, want := range []string{
			"stream=RETAIN_EVENTS setting=max_age stream_value=720h service_value=1000h publisher=ingest variable=RETAIN_EVENTS_MAX_AGE",
			"set RETAIN_EVENTS_MAX_AGE=1000h on every service (Helm chart: config.eventsMaxAge); ingest raises the stream when it starts",
			"stream=RETAIN_DELIVERIES setting=duplicate_window stream_value=10m service_value=20m publisher=notifier variable=RETAIN_DUPLICATE_WINDOW",
			`stream=RETAIN_SIGNALS setting=description stream_value="\"old\"" service_value=`,
			"publisher=churnsignal",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
		if !updated(out, bus.NotificationsStream) {
			t.Errorf("campaign's update of %s is not logged:\n%s", bus.NotificationsStream, out)
		}
		for _, name := range []string{bus.EventsStream, bus.SignalsStream, bus.DeliveriesStream} {
			if updated(out, name) {
				t.Errorf("campaign updated %s:\n%s", name, out)
			}
		}
	})

	t.Run("the publisher raises and updates its stream", func(t *testing.T) {
		for name, publisher := range map[string]string{bus.EventsStream: "ingest", bus.SignalsStream: "churnsignal"} {
			b, logs := connectLogged(t, srv.URL())
			if err := b.EnsureStreamsAs(ctx, publisher, bus.DefaultStreams(larger)...); err != nil {
				t.Fatal(err)
			}
			if cfg := streamConfig(t, b, name); cfg.MaxAge != 1000*time.Hour || cfg.Duplicates != 20*time.Minute {
				t.Errorf("%s after %s declared it: max age %s, duplicates %s; want 1000h and 20m", name, publisher, cfg.MaxAge, cfg.Duplicates)
			}
			if out := logs.String(); !updated(out, name) || !strings.Contains(out, "max_age 720h -> 1000h") {
				t.Errorf("%s's update of %s is not logged:\n%s", publisher, name, out)
			}
		}
		want := bus.SignalsStreamConfig(larger)
		if cfg := streamConfig(t, admin, bus.SignalsStream); cfg.Description != want.Description {
			t.Errorf("%s's description %q after churnsignal declared it; want %q", bus.SignalsStream, cfg.Description, want.Description)
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
