package metrics_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/metrics/internal/consumer"
	"github.com/retainhq/retain/services/metrics/internal/retention"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// benchEnvInt reads a size knob, e.g. RETAIN_BENCH_CUSTOMERS=1000000.
func benchEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// migratedPool is a fresh metrics database with its schema.
func migratedPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	ctx := context.Background()
	pool, err := pg.Connect(ctx, testenv.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := pg.Migrate(ctx, pool, bus.Migrations, store.Migrations); err != nil {
		b.Fatal(err)
	}
	return pool
}

// loadOrders fills the projections straight with COPY: customers whose first orders spread over two years, about ten orders
// each, with gaps drawn from an exponential.
func loadOrders(b *testing.B, pool *pgxpool.Pool, tenant string, customers int, start time.Time, days int) int {
	b.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(42, 43))
	end := start.AddDate(0, 0, days)
	var rows [][]any
	n := 0
	flush := func() {
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"orders"},
			[]string{"tenant", "order_id", "customer_id", "placed_at", "total_minor", "currency", "refunded_minor"},
			pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		rows = rows[:0]
	}
	for c := range customers {
		customer := fmt.Sprintf("c%07d", c)
		at := start.Add(time.Duration(r.Float64() * float64(days) * float64(24*time.Hour))).Truncate(time.Second)
		for at.Before(end) {
			n++
			refunded := int64(0)
			if r.IntN(20) == 0 {
				refunded = 500
			}
			rows = append(rows, []any{tenant, "o" + strconv.Itoa(n), customer, at, int64(500 + r.IntN(20000)), "EUR", refunded})
			if r.IntN(12) == 0 {
				break
			}
			at = at.Add(time.Duration(r.ExpFloat64() * 30 * float64(24*time.Hour))).Truncate(time.Second)
		}
		if len(rows) >= 50_000 {
			flush()
		}
	}
	flush()
	if _, err := pool.Exec(ctx, `
		INSERT INTO customers (tenant, customer_id, first_order_at)
		SELECT tenant, customer_id, min(placed_at) FROM orders WHERE tenant = $1 GROUP BY tenant, customer_id`, tenant); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO tenant_currencies VALUES ($1, 'EUR')`, tenant); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return n
}

// latencies runs f b.N times and reports p50 and p99 in milliseconds.
func latencies(b *testing.B, f func() error) (p50, p99 float64) {
	b.Helper()
	ds := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
	}
	p50, p99 = q(0.50), q(0.99)
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(0, "ns/op")
	return p50, p99
}

// BenchmarkQueries measures the query paths over projections loaded with
// COPY (RETAIN_BENCH_CUSTOMERS customers, default 100k, ~10 orders each over
// two years), next to plain SQL over the raw orders computing the same
// figure in the same run. Run with -benchtime 30x.
//
//	cd services/metrics && go test -run '^$' -bench Queries -benchtime 30x .
func BenchmarkQueries(b *testing.B) {
	pool := migratedPool(b)
	customers := benchEnvInt("RETAIN_BENCH_CUSTOMERS", 100_000)
	start := day("2024-01-01")
	loadStart := time.Now()
	orders := loadOrders(b, pool, "bench", customers, start, 730)
	b.Logf("loaded %d customers, %d orders in %s", customers, orders, time.Since(loadStart).Round(time.Millisecond))
	st := store.New(pool)
	ctx := context.Background()
	q3 := mustPeriod(day("2025-07-01"), day("2025-10-01"))
	sep := mustPeriod(day("2025-09-01"), day("2025-10-01"))
	w90, w30 := retention.WindowDays(90), retention.WindowDays(30)
	first, last := retention.MonthFor(2024, time.January), retention.MonthFor(2025, time.December)

	// The same figures by plain SQL over orders alone: first orders by
	// aggregating every order of the tenant.
	rawRetention := func(p retention.Period, w retention.Window) (retention.RetentionCounts, error) {
		var c retention.RetentionCounts
		err := pool.QueryRow(ctx, `
			WITH firsts AS (SELECT customer_id, min(placed_at) AS f FROM orders WHERE tenant = $1 GROUP BY customer_id),
			s AS (SELECT DISTINCT customer_id FROM orders WHERE tenant = $1 AND placed_at >= $2 AND placed_at < $3),
			e AS (SELECT DISTINCT customer_id FROM orders WHERE tenant = $1 AND placed_at >= $4 AND placed_at < $5),
			n AS (SELECT customer_id FROM firsts WHERE f >= $3 AND f < $5)
			SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM e), (SELECT count(*) FROM n),
			       (SELECT count(*) FROM s JOIN e USING (customer_id)),
			       (SELECT count(*) FROM s WHERE customer_id NOT IN (SELECT customer_id FROM e)),
			       (SELECT count(*) FROM e WHERE customer_id NOT IN (SELECT customer_id FROM s) AND customer_id NOT IN (SELECT customer_id FROM n)),
			       (SELECT count(*) FROM e JOIN n USING (customer_id))`,
			"bench", p.From.Add(-w.Duration()), p.From, p.To.Add(-w.Duration()), p.To,
		).Scan(&c.Start, &c.End, &c.New, &c.Retained, &c.Churned, &c.Reactivated, &c.NewActiveAtEnd)
		return c, err
	}
	rawCohorts := func() (int, error) {
		rows, err := pool.Query(ctx, `
			WITH firsts AS (SELECT customer_id, min(placed_at) AS f FROM orders WHERE tenant = $1 GROUP BY customer_id)
			SELECT date_trunc('month', f.f AT TIME ZONE 'UTC'), date_trunc('month', o.placed_at AT TIME ZONE 'UTC'),
			       count(DISTINCT o.customer_id), sum(greatest(o.total_minor - o.refunded_minor, 0))
			FROM firsts f JOIN orders o ON o.tenant = $1 AND o.customer_id = f.customer_id
			WHERE f.f >= $2 AND f.f < $3 AND o.placed_at < $3
			GROUP BY 1, 2`, "bench", first.Start(), (last + 1).Start())
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			n++
		}
		return n, rows.Err()
	}

	// Both sides must agree before their speed means anything.
	for _, tc := range []struct {
		p retention.Period
		w retention.Window
	}{{q3, w90}, {sep, w30}} {
		got, err := st.Retention(ctx, "bench", tc.p, tc.w)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := rawRetention(tc.p, tc.w)
		if err != nil {
			b.Fatal(err)
		}
		if got != raw {
			b.Fatalf("retention %v: store %+v, raw SQL %+v", tc.p, got, raw)
		}
		b.Logf("retention %s..%s W%d: %+v", tc.p.From.Format(time.DateOnly), tc.p.To.Format(time.DateOnly), tc.w.Duration()/retention.Day, got)
	}
	cells, err := st.CohortCells(ctx, "bench", first, last, "EUR")
	if err != nil {
		b.Fatal(err)
	}
	if n, err := rawCohorts(); err != nil || n != len(cells) {
		b.Fatalf("cohorts: store %d cells, raw SQL %d (%v)", len(cells), n, err)
	}

	b.Run("retention/quarter-W90", func(b *testing.B) {
		latencies(b, func() error { _, err := st.Retention(ctx, "bench", q3, w90); return err })
	})
	b.Run("raw-sql/retention/quarter-W90", func(b *testing.B) {
		latencies(b, func() error { _, err := rawRetention(q3, w90); return err })
	})
	b.Run("churn/month-W30", func(b *testing.B) {
		latencies(b, func() error { _, err := st.Retention(ctx, "bench", sep, w30); return err })
	})
	b.Run("raw-sql/churn/month-W30", func(b *testing.B) {
		latencies(b, func() error { _, err := rawRetention(sep, w30); return err })
	})
	b.Run("cohorts/24-months", func(b *testing.B) {
		latencies(b, func() error {
			cells, err := st.CohortCells(ctx, "bench", first, last, "EUR")
			if err == nil {
				_, err = retention.AssembleCohorts(first, last, cells)
			}
			return err
		})
	})
	b.Run("raw-sql/cohorts/24-months", func(b *testing.B) {
		latencies(b, func() error { _, err := rawCohorts(); return err })
	})
	b.Run("sales/quarter", func(b *testing.B) {
		latencies(b, func() error { _, err := st.Sales(ctx, "bench", q3, "EUR"); return err })
	})
	b.Run("top20/quarter", func(b *testing.B) {
		latencies(b, func() error {
			ranked, err := st.RevenueByCustomer(ctx, "bench", q3, "EUR")
			if err == nil {
				_, err = retention.Top(ranked, 20)
			}
			return err
		})
	})
}

// BenchmarkConsumer measures order.placed events/s from RETAIN_EVENTS into
// the projections (the service's handler in the platform runner, batches of
// 500, one worker) next to the raw fetch -> transaction (inbox + multi-row
// insert of the ids) -> ack rate of the same runner in the same run. One op
// is one event.
//
//	cd services/metrics && go test -run '^$' -bench Consumer -benchtime 200000x .
func BenchmarkConsumer(b *testing.B) {
	ns := testenv.NATS(b)
	pool := migratedPool(b)
	ctx := context.Background()
	bb, err := bus.Connect(ctx, bus.Config{URL: ns.URL(), Name: "bench"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bb.Close)
	if err := bb.EnsureStreams(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_raw (id text PRIMARY KEY)`); err != nil {
		b.Fatal(err)
	}
	var round atomic.Int64

	// publish puts n order.placed events of a fresh tenant on the stream:
	// one customer per ten orders, spread over two years.
	publish := func(b *testing.B, n int) string {
		tenant := fmt.Sprintf("bench%d", round.Add(1))
		r := rand.New(rand.NewPCG(uint64(n), 1))
		start := day("2024-01-01")
		msgs := make([]bus.Message, 0, 1000)
		flush := func() {
			if err := bb.PublishAtomic(ctx, msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
		for i := range n {
			id := "o" + strconv.Itoa(i)
			ev := orderEvent(id, id, fmt.Sprintf("c%d", r.IntN(max(1, n/10))), start.Add(time.Duration(r.Int64N(int64(730*24*time.Hour)))).Truncate(time.Second), int64(500+r.IntN(20000)), "EUR")
			ev.TenantId, ev.Type = tenant, "order.placed"
			data, err := proto.Marshal(ev)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, bus.Message{Subject: bus.EventSubject(tenant, "order.placed"), ID: tenant + "/" + id, Type: "order.placed", Data: data})
			if len(msgs) == 1000 {
				flush()
			}
		}
		if len(msgs) > 0 {
			flush()
		}
		return tenant
	}

	runUntil := func(b *testing.B, durable, tenant string, h bus.Handler) {
		var applied atomic.Int64
		done := make(chan struct{})
		c, err := bus.NewConsumer(bb, pool, bus.ConsumerConfig{
			Stream: bus.EventsStream, Durable: durable, FilterSubjects: []string{bus.EventSubject(tenant, "order.placed")},
			BatchSize: 500, Concurrency: 1,
		}, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			if err := h(ctx, tx, ds); err != nil {
				return err
			}
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
		rctx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		b.ResetTimer()
		go func() { _ = c.Run(rctx); close(stopped) }()
		<-done
		cancel()
		<-stopped
		b.StopTimer()
	}

	var rawRate float64
	b.Run("raw-runner", func(b *testing.B) {
		tenant := publish(b, b.N)
		runUntil(b, "raw"+tenant, tenant, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			ids := make([]string, len(ds))
			for i, d := range ds {
				ids[i] = d.ID
			}
			_, err := tx.Exec(ctx, `INSERT INTO bench_raw (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, ids)
			return err
		})
		rawRate = float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rawRate, "events/s")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("projections", func(b *testing.B) {
		tenant := publish(b, b.N)
		var handleTime atomic.Int64
		var batches atomic.Int64
		runUntil(b, consumer.Durable, tenant, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
			t0 := time.Now()
			err := consumer.Handle(ctx, tx, ds)
			handleTime.Add(int64(time.Since(t0)))
			batches.Add(1)
			return err
		})
		b.ReportMetric(float64(handleTime.Load())/float64(max(1, batches.Load()))/1e6, "handler-ms/batch")
		rate := float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(rawRate, "raw-events/s")
		if rawRate > 0 {
			b.ReportMetric(100*rate/rawRate, "%-of-raw")
		}
		b.ReportMetric(0, "ns/op")
	})
}
