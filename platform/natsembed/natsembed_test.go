package natsembed_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/retainhq/retain/platform/natsembed"
)

func start(t *testing.T, o natsembed.EmbeddedNATSOptions) int {
	t.Helper()
	srv, err := natsembed.StartEmbeddedNATS(o)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	if got := srv.JetStreamConfig(); got.SyncAlways != o.SyncAlways || got.StoreDir == "" {
		t.Fatalf("JetStream config %+v, want SyncAlways=%v", got, o.SyncAlways)
	}
	port := natsembed.Port(srv)
	nc, err := nats.Connect("nats://127.0.0.1:" + strconv.Itoa(port))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	if o.MaxPayload != 0 && nc.MaxPayload() != int64(o.MaxPayload) {
		t.Fatalf("MaxPayload = %d, want %d", nc.MaxPayload(), o.MaxPayload)
	}
	return port
}

func TestStartEmbeddedNATS(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) natsembed.EmbeddedNATSOptions
	}{
		{
			name: "random port with fsync on every write",
			opts: func(t *testing.T) natsembed.EmbeddedNATSOptions {
				return natsembed.EmbeddedNATSOptions{Port: -1, StoreDir: t.TempDir(), SyncAlways: true}
			},
		},
		{
			name: "port zero also means random, custom max payload",
			opts: func(t *testing.T) natsembed.EmbeddedNATSOptions {
				return natsembed.EmbeddedNATSOptions{StoreDir: t.TempDir(), MaxPayload: 4 << 20}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if port := start(t, tt.opts(t)); port == 0 || port == 4222 {
				t.Fatalf("port = %d, want a random one", port)
			}
		})
	}

	t.Run("requires a store directory", func(t *testing.T) {
		_, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{Port: -1})
		if err == nil || !strings.Contains(err.Error(), "StoreDir is required") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("refuses a port in use", func(t *testing.T) {
		port := start(t, natsembed.EmbeddedNATSOptions{Port: -1, StoreDir: t.TempDir()})
		_, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{Port: port, StoreDir: t.TempDir(), ReadyTimeout: 500 * time.Millisecond})
		if err == nil {
			t.Fatal("second server on the same port started")
		}
	})
}
