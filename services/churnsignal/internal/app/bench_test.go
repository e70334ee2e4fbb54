package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// benchCustomers is the size of the benchmark shop (RETAIN_BENCH_CUSTOMERS).
func benchCustomers() int {
	if n, err := strconv.Atoi(os.Getenv("RETAIN_BENCH_CUSTOMERS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// loadShop COPYs a synthetic shop of n customers straight into the
// projection. Purchases follow the BG/NBD story (rates λ ~ Gamma(0.9, 6)
// per week, dropout after each purchase p ~ Beta(1, 3)), first purchases
// spread over 400 days; one customer in five has tickets, one in three an
// NPS answer.
func loadShop(tb testing.TB, pool *pgxpool.Pool, tenant string, n int, now time.Time) (orders int) {
	tb.Helper()
	ctx := context.Background()
	src := rand.NewPCG(7, 11)
	rng := rand.New(src)
	rates := distuv.Gamma{Alpha: 0.9, Beta: 6, Src: src}
	dropout := distuv.Beta{Alpha: 1, Beta: 3, Src: src}
	var ordersRows, ticketRows, answerRows, scoreRows [][]any
	for c := range n {
		cust := fmt.Sprintf("c%07d", c)
		at := now.Add(-time.Duration(1+rng.IntN(400*24)) * time.Hour)
		lambda, p := rates.Rand(), dropout.Rand()
		for i := 0; !at.After(now); i++ {
			ordersRows = append(ordersRows, []any{tenant, fmt.Sprintf("%s-o%d", cust, i), cust, at, int64(1000 + rng.IntN(9000)), "EUR", fmt.Sprintf("%s-o%d", cust, i)})
			if i > 0 && rng.Float64() < p {
				break
			}
			gapDays := rng.ExpFloat64() / lambda * 7
			if gapDays > 1000 {
				break
			}
			at = at.Add(time.Duration(gapDays * 24 * float64(time.Hour)))
		}
		if rng.IntN(5) == 0 {
			for i := range 1 + rng.IntN(3) {
				opened := now.Add(-time.Duration(rng.IntN(120*24)) * time.Hour)
				var resolved any
				if rng.IntN(2) == 0 {
					resolved = opened.Add(48 * time.Hour)
				}
				ticketRows = append(ticketRows, []any{tenant, fmt.Sprintf("%s-t%d", cust, i), cust, opened, int16(1 + rng.IntN(5)), fmt.Sprintf("%s-t%d", cust, i), resolved})
			}
		}
		if rng.IntN(3) == 0 {
			answerRows = append(answerRows, []any{tenant, cust + "-a", cust, "nps", int16(1), int16(rng.IntN(11)), now.Add(-time.Duration(rng.IntN(200*24)) * time.Hour)})
		}
		scoreRows = append(scoreRows, []any{tenant, cust})
	}
	start := time.Now()
	for _, cp := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"churn_orders", []string{"tenant_id", "order_id", "customer_id", "placed_at", "amount_minor", "currency", "event_id"}, ordersRows},
		{"churn_tickets", []string{"tenant_id", "ticket_id", "customer_id", "opened_at", "category", "opened_event_id", "resolved_at"}, ticketRows},
		{"churn_answers", []string{"tenant_id", "answer_id", "customer_id", "survey_id", "kind", "score", "answered_at"}, answerRows},
		{"churn_scores", []string{"tenant_id", "customer_id"}, scoreRows},
	} {
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{cp.table}, cp.cols, pgx.CopyFromRows(cp.rows)); err != nil {
			tb.Fatalf("copy %s: %v", cp.table, err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO churn_tenants (tenant_id) VALUES ($1)`, tenant); err != nil {
		tb.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("copied %d customers, %d orders, %d tickets, %d answers in %s", n, len(ordersRows), len(ticketRows), len(answerRows), time.Since(start).Round(time.Millisecond))
	return len(ordersRows)
}

func benchEngine(tb testing.TB, now *benchClock) (*Engine, *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if err := pg.Migrate(ctx, pool, bus.Migrations, store.Migrations); err != nil {
		tb.Fatal(err)
	}
	return New(pool, Config{Now: now.Now, Workers: 2}, slog.New(slog.NewTextHandler(io.Discard, nil))), pool
}

type benchClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *benchClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *benchClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// BenchmarkRescoreAll measures a full rescoring pass over a tenant of
// RETAIN_BENCH_CUSTOMERS customers (default 100k) COPYed into the
// projection, with the clock one day later on every pass so that scores do
// change (descriptions such as "95 days since the last order" move daily)
// and are written back. The fit is timed once, first.
//
//	go test -run '^$' -bench RescoreAll -benchtime 3x ./internal/app
func BenchmarkRescoreAll(b *testing.B) {
	ctx := context.Background()
	clock := &benchClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e, pool := benchEngine(b, clock)
	n := benchCustomers()
	loadShop(b, pool, "bench", n, clock.Now())

	start := time.Now()
	m, err := e.fit(ctx, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("fit (histories query + BG/NBD) of %d customers: %s", m.Customers, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	st, err := e.RescoreAll(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	b.Logf("first pass (every row written, %d band changes): %s, %.0f customers/s", st.BandChanges, first.Round(time.Millisecond), float64(st.Customers)/first.Seconds())

	b.ResetTimer()
	total, changed := 0, 0
	for b.Loop() {
		clock.add(24 * time.Hour)
		st, err := e.RescoreAll(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		total += st.Customers
		changed += st.Changed
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "customers/s")
	b.ReportMetric(float64(changed)/float64(total), "changed/customer")
}
