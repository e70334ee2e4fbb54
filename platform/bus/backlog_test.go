package bus_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// waitGauges waits until the gauges of r (with attrs) hold want.
func waitGauges(t testing.TB, r *sdkmetric.ManualReader, attrs []string, want func(g map[string]float64) bool) {
	t.Helper()
	waitFor(t, "the gauges", func() (bool, string) {
		g := testenv.Gauges(t, r, attrs...)
		return want(g), fmt.Sprint(g)
	})
}

// TestConsumerBacklogGauges: a consumer's gauges show the messages not yet
// delivered, those delivered and not yet acknowledged (a batch in the
// handler), and its dead letters until they are replayed; they go when
// the consumer stops.
func TestConsumerBacklogGauges(t *testing.T) {
	srv, _ := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	reader := sdkmetric.NewManualReader()
	b := connect(t, srv.URL(), bus.Config{}, bus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	var rejecting atomic.Bool
	rejecting.Store(true)
	c := newConsumer(t, b, pool, bus.ConsumerConfig{Durable: "backlog", BatchSize: 10}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		<-gate
		for _, d := range ds {
			if strings.HasPrefix(d.ID, "poison") && rejecting.Load() {
				d.Reject("poison")
			}
		}
		return applyAll(ctx, tx, ds)
	})
	c.SetBacklogRefresh(20 * time.Millisecond)
	if _, err := b.PublishDurable(ctx, append(events("poison", 2), events("e", 28)...)); err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	t.Cleanup(release) // before stop, which waits for the batch
	attrs := []string{"consumer=backlog", "stream=" + bus.EventsStream}

	// A batch of 10 waits in the handler; 20 wait on the server.
	waitGauges(t, reader, attrs, func(g map[string]float64) bool {
		return g["retain.bus.consumer.pending"] == 20 && g["retain.bus.consumer.ack_pending"] == 10 &&
			g["retain.bus.consumer.dead_letters.pending"] == 0
	})
	release()
	waitGauges(t, reader, attrs, func(g map[string]float64) bool {
		return g["retain.bus.consumer.pending"] == 0 && g["retain.bus.consumer.ack_pending"] == 0 &&
			g["retain.bus.consumer.dead_letters.pending"] == 2
	})

	// Replayed after the fix, a dead letter no longer counts.
	rejecting.Store(false)
	dls, err := c.DeadLetters(ctx, bus.DeadLetterQuery{})
	if err != nil || len(dls) != 2 {
		t.Fatalf("dead letters: %d, %v", len(dls), err)
	}
	if err := c.Replay(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	waitGauges(t, reader, attrs, func(g map[string]float64) bool {
		return g["retain.bus.consumer.dead_letters.pending"] == 1
	})

	stop()
	if g := testenv.Gauges(t, reader, attrs...); len(g) != 0 {
		t.Fatalf("a stopped consumer still reports %v", g)
	}
}

// TestOutboxBacklogGauges: a row the relay cannot publish (no stream takes
// its subject) holds its batch back on every pass; the gauges show the
// rows piling up behind it and how long it has waited, where the lag of
// published rows shows nothing. Once it is gone they fall back to 0.
func TestOutboxBacklogGauges(t *testing.T) {
	srv, _ := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	reader := sdkmetric.NewManualReader()
	b := connect(t, srv.URL(), bus.Config{}, bus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	enqueue(t, pool, bus.Message{Subject: "nowhere.acme.stuck", ID: "poison", Type: "stuck", Data: []byte("x")})
	if _, err := pool.Exec(ctx, `UPDATE bus_outbox SET created_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	enqueue(t, pool, signal("s-1"), signal("s-2"))
	r := newRelay(t, b, pool, bus.RelayConfig{PollInterval: 50 * time.Millisecond})
	r.SetBacklogRefresh(20 * time.Millisecond)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	attrs := []string{"database=" + pool.Config().ConnConfig.Database}

	waitGauges(t, reader, attrs, func(g map[string]float64) bool {
		return g["retain.bus.outbox.unpublished"] == 3 && g["retain.bus.outbox.oldest_age"] >= 3600
	})
	if _, err := pool.Exec(ctx, `DELETE FROM bus_outbox WHERE msg_id = 'poison'`); err != nil {
		t.Fatal(err)
	}
	waitGauges(t, reader, attrs, func(g map[string]float64) bool {
		return g["retain.bus.outbox.unpublished"] == 0 && g["retain.bus.outbox.oldest_age"] == 0
	})
	if n := streamMsgs(t, b, bus.SignalsStream); n != 2 {
		t.Fatalf("%d signals published, want 2", n)
	}
}
