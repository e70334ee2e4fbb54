package testenv

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/bus"
)

// TimeConsumer runs a consumer declared by cfg with handler h until b.N
// messages have gone through h, with b's timer running only for that, so
// b.Elapsed() is the time the runner took to fetch, apply and ack them. A
// benchmark times its service's handler and a trivial one (the raw runner)
// the same way, and reports the two rates side by side.
func TimeConsumer(b *testing.B, bb *bus.Bus, pool *pgxpool.Pool, cfg bus.ConsumerConfig, h bus.Handler) {
	b.Helper()
	var applied atomic.Int64
	done := make(chan struct{})
	c, err := bus.NewConsumer(bb, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		if err := h(ctx, tx, ds); err != nil {
			return err
		}
		// Counted just before the commit; the timer stops after Run has
		// committed and acked its in-flight batch below.
		if applied.Add(int64(len(ds))) >= int64(b.N) {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return nil
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	b.ResetTimer()
	go func() { _ = c.Run(ctx); close(stopped) }()
	<-done
	cancel()
	<-stopped
	b.StopTimer()
}
