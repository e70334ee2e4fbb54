package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// benchCustomers is the size of the benchmark shop (RETAIN_BENCH_CUSTOMERS).
func benchCustomers() int { return testenv.BenchInt("RETAIN_BENCH_CUSTOMERS", 100_000) }

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

func benchEngine(tb testing.TB, now *testenv.Clock) (*Engine, *pgxpool.Pool) {
	tb.Helper()
	pool := testenv.MigratedPool(tb, store.Migrations)
	e, err := New(pool, Config{Now: now.Now, Workers: 2}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	return e, pool
}

// BenchmarkRescoreAll measures a full rescoring pass over a tenant of
// RETAIN_BENCH_CUSTOMERS customers (default 100k) COPYed into the
// projection, with the clock one day later on every pass, as a daily
// schedule would see it: scores age, and the pass writes back only the rows
// whose score, band or reasons changed. The fit and the first pass (every
// row written) are timed once, first. Each timed pass starts from a
// vacuumed table, as a pass a day after the previous one does (autovacuum
// has long cleaned up after it); the vacuum is not timed. Two raw figures
// of the same run frame the passes: every range's score rows and features
// read with nothing scored or written (the floor of a pass), and each range
// locked, read and every row rewritten with its own values by the pass's
// UPDATE (a pass that locks and writes everything, as the service did
// before it wrote only changes).
//
//	go test -run '^$' -bench RescoreAll -benchtime 3x ./internal/app
func BenchmarkRescoreAll(b *testing.B) {
	ctx := context.Background()
	clock := testenv.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	e, pool := benchEngine(b, clock)
	n := benchCustomers()
	loadShop(b, pool, "bench", n, clock.Now())
	vacuum := func() {
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE churn_scores`); err != nil {
			b.Fatal(err)
		}
	}

	start := time.Now()
	m, err := e.fit(ctx, "bench", nil, false)
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
	b.Logf("first pass (%d rows written, %d band changes): %s, %.0f customers/s", st.Changed, st.BandChanges, first.Round(time.Millisecond), float64(st.Customers)/first.Seconds())
	vacuum()
	readFloor := rawPass(b, e, "bench", false)

	var took time.Duration
	total, changed := 0, 0
	for b.Loop() {
		b.StopTimer()
		vacuum()
		clock.Advance(24 * time.Hour)
		b.StartTimer()
		start := time.Now()
		st, err := e.RescoreAll(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		total += st.Customers
		changed += st.Changed
	}
	b.StopTimer()
	vacuum()
	rewrite := rawPass(b, e, "bench", true)
	b.Logf("daily passes: %.0f customers/s, %s a pass, %.1f%% of the rows written; raw, same run: read scores + features of every range %s (%.0f customers/s); lock, read and rewrite every row %s (%.0f customers/s)",
		float64(total)/took.Seconds(), (took / time.Duration(total/n)).Round(time.Millisecond), 100*float64(changed)/float64(total),
		readFloor.Round(time.Millisecond), float64(n)/readFloor.Seconds(), rewrite.Round(time.Millisecond), float64(n)/rewrite.Seconds())
	b.ReportMetric(float64(total)/took.Seconds(), "customers/s")
	b.ReportMetric(took.Seconds()/float64(total/n), "s/pass")
	b.ReportMetric(float64(changed)/float64(total), "changed/customer")
	b.ReportMetric(float64(n)/readFloor.Seconds(), "raw-read-customers/s")
	b.ReportMetric(float64(n)/rewrite.Seconds(), "raw-rewrite-customers/s")
}

// rawPass walks tenant's customers as a pass does (same ranges, same
// workers) and scores nothing: it reads each range's score rows and
// features, or with rewrite locks each range in a transaction, reads its
// features and writes every row back unchanged with the pass's UPDATE.
func rawPass(tb testing.TB, e *Engine, tenant string, rewrite bool) time.Duration {
	tb.Helper()
	ctx := context.Background()
	start := time.Now()
	bounds, err := store.Boundaries(ctx, e.pool, tenant, e.cfg.ChunkSize)
	if err != nil {
		tb.Fatal(err)
	}
	ranges := make([]store.Selector, 0, len(bounds)+1)
	after := ""
	for i := range bounds {
		ranges = append(ranges, store.Range(after, &bounds[i]))
		after = bounds[i]
	}
	ranges = append(ranges, store.Range(after, nil))
	var g errgroup.Group
	g.SetLimit(e.cfg.Workers)
	for _, sel := range ranges {
		g.Go(func() error {
			if !rewrite {
				if _, err := store.ScoreRange(ctx, e.pool, tenant, sel); err != nil {
					return err
				}
				_, err := store.LoadFeatures(ctx, e.pool, tenant, sel, e.now())
				return err
			}
			return pg.InTx(ctx, e.pool, func(tx pgx.Tx) error {
				rows, err := store.ScoreRange(ctx, tx, tenant, sel)
				if err != nil {
					return err
				}
				ids := make([]string, len(rows))
				for i, r := range rows {
					ids[i] = r.CustomerID
				}
				if _, err := store.LockScores(ctx, tx, tenant, ids); err != nil {
					return err
				}
				if _, err := store.LoadFeatures(ctx, tx, tenant, sel, e.now()); err != nil {
					return err
				}
				// The reads leave reasons out: rewrite them with what the
				// row holds.
				_, err = tx.Exec(ctx, `
					UPDATE churn_scores s SET score = u.score, score_exact = u.exact, band = u.band, reasons = s.reasons,
						reasons_hash = u.hash, band_changes = u.changes, computed_at = u.at
					FROM unnest($2::text[], $3::smallint[], $4::float8[], $5::smallint[], $6::bigint[], $7::int[], $8::timestamptz[])
						AS u(customer_id, score, exact, band, hash, changes, at)
					WHERE s.tenant_id = $1 AND s.customer_id = u.customer_id`, append([]any{tenant}, columns(rows)...)...)
				return err
			})
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
	return time.Since(start)
}

func columns(rs []store.ScoreRow) []any {
	ids := make([]string, len(rs))
	scores, bands := make([]int16, len(rs)), make([]int16, len(rs))
	exact := make([]float64, len(rs))
	hashes := make([]int64, len(rs))
	changes := make([]int32, len(rs))
	at := make([]time.Time, len(rs))
	for i, r := range rs {
		ids[i], scores[i], bands[i], exact[i], hashes[i], changes[i], at[i] = r.CustomerID, int16(r.Score), int16(r.Band), r.Exact, r.ReasonsHash, int32(r.BandChanges), r.ComputedAt
	}
	return []any{ids, scores, exact, bands, hashes, changes, at}
}
