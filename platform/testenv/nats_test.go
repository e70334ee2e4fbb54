package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/testenv"
)

func TestNATS(t *testing.T) {
	t.Run("serves JetStream with fsync on every write", func(t *testing.T) {
		ns := testenv.NATS(t)
		if !ns.Server().JetStreamEnabled() {
			t.Fatal("JetStream is not enabled")
		}
		if got := ns.Server().JetStreamConfig(); got == nil || !got.SyncAlways {
			t.Fatalf("JetStream config %+v: want SyncAlways", got)
		}
	})

	t.Run("restart keeps stream data and the URL", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ns := testenv.NATS(t)
		url := ns.URL()

		js := connectJS(t, url)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: "RESTART", Subjects: []string{"restart.>"}, Storage: jetstream.FileStorage,
		}); err != nil {
			t.Fatalf("create stream: %v", err)
		}
		const n = 10
		for i := range n {
			if _, err := js.Publish(ctx, "restart.x", fmt.Appendf(nil, "m%d", i)); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}

		ns.Restart(t)
		if ns.URL() != url {
			t.Fatalf("URL changed across restart: %s -> %s", url, ns.URL())
		}

		js = connectJS(t, ns.URL())
		s, err := js.Stream(ctx, "RESTART")
		if err != nil {
			t.Fatalf("stream after restart: %v", err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatalf("stream info: %v", err)
		}
		if info.State.Msgs != n {
			t.Fatalf("messages after restart = %d, want %d", info.State.Msgs, n)
		}
		msg, err := s.GetMsg(ctx, n)
		if err != nil {
			t.Fatalf("get last message: %v", err)
		}
		if got := string(msg.Data); got != fmt.Sprintf("m%d", n-1) {
			t.Fatalf("last message = %q, want m%d", got, n-1)
		}
	})

	t.Run("shutdown twice is harmless", func(t *testing.T) {
		ns := testenv.NATS(t)
		ns.Shutdown()
		ns.Shutdown()
	})
}

func connectJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}
