package bus_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// TestHungServerNoticedWithinSeconds: a NATS server that stops answering
// without closing the connection (its process stopped, a network path
// dropping packets) is given up within seconds, so the service reports
// not ready, with a line naming the server and what its silence means;
// nats.go's default pings would take 4-6 minutes. Once the server answers
// again the connection is back.
func TestHungServerNoticedWithinSeconds(t *testing.T) {
	ns := testenv.NATS(t)
	link := testenv.NewHangingLink(t, strings.TrimPrefix(ns.URL(), "nats://"))
	var logs testenv.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := "nats://" + link.Addr()
	b, err := bus.Connect(ctx, bus.Config{URL: url, Name: "hang-test"}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	link.Hang()
	hung := time.Now()
	const bound = 20 * time.Second
	testenv.WaitForUpTo(t, bound, "the connection to the hung server to be given up", func() bool { return !b.NC.IsConnected() })
	t.Logf("a hung server noticed after %s", time.Since(hung).Round(100*time.Millisecond))
	logs.WaitFor(t, "nats disconnected", "nats: stale connection", "server="+url, "hung or paused")

	link.Resume()
	testenv.WaitForUpTo(t, 30*time.Second, "the connection to be back", b.NC.IsConnected)
	logs.WaitFor(t, "nats reconnected")
}
