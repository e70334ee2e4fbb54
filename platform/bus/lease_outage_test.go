package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// TestExclusiveConsumerHoldsBatchesThroughDatabaseOutage: an exclusive
// consumer's lease is in the database that went away, so nobody can take
// it over meanwhile. The holder keeps its batch held as a plain consumer
// does (decision 0018), renews the lease when the database answers and
// applies the batch then; the standby leaves it the time to. Through an
// outage longer than the LeaseTTL, AckWait and MaxDeliver attempts with
// their backoff, every message is delivered once and applied once,
// held_batches shows the wait, and each process logs the outage when it
// starts and ends, not once a retry.
func TestExclusiveConsumerHoldsBatchesThroughDatabaseOutage(t *testing.T) {
	srv, _ := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	reader := sdkmetric.NewManualReader()
	b := connect(t, srv.URL(), bus.Config{}, bus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	cfg := bus.ConsumerConfig{
		Stream: bus.EventsStream, Durable: "exclusive-outage", Exclusive: true, Concurrency: 2,
		LeaseTTL: 1500 * time.Millisecond, MaxDeliver: 2, AckWait: time.Second,
		Backoff: bus.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
	}
	var (
		logs         [2]testenv.SyncBuffer // the holder's, the standby's
		maxDelivered atomic.Uint64
	)
	start := func(who int, b *bus.Bus) {
		c, err := bus.NewConsumer(b, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			for _, d := range ds {
				if d.NumDelivered > maxDelivered.Load() {
					maxDelivered.Store(d.NumDelivered)
				}
			}
			return applyAll(ctx, tx, ds)
		}, slog.New(slog.NewTextHandler(&logs[who], nil)))
		if err != nil {
			t.Fatal(err)
		}
		run(t, c)
	}
	start(0, b)
	if _, err := b.PublishDurable(ctx, events("before", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the holder's first batch", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows == 5, fmt.Sprintf("%d applied", rows)
	})
	start(1, connect(t, srv.URL(), bus.Config{}))
	logs[1].WaitFor(t, "consumer standing by")

	endOutage := testenv.DatabaseOutage(t, pool)
	if _, err := b.PublishDurable(ctx, events("during", 20)); err != nil {
		t.Fatal(err)
	}
	// Four LeaseTTLs, six AckWaits, and the two attempts' backoff a
	// hundred times over.
	var heldSeen int64
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		heldSeen = max(heldSeen, testenv.CounterSum(t, reader, "retain.bus.consumer.held_batches", "consumer="+cfg.Durable))
	}
	endOutage()

	waitFor(t, "25 applied", func() (bool, string) {
		var rows int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM applied`).Scan(&rows); err != nil {
			return false, err.Error()
		}
		return rows >= 25, fmt.Sprintf("%d rows", rows)
	})
	appliedEachOnce(t, b, pool, cfg.Durable, 25, &maxDelivered, "a database outage", "")
	if heldSeen == 0 {
		t.Error("retain.bus.consumer.held_batches stayed 0 through the outage")
	}
	// A line when the lease's outage starts and one per held batch (at
	// most one a worker), not a line a retry: 6 s of retries every half
	// second.
	for who, most := range []int{1 + cfg.Concurrency, 1} {
		if n := strings.Count(logs[who].String(), "level=WARN"); n > most {
			t.Errorf("process %d: %d WARN lines for one outage, want at most %d:\n%s", who, n, most, logs[who].String())
		}
		for _, line := range []string{"its lease may have passed", "batch failed", "lease taken"} {
			if who == 0 && line == "lease taken" {
				continue
			}
			if strings.Contains(logs[who].String(), line) {
				t.Errorf("process %d says %q after an outage:\n%s", who, line, logs[who].String())
			}
		}
	}
	if !strings.Contains(logs[0].String(), "consumer lease: database answers again") {
		t.Errorf("the holder did not log the end of the outage:\n%s", logs[0].String())
	}
}

// TestExclusiveConsumerHandsBackHeldBatchAfterTakeover: a holder cut off
// from its database (a partition: the others still reach it) holds its
// batch, and its session ends with the link, so a standby takes the lease
// over meanwhile. When the link is back the holder does not run the held
// batch: its renewal is refused, and it hands the batch back at once, not
// as a failure. The new holder applies it; with MaxDeliver 1 the handover
// (a delivery JetStream counts) still dead-letters nothing.
func TestExclusiveConsumerHandsBackHeldBatchAfterTakeover(t *testing.T) {
	srv, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	linked, link := poolThrough(t, pool)
	cfg := bus.ConsumerConfig{
		Stream: bus.EventsStream, Durable: "exclusive-takeover", Exclusive: true,
		LeaseTTL: 1500 * time.Millisecond, MaxDeliver: 1, AckWait: time.Second,
		Backoff: bus.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
	}
	var (
		applied   [2]atomic.Int32  // messages applied by each process
		delivered [2]atomic.Uint64 // the most deliveries each saw of a message
		logs      [2]testenv.SyncBuffer
	)
	handler := func(who int) bus.Handler {
		return func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			for _, d := range ds {
				if d.NumDelivered > delivered[who].Load() {
					delivered[who].Store(d.NumDelivered)
				}
			}
			applied[who].Add(int32(len(ds)))
			return applyAll(ctx, tx, ds)
		}
	}
	start := func(who int, b *bus.Bus, pool *pgxpool.Pool) {
		c, err := bus.NewConsumer(b, pool, cfg, handler(who), slog.New(slog.NewTextHandler(&logs[who], nil)))
		if err != nil {
			t.Fatal(err)
		}
		run(t, c)
	}
	// Process 0 reaches the database through the link; it takes the
	// lease before process 1 starts.
	start(0, b, linked)
	if _, err := b.PublishDurable(ctx, events("before", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "process 0 applying", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows == 5, fmt.Sprintf("%d applied", rows)
	})
	settled(t, b, cfg.Durable)
	link.Cut()
	if _, err := b.PublishDurable(ctx, events("during", 10)); err != nil {
		t.Fatal(err)
	}
	logs[0].WaitFor(t, "holding the batch until it answers")
	// Process 0's session ended with the link: process 1 takes over.
	start(1, connect(t, srv.URL(), bus.Config{}), pool)
	waitFor(t, "process 1 taking the lease", func() (bool, string) {
		var holder string
		_ = pool.QueryRow(ctx, `SELECT holder FROM bus_leases`).Scan(&holder)
		return strings.Contains(logs[1].String(), "consumer lease taken"), holder
	})
	time.Sleep(2 * cfg.AckWait) // process 0 keeps its batch in progress: nobody else gets it
	if n := applied[1].Load(); n != 0 {
		t.Fatalf("process 1 applied %d messages process 0 holds\n%s\n%s", n, logs[0].String(), logs[1].String())
	}
	link.Resume()

	waitFor(t, "15 applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows >= 15, fmt.Sprintf("%d rows, %d dead letters", rows, deadLetterCount(t, pool))
	})
	settled(t, b, cfg.Durable)
	if rows, distinct := appliedCounts(t, pool); rows != 15 || distinct != 15 {
		t.Fatalf("applied %d rows for %d ids, want 15 for 15", rows, distinct)
	}
	if n := deadLetterCount(t, pool); n != 0 {
		t.Fatalf("%d dead letters after a handover", n)
	}
	if a0, a1 := applied[0].Load(), applied[1].Load(); a0 != 5 || a1 != 10 {
		t.Fatalf("process 0 applied %d, process 1 %d; want 5 (before the cut) and 10 (the held batch, handed over)", a0, a1)
	}
	// One delivery to the holder that was cut off, one to its successor.
	if d := delivered[1].Load(); d != 2 {
		t.Errorf("the new holder saw delivery %d of the handed back messages, want 2", d)
	}
	if !strings.Contains(logs[0].String(), "batch handed back") || strings.Contains(logs[0].String(), "batch failed") {
		t.Errorf("process 0 did not hand its batch back as such:\n%s", logs[0].String())
	}
}

// poolThrough is a pool of its own reaching the test database through a
// link: cutting the link ends that pool's connections and refuses new
// ones, while the others reach the database as before (a partition, not
// an outage).
func poolThrough(t *testing.T, direct *pgxpool.Pool) (*pgxpool.Pool, *testenv.HangingLink) {
	t.Helper()
	link := testenv.NewHangingLink(t, net.JoinHostPort(direct.Config().ConnConfig.Host, strconv.Itoa(int(direct.Config().ConnConfig.Port))))
	cfg := direct.Config().Copy()
	host, port, _ := net.SplitHostPort(link.Addr())
	p, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.Fallbacks = nil
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, link
}
