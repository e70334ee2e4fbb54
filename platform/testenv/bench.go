package testenv

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

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
	runConsumer(b, bb, pool, cfg, h, b.N, b.ResetTimer, b.StopTimer)
}

// ConsumerTime runs a consumer declared by cfg with handler h until n
// messages have gone through h and returns how long that took: for a raw
// runner timed right before and after a benchmark's own, so that a ratio
// of the two does not hang on one moment of a noisy machine.
func ConsumerTime(tb testing.TB, bb *bus.Bus, pool *pgxpool.Pool, cfg bus.ConsumerConfig, h bus.Handler, n int) time.Duration {
	tb.Helper()
	var start, end time.Time
	runConsumer(tb, bb, pool, cfg, h, n, func() { start = time.Now() }, func() { end = time.Now() })
	return end.Sub(start)
}

// RawStore returns the raw runner's handler for a consumer benchmark: the
// least a consumer that stores what it reads does, one multi-row insert of
// the batch's message ids into bench_raw (created here, emptied for each
// runner). A benchmark times it like its own handler, in the same run, and
// reports its service's rate as a share of this one. Its key is COLLATE
// "C" like every service key (decision 0019), so that "% of raw" compares
// the same btree work on servers of any locale; the table is created anew
// so that one left by an older run, with the default collation, is not
// kept.
func RawStore(tb testing.TB, pool *pgxpool.Pool) bus.Handler {
	tb.Helper()
	if _, err := pool.Exec(context.Background(), `DROP TABLE IF EXISTS bench_raw; CREATE TABLE bench_raw (id text COLLATE "C" PRIMARY KEY)`); err != nil {
		tb.Fatal(err)
	}
	return func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		_, err := tx.Exec(ctx, `INSERT INTO bench_raw (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, ids)
		return err
	}
}

func runConsumer(tb testing.TB, bb *bus.Bus, pool *pgxpool.Pool, cfg bus.ConsumerConfig, h bus.Handler, n int, started, stopped func()) {
	tb.Helper()
	var applied atomic.Int64
	done := make(chan struct{})
	c, err := bus.NewConsumer(bb, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		if err := h(ctx, tx, ds); err != nil {
			return err
		}
		// Counted just before the commit; the clock stops after Run has
		// committed and acked its in-flight batch below.
		if applied.Add(int64(len(ds))) >= int64(n) {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return nil
	}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	started()
	go func() { _ = c.Run(ctx); close(exited) }()
	<-done
	cancel()
	<-exited
	stopped()
}

// BenchInt reads a benchmark's size knob from the environment, e.g.
// RETAIN_BENCH_CUSTOMERS=1000000: a positive integer, else def.
func BenchInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
