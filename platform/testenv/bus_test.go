package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

func TestBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	streams := func(t *testing.T, js jetstream.JetStream) []string {
		t.Helper()
		var names []string
		l := js.StreamNames(ctx)
		for n := range l.Name() {
			names = append(names, n)
		}
		if err := l.Err(); err != nil {
			t.Fatal(err)
		}
		return names
	}

	t.Run("declares the default streams and closes in cleanup", func(t *testing.T) {
		ns := testenv.NATS(t)
		var b *bus.Bus
		t.Run("use", func(t *testing.T) {
			b = testenv.Bus(t, bus.Config{URL: ns.URL(), Name: "testenv-bus"})
			if got := b.NC.Opts.Name; got != "testenv-bus" {
				t.Errorf("connection name %q, want the configured testenv-bus", got)
			}
		})
		if !b.NC.IsClosed() {
			t.Error("the connection is still open after the test's cleanup")
		}
		if got, want := len(streams(t, connectJS(t, ns.URL()))), len(bus.DefaultStreams(bus.StreamOptions{})); got != want {
			t.Fatalf("%d streams declared, want the %d default ones", got, want)
		}
	})

	t.Run("declares only the streams given", func(t *testing.T) {
		ns := testenv.NATS(t)
		cfg := bus.EventsStreamConfig(bus.StreamOptions{})
		cfg.Name, cfg.Subjects = "ONLY", []string{"only.>"}
		b := testenv.Bus(t, bus.Config{URL: ns.URL()}, cfg)
		if got := streams(t, b.JS); len(got) != 1 || got[0] != "ONLY" {
			t.Fatalf("streams %q, want only ONLY", got)
		}
	})
}
