package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
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

// TestExclusiveConsumerRunsInOneProcess runs two processes' runners of one
// Exclusive consumer: only the lease holder applies batches, never both at
// once; a clean stop hands the stream to the other; a holder whose lease
// is taken from it stops, nobody applies anything while another process
// holds it, and a runner takes over once that process's lease lapses.
func TestExclusiveConsumerRunsInOneProcess(t *testing.T) {
	srv, _ := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	pub := connect(t, srv.URL(), bus.Config{})
	cfg := bus.ConsumerConfig{Durable: "ordered", BatchSize: 10, Concurrency: 2, Exclusive: true, LeaseTTL: 1500 * time.Millisecond}

	var (
		mu      sync.Mutex
		applied = map[string]int{} // by runner
		active  [2]atomic.Int32
		overlap atomic.Int32
	)
	handler := func(who int) bus.Handler {
		return func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			active[who].Add(1)
			defer active[who].Add(-1)
			if active[1-who].Load() > 0 {
				overlap.Add(1)
			}
			time.Sleep(2 * time.Millisecond) // room for the other to overlap, were it running
			mu.Lock()
			applied[fmt.Sprint(who)] += len(ds)
			mu.Unlock()
			return applyAll(ctx, tx, ds)
		}
	}
	var readers [2]*sdkmetric.ManualReader
	start := func(who int) (stop func()) {
		readers[who] = sdkmetric.NewManualReader()
		b := connect(t, srv.URL(), bus.Config{}, bus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(readers[who]))))
		return run(t, newConsumer(t, b, pool, cfg, handler(who)))
	}
	held := func(who int) int64 {
		return testenv.CounterSum(t, readers[who], "retain.bus.consumer.lease.held", "consumer="+cfg.Durable)
	}
	counts := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range applied {
			out[k] = v
		}
		return out
	}
	publish := func(prefix string) {
		t.Helper()
		if _, err := pub.PublishDurable(ctx, events(prefix, 100)); err != nil {
			t.Fatal(err)
		}
	}
	waitApplied := func(want int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d applied", want), func() (bool, string) {
			rows, distinct := appliedCounts(t, pool)
			return rows == want && distinct == want, fmt.Sprintf("%d rows, %d distinct", rows, distinct)
		})
	}

	stop0 := start(0)
	stop1 := start(1)
	publish("a")
	waitApplied(100)
	first := counts()
	if len(first) != 1 {
		t.Fatalf("both runners applied batches: %v", first)
	}
	holder := 0
	if first["1"] > 0 {
		holder = 1
	}
	if held(holder) != 1 || held(1-holder) != 0 {
		t.Fatalf("lease.held: %d on the holder, %d on the other; want 1 and 0", held(holder), held(1-holder))
	}

	// A clean stop releases the lease: the other takes the stream over.
	[]func(){stop0, stop1}[holder]()
	publish("b")
	waitApplied(200)
	if got := counts()[fmt.Sprint(1-holder)]; got != 100 {
		t.Fatalf("after the holder stopped the other applied %d, want 100 (%v)", got, counts())
	}

	// Another process takes the lease (as if this one's renewals had not
	// reached the database in time). The holder's workers run on until
	// its next renewal is refused, but every batch they start is fenced
	// out: nothing is applied while the lease is not theirs. Its session
	// is not known (a lease from before holder_pid), so only time ends it.
	start(holder)
	if _, err := pool.Exec(ctx, `UPDATE bus_leases SET holder = 'elsewhere', holder_pid = NULL, expires_at = now() + interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	publish("c")
	time.Sleep(cfg.LeaseTTL)
	if rows, _ := appliedCounts(t, pool); rows != 200 {
		t.Fatalf("%d applied while another process held the lease, want 200", rows)
	}
	if held(0)+held(1) != 0 {
		t.Fatalf("lease.held %d and %d while another process held the lease", held(0), held(1))
	}
	// The other process dies without releasing it: once its lease lapses
	// a runner here takes over.
	if _, err := pool.Exec(ctx, `UPDATE bus_leases SET expires_at = now() + interval '300 milliseconds' WHERE holder = 'elsewhere'`); err != nil {
		t.Fatal(err)
	}
	waitApplied(300)
	if n := overlap.Load(); n != 0 {
		t.Fatalf("the runners applied batches at the same time %d times", n)
	}
}

// TestExclusiveConsumerOutlivesDeadHolder: a holder that died (its
// process killed with the lease an hour from lapsing) ended its database
// session with it, and a runner standing by takes over at its next poll;
// while that session lives, nobody does.
func TestExclusiveConsumerOutlivesDeadHolder(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	cfg := bus.ConsumerConfig{Stream: bus.EventsStream, Durable: "survivor", BatchSize: 10, Exclusive: true, LeaseTTL: time.Hour}
	dead, err := pgx.Connect(ctx, pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dead.Close(ctx) }()
	if _, err := dead.Exec(ctx, `INSERT INTO bus_leases (name, holder, expires_at, holder_pid)
		VALUES ($1, 'killed', now() + interval '1 hour', pg_backend_pid())`, "consumer:"+cfg.Durable); err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	c, err := bus.NewConsumer(b, pool, cfg, applyAll, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	if _, err := b.PublishDurable(ctx, events("d", 10)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // two polls while the holder's session lives
	if rows, _ := appliedCounts(t, pool); rows != 0 {
		t.Fatalf("%d applied while the holder's session lived, want 0", rows)
	}
	// The standby names the process it waits for, not itself: that is
	// where an operator must look.
	if !regexp.MustCompile(`consumer standing by: another process holds its lease" .*holder=killed self=\S+/\d+/`).MatchString(logs.String()) {
		t.Errorf("the standby's log does not name the holder:\n%s", logs.String())
	}
	if err := dead.Close(ctx); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitFor(t, "the takeover", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows == 10, fmt.Sprintf("%d applied", rows)
	})
	t.Logf("taken over %s after the holder's session ended", time.Since(began).Round(time.Millisecond))
}

// TestExclusiveConsumerFencesTakeover: a takeover of an exclusive
// consumer's lease (any update that changes its holder) waits for the
// batch in flight to commit (every batch key-share locks the lease row),
// so the old holder's last batch and the new holder's first never
// overlap; the holder's renewals meanwhile do not wait for the batch, and
// a renewal committed during it leaves the takeover waiting still.
func TestExclusiveConsumerFencesTakeover(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	// Renewals every second; the batch, idle in its transaction while it
	// waits for release, is ended by the server after 3 s (decision 0022).
	cfg := bus.ConsumerConfig{Durable: "fenced", BatchSize: 10, Exclusive: true, LeaseTTL: 3 * time.Second}
	c := newConsumer(t, b, pool, cfg,
		func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			once.Do(func() {
				close(inside)
				<-release
			})
			return applyAll(ctx, tx, ds)
		})
	run(t, c)
	// Registered after run's stop, so it runs first: a failure below must
	// not leave the batch, and the stop, waiting for ever.
	var freed sync.Once
	free := func() { freed.Do(func() { close(release) }) }
	t.Cleanup(free)
	if _, err := b.PublishDurable(ctx, events("f", 10)); err != nil {
		t.Fatal(err)
	}
	<-inside
	expiry := func() (exp time.Time) {
		if err := pool.QueryRow(ctx, `SELECT expires_at FROM bus_leases`).Scan(&exp); err != nil {
			t.Fatal(err)
		}
		return exp
	}
	before := expiry()
	waitFor(t, "a renewal during the batch", func() (bool, string) {
		exp := expiry()
		return exp.After(before), fmt.Sprintf("expires at %s", exp)
	})
	takeover := func(timeout string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+timeout+`'`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE bus_leases SET holder = 'elsewhere', expires_at = now() + interval '1 hour'`)
			return err
		})
	}
	if err := takeover("300ms"); err == nil || !strings.Contains(err.Error(), "55P03") {
		t.Fatalf("a takeover during a batch: %v, want it to wait on the batch (lock timeout, 55P03)", err)
	}
	free()
	if err := takeover("30s"); err != nil {
		t.Fatal(err)
	}
	if rows, _ := appliedCounts(t, pool); rows != 10 {
		t.Fatalf("the batch in flight applied %d rows before the takeover, want 10", rows)
	}
}

// TestExclusiveConsumerKeepsLeaseThroughLongBatches: a holder whose
// workers run long batches back to back, each holding the fence for most
// of a renewal interval and overlapping the others (QA: a 1.41M-event
// import on a loaded machine), keeps its lease, with a standby contending
// all along. Its renewals do not wait for its own batches. Before, a
// renewal (an update of the lease row) queued behind the batches' share
// locks while each new batch joined them without queueing, so the row was
// never free: no renewal was confirmed, and the holder stepped down every
// two thirds of LeaseTTL ("no renewal confirmed") and handed its batches
// back.
func TestExclusiveConsumerKeepsLeaseThroughLongBatches(t *testing.T) {
	srv, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	cfg := bus.ConsumerConfig{
		Stream: bus.EventsStream, Durable: "long-batches", BatchSize: 2, Concurrency: 3,
		Exclusive: true, LeaseTTL: 1500 * time.Millisecond, AckWait: 10 * time.Second,
	}
	var (
		logs         [2]testenv.SyncBuffer // the holder's, the standby's
		inFlight     atomic.Int32
		mostInFlight atomic.Int32
		redelivered  atomic.Int32
	)
	handler := func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := mostInFlight.Load(); n > m && !mostInFlight.CompareAndSwap(m, n); m = mostInFlight.Load() {
		}
		for _, d := range ds {
			if d.NumDelivered > 1 {
				redelivered.Add(1)
			}
		}
		// A slow statement, as a heavy batch of an import runs: the batch
		// holds the fence all the while.
		if _, err := tx.Exec(ctx, `SELECT pg_sleep(0.6)`); err != nil {
			return err
		}
		return applyAll(ctx, tx, ds)
	}
	start := func(who int, b *bus.Bus) {
		c, err := bus.NewConsumer(b, pool, cfg, handler, slog.New(slog.NewTextHandler(&logs[who], nil)))
		if err != nil {
			t.Fatal(err)
		}
		run(t, c)
	}
	start(0, b)
	logs[0].WaitFor(t, "consumer lease taken")
	start(1, connect(t, srv.URL(), bus.Config{}))
	logs[1].WaitFor(t, "consumer standing by")

	// 30 batches of 0.6 s on 3 workers: about 6 s, four LeaseTTLs.
	if _, err := b.PublishDurable(ctx, events("long", 60)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "60 applied", func() (bool, string) {
		rows, _ := appliedCounts(t, pool)
		return rows >= 60, fmt.Sprintf("%d applied", rows)
	})
	settled(t, b, cfg.Durable)
	if rows, distinct := appliedCounts(t, pool); rows != 60 || distinct != 60 {
		t.Fatalf("applied %d rows for %d ids, want 60 for 60", rows, distinct)
	}
	if n := mostInFlight.Load(); n < 2 {
		t.Fatalf("at most %d batch in flight at once: the test needs batches overlapping", n)
	}
	if strings.Contains(logs[0].String(), "lease may have passed") || strings.Contains(logs[1].String(), "consumer lease taken") {
		t.Fatalf("the holder lost its lease during long batches:\nholder:\n%s\nstandby:\n%s", logs[0].String(), logs[1].String())
	}
	if n := redelivered.Load(); n != 0 {
		t.Fatalf("%d messages redelivered: batches were handed back", n)
	}
}
