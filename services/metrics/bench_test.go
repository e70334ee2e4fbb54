package metrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/simulate"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/metrics/internal/consumer"
	"github.com/retainhq/retain/services/metrics/internal/retention"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// benchShop is the simulated shop of the query benchmark: customers
// acquired over two years (2024-2025) who buy about ten times each
// (RETAIN_BENCH_CUSTOMERS=1000000 gives ~10M orders).
func benchShop(customers int) simulate.Config {
	cfg := simulate.HighVolumeConfig(customers)
	cfg.Days = 730
	cfg.Start = day("2024-01-01")
	cfg.RateScale = 5.2
	cfg.Tenant = "bench"
	return cfg
}

// rowFeed streams rows to a COPY in slices, so the generator and the COPY
// run side by side.
type rowFeed struct {
	ch  chan [][]any
	cur [][]any
	buf [][]any
}

func newRowFeed() *rowFeed { return &rowFeed{ch: make(chan [][]any, 16)} }

func (f *rowFeed) next() ([]any, error) {
	for len(f.cur) == 0 {
		batch, ok := <-f.ch
		if !ok {
			return nil, nil
		}
		f.cur = batch
	}
	r := f.cur[0]
	f.cur = f.cur[1:]
	return r, nil
}

func (f *rowFeed) add(ctx context.Context, row ...any) error {
	f.buf = append(f.buf, row)
	if len(f.buf) < 2000 {
		return nil
	}
	return f.flush(ctx)
}

func (f *rowFeed) flush(ctx context.Context) error {
	select {
	case f.ch <- f.buf:
		f.buf = nil
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loadShop streams the simulated shop straight into the fact tables with
// COPY (customer numbers handed out in order of first order, as the
// consumer does on a time-ordered stream), then builds the aggregates with
// store.BuildAggregates, the builder the tests check against the consumer.
// It returns the number of orders.
func loadShop(b *testing.B, pool *pgxpool.Pool, cfg simulate.Config) (orders int) {
	b.Helper()
	tenant := cfg.Tenant
	shop, err := simulate.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type table struct {
		name    string
		columns []string
		feed    *rowFeed
	}
	tables := []table{
		{"orders", []string{"tenant", "order_id", "customer_id", "cseq", "placed_at", "total_minor", "currency", "refunded_minor"}, newRowFeed()},
		{"customers", []string{"tenant", "customer_id", "cseq"}, newRowFeed()},
		{"refunds", []string{"tenant", "refund_id", "order_id", "amount_minor"}, newRowFeed()},
		{"survey_answers", []string{"tenant", "answer_id", "customer_id", "answered_at", "kind", "score"}, newRowFeed()},
	}
	errs := make(chan error, len(tables)+1)
	for _, t := range tables {
		go func() {
			_, err := pool.CopyFrom(ctx, pgx.Identifier{t.name}, t.columns, pgx.CopyFromFunc(t.feed.next))
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	go func() {
		cseqs := map[string]int32{}
		err := shop.Events(func(ev *eventsv1.Event) error {
			at := ev.GetOccurredAt().AsTime()
			switch p := ev.GetPayload().(type) {
			case *eventsv1.Event_OrderPlaced:
				o := p.OrderPlaced
				cseq, ok := cseqs[o.GetCustomerId()]
				if !ok {
					cseq = int32(len(cseqs))
					cseqs[o.GetCustomerId()] = cseq
					if err := tables[1].feed.add(ctx, tenant, o.GetCustomerId(), cseq); err != nil {
						return err
					}
				}
				orders++
				return tables[0].feed.add(ctx, tenant, o.GetOrderId(), o.GetCustomerId(), cseq, at, o.GetTotal().GetAmountMinor(), o.GetTotal().GetCurrency(), int64(0))
			case *eventsv1.Event_OrderRefunded:
				r := p.OrderRefunded
				return tables[2].feed.add(ctx, tenant, r.GetRefundId(), r.GetOrderId(), r.GetAmount().GetAmountMinor())
			case *eventsv1.Event_SurveyAnswered:
				kind := int16(retention.SurveyNPS)
				if p.SurveyAnswered.GetKind() == eventsv1.SurveyKind_SURVEY_KIND_CSAT {
					kind = int16(retention.SurveyCSAT)
				}
				return tables[3].feed.add(ctx, tenant, ev.GetId(), p.SurveyAnswered.GetCustomerId(), at, kind, int16(p.SurveyAnswered.GetScore()))
			}
			return nil
		})
		for _, t := range tables {
			if err == nil {
				err = t.feed.flush(ctx)
			}
			close(t.feed.ch)
		}
		errs <- err
	}()
	for range len(tables) + 1 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	for _, sql := range []string{
		`UPDATE orders o SET refunded_minor = r.sum FROM (
			SELECT order_id, sum(amount_minor) AS sum FROM refunds WHERE tenant = $1 GROUP BY order_id) r
		 WHERE o.tenant = $1 AND o.order_id = r.order_id`,
		`INSERT INTO tenant_currencies SELECT DISTINCT tenant, currency FROM orders WHERE tenant = $1`,
	} {
		if _, err := pool.Exec(ctx, sql, tenant); err != nil {
			b.Fatal(err)
		}
	}
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error { return store.BuildAggregates(ctx, tx, tenant) }); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return orders
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

// rawLatencies runs f on the first RETAIN_BENCH_RAW_RUNS iterations
// (default 5: a raw query over 10M orders takes seconds) and reports p50 and
// p99 (the slowest run when there are fewer than 100).
func rawLatencies(b *testing.B, f func() error) (p50, p99 float64) {
	b.Helper()
	runs := testenv.BenchInt("RETAIN_BENCH_RAW_RUNS", 5)
	ds := make([]time.Duration, 0, runs)
	for b.Loop() {
		if len(ds) == runs {
			continue
		}
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
	b.ReportMetric(float64(len(ds)), "runs")
	b.ReportMetric(0, "ns/op")
	return p50, p99
}

// heapAndRSS is the live heap after a collection and the process's
// resident set, in MiB.
func heapAndRSS() (heap, rss float64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	heap = float64(m.HeapAlloc) / (1 << 20)
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if kb, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB"))); err == nil {
					rss = float64(n) / 1024
				}
			}
		}
	}
	return heap, rss
}

// BenchmarkQueries measures the query paths over a simulated shop
// (RETAIN_BENCH_CUSTOMERS customers, default 100k; 1M gives ~10M orders over
// 2024-2025) loaded with COPY and aggregated by store.BuildAggregates, each
// next to plain SQL over the raw orders computing the same figure in the
// same run. The store's answers are checked against the raw SQL first. The
// store's figures are warm (the day bitmaps cached in process, revalidated
// by one read per query); the cold first query is logged with the cache's
// memory. Run with -benchtime 30x:
//
//	cd services/metrics && go test -run '^$' -bench Queries -benchtime 30x .
//	RETAIN_BENCH_CUSTOMERS=1000000 go test -run '^$' -bench Queries -benchtime 30x -timeout 60m .
func BenchmarkQueries(b *testing.B) {
	pool := testenv.MigratedPool(b, store.Migrations)
	cfg := benchShop(testenv.BenchInt("RETAIN_BENCH_CUSTOMERS", 100_000))
	loadStart := time.Now()
	orders := loadShop(b, pool, cfg)
	loaded := time.Since(loadStart)
	heap0, _ := heapAndRSS()
	st := store.New(pool)
	ctx := context.Background()
	q3 := mustPeriod(day("2025-07-01"), day("2025-10-01"))
	sep := mustPeriod(day("2025-09-01"), day("2025-10-01"))
	w90, w30 := retention.WindowDays(90), retention.WindowDays(30)
	first, last := retention.MonthFor(2024, time.January), retention.MonthFor(2025, time.December)

	// The same figures by plain SQL over the orders alone (no customers
	// table, no aggregates), written to use the orders' indexes.
	rawRetention := func(p retention.Period, w retention.Window) (retention.RetentionCounts, error) {
		var c retention.RetentionCounts
		err := pool.QueryRow(ctx, `
			WITH s AS (SELECT DISTINCT customer_id FROM orders WHERE tenant = $1 AND placed_at >= $2 AND placed_at < $3),
			e AS (SELECT DISTINCT customer_id FROM orders WHERE tenant = $1 AND placed_at >= $4 AND placed_at < $5),
			n AS (SELECT DISTINCT o.customer_id FROM orders o
			      WHERE o.tenant = $1 AND o.placed_at >= $3 AND o.placed_at < $5
			        AND NOT EXISTS (SELECT 1 FROM orders p WHERE p.tenant = $1 AND p.cseq = o.cseq AND p.placed_at < $3)),
			joint AS (
				SELECT s.customer_id IS NOT NULL AS in_s, e.customer_id IS NOT NULL AS in_e, n.customer_id IS NOT NULL AS is_new
				FROM s FULL JOIN e ON e.customer_id = s.customer_id
				LEFT JOIN n ON n.customer_id = e.customer_id)
			SELECT count(*) FILTER (WHERE in_s), count(*) FILTER (WHERE in_e), (SELECT count(*) FROM n),
			       count(*) FILTER (WHERE in_s AND in_e), count(*) FILTER (WHERE in_s AND NOT in_e),
			       count(*) FILTER (WHERE in_e AND NOT in_s AND NOT is_new), count(*) FILTER (WHERE in_e AND NOT in_s AND is_new)
			FROM joint`,
			"bench", p.From.Add(-w.Duration()), p.From, p.To.Add(-w.Duration()), p.To,
		).Scan(&c.Start, &c.End, &c.New, &c.Retained, &c.Churned, &c.Reactivated, &c.NewActiveAtEnd)
		return c, err
	}
	rawCohorts := func() ([]retention.CohortCell, error) {
		rows, err := pool.Query(ctx, `
			WITH firsts AS (SELECT customer_id, min(placed_at) AS f FROM orders WHERE tenant = $1 GROUP BY customer_id)
			SELECT c.cohort, c.month, c.active, c.net FROM (
				SELECT date_trunc('month', f.f AT TIME ZONE 'UTC') AS cm, date_trunc('month', o.placed_at AT TIME ZONE 'UTC') AS om,
				       count(DISTINCT o.customer_id) AS active, sum(greatest(o.total_minor - o.refunded_minor, 0))::bigint AS net
				FROM firsts f JOIN orders o ON o.tenant = $1 AND o.customer_id = f.customer_id
				WHERE f.f >= $2 AND f.f < $3 AND o.placed_at < $3
				GROUP BY 1, 2) x
			CROSS JOIN LATERAL (SELECT (extract(year FROM x.cm) * 12 + extract(month FROM x.cm) - 1)::int4 AS cohort,
			                           (extract(year FROM x.om) * 12 + extract(month FROM x.om) - 1)::int4 AS month,
			                           x.active, x.net) c
			ORDER BY 1, 2`, "bench", first.Start(), (last + 1).Start())
		if err != nil {
			return nil, err
		}
		var cell retention.CohortCell
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (retention.CohortCell, error) {
			err := r.Scan(&cell.Cohort, &cell.Month, &cell.Active, &cell.NetMinor)
			return cell, err
		})
	}
	rawSales := func(p retention.Period) (retention.Sales, error) {
		var v retention.Sales
		err := pool.QueryRow(ctx, `
			SELECT count(*), count(DISTINCT customer_id), coalesce(sum(total_minor), 0)::bigint,
			       coalesce(sum(least(refunded_minor, total_minor)), 0)::bigint,
			       coalesce(sum(greatest(total_minor - refunded_minor, 0)), 0)::bigint
			FROM orders WHERE tenant = $1 AND placed_at >= $2 AND placed_at < $3 AND currency = 'EUR'`,
			"bench", p.From, p.To).Scan(&v.Orders, &v.Customers, &v.GrossMinor, &v.RefundedMinor, &v.NetMinor)
		return v, err
	}
	cohorts := func() ([]retention.CohortCell, error) {
		cells, _, err := st.CohortCells(ctx, "bench", first, last, (last + 1).Start(), "EUR")
		if err == nil {
			_, err = retention.AssembleCohorts(first, last, cells)
		}
		return cells, err
	}

	// Both sides must agree before their speed means anything. The first
	// store query fills the cache.
	coldStart := time.Now()
	if _, err := st.Retention(ctx, "bench", q3, w90); err != nil {
		b.Fatal(err)
	}
	cold := time.Since(coldStart)
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
	cells, err := cohorts()
	if err != nil {
		b.Fatal(err)
	}
	if raw, err := rawCohorts(); err != nil || fmt.Sprint(raw) != fmt.Sprint(cells) {
		b.Fatalf("cohorts: store %d cells, raw SQL %d (%v)", len(cells), len(raw), err)
	}
	if got, _, err := st.Sales(ctx, "bench", q3, "EUR"); err != nil {
		b.Fatal(err)
	} else if raw, err := rawSales(q3); err != nil || got != raw {
		b.Fatalf("sales: store %+v, raw SQL %+v (%v)", got, raw, err)
	}
	if _, _, err := st.Repeat(ctx, "bench", q3); err != nil {
		b.Fatal(err)
	}
	heap1, rss1 := heapAndRSS()
	// The set-up as figures: the load, the cold first query (reads and
	// decodes the day bitmaps, builds the rollups) and the memory the cache
	// holds once every query above ran.
	b.Run("setup", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(float64(cfg.Customers), "customers")
		b.ReportMetric(float64(orders), "orders")
		b.ReportMetric(loaded.Seconds(), "load-s")
		b.ReportMetric(float64(cold.Microseconds())/1000, "cold-query-ms")
		b.ReportMetric(heap1-heap0, "cache-heap-MiB")
		b.ReportMetric(rss1, "rss-MiB")
		b.ReportMetric(0, "ns/op")
	})

	for _, q := range []struct {
		name  string
		store func() error
		raw   func() error
	}{
		{"retention/quarter-W90",
			func() error { _, err := st.Retention(ctx, "bench", q3, w90); return err },
			func() error { _, err := rawRetention(q3, w90); return err }},
		{"churn/month-W30",
			func() error { _, err := st.Retention(ctx, "bench", sep, w30); return err },
			func() error { _, err := rawRetention(sep, w30); return err }},
		{"cohorts/24-months",
			func() error { _, err := cohorts(); return err },
			func() error { _, err := rawCohorts(); return err }},
		{"sales/quarter",
			func() error { _, _, err := st.Sales(ctx, "bench", q3, "EUR"); return err },
			func() error { _, err := rawSales(q3); return err }},
		{"repeat/quarter",
			func() error { _, _, err := st.Repeat(ctx, "bench", q3); return err }, nil},
		{"nps/quarter",
			func() error { _, err := st.Surveys(ctx, "bench", q3); return err }, nil},
		{"top20/quarter (orders, not aggregated)",
			func() error {
				ranked, _, err := st.RevenueByCustomer(ctx, "bench", q3, "EUR")
				if err == nil {
					_, err = retention.Top(ranked, 20)
				}
				return err
			}, nil},
	} {
		var p99 float64
		b.Run(q.name, func(b *testing.B) { _, p99 = latencies(b, q.store) })
		if q.raw != nil {
			b.Run("raw-sql/"+q.name, func(b *testing.B) {
				_, rawP99 := rawLatencies(b, q.raw)
				if p99 > 0 {
					b.ReportMetric(rawP99/p99, "x-store-p99")
				}
			})
		}
	}
}

// BenchmarkConsumer measures order.placed events/s from RETAIN_EVENTS into
// the projections and aggregates (the service's handler in the platform
// runner, batches of RETAIN_BENCH_BATCH (default 500), one worker) next to
// the raw fetch -> transaction (inbox + multi-row insert of the ids) -> ack
// rate of the same runner over as many events, timed right before and
// right after it (raw-events/s is the mean: on a shared machine the rate
// of one moment is not the rate of the next). One op is one event. Orders
// come from one customer per ten orders over two years, in two orders: by
// time, as a live shop sends them (a batch touches a day or two), and
// shuffled (a batch touches hundreds of days: the worst case for the day
// aggregates, as in a replay of an unordered import).
//
// RETAIN_BENCH_TENANTS=N (default 1) spreads the events round-robin over N
// fresh shops (bench<round>-shop000, ...; one customer per ten orders in
// each), so that a batch holds about min(500, N) shops. With N > 1 each
// backlog (raw before, the handler's, raw after) is published alone on a
// purged stream right before it is consumed, unfiltered, as the service's
// consumer reads the stream (decision 0013): nats-server serves a filter
// that must match across many subjects far slower, even a wildcard (with
// 500 shops and three event types the raw runner read 11-15k msgs/s
// through one, about half its unfiltered rate). With one shop the three
// are published first and filtered by subject, as they always were.
//
// RETAIN_BENCH_MIX=1 (default 0: orders only) mixes refunds and survey
// answers into every backlog: of the events of a shop, 80% order.placed,
// 10% order.refunded naming an order of the same shop drawn from the whole
// backlog (about half arrive before their order, some name an order that
// never comes, a few orders are refunded twice) and 10% survey.answered
// (NPS, a customer of the shop). Events are still ops: events/s counts all
// three kinds.
//
//	cd services/metrics && go test -run '^$' -bench Consumer -benchtime 200000x .
//	RETAIN_BENCH_TENANTS=500 go test -run '^$' -bench Consumer -benchtime 200000x .
//	RETAIN_BENCH_MIX=1 RETAIN_BENCH_TENANTS=500 go test -run '^$' -bench Consumer -benchtime 50000x .
func BenchmarkConsumer(b *testing.B) {
	ns := testenv.NATS(b)
	pool := testenv.MigratedPool(b, store.Migrations)
	ctx := context.Background()
	bb := testenv.Bus(b, bus.Config{URL: ns.URL(), Name: "bench"})
	st := store.New(pool)
	var round atomic.Int64
	tenants := testenv.BenchInt("RETAIN_BENCH_TENANTS", 1)
	mix := testenv.BenchInt("RETAIN_BENCH_MIX", 0) != 0

	// backlog is a round's events on the stream: the name of its consumer
	// and the subjects that select them.
	type backlog struct {
		name    string
		filters []string
	}

	// publish puts n order.placed events of fresh tenants on the stream:
	// one customer per ten orders of a tenant, spread over two years, in
	// time order or not (with mix, refunds and answers among them).
	publish := func(b *testing.B, n int, inTimeOrder bool) backlog {
		name := fmt.Sprintf("bench%d", round.Add(1))
		shops := []string{name}
		// One filter subject (several, even three wildcards, are served
		// far slower): with mix, all the events of the round's tenant.
		typ := "order.placed"
		if mix {
			typ = ">"
		}
		filters := []string{bus.EventSubject(name, typ)}
		if tenants > 1 {
			shops = make([]string, tenants)
			for i := range shops {
				shops[i] = fmt.Sprintf("%s-shop%03d", name, i)
			}
			filters = nil
			s, err := bb.JS.Stream(ctx, bus.EventsStream)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Purge(ctx); err != nil {
				b.Fatal(err)
			}
		}
		r := rand.New(rand.NewPCG(uint64(n), 1))
		start := day("2024-01-01")
		ats := make([]time.Time, n)
		for i := range ats {
			ats[i] = start.Add(time.Duration(r.Int64N(int64(730 * 24 * time.Hour)))).Truncate(time.Second)
		}
		if inTimeOrder {
			slices.SortFunc(ats, time.Time.Compare)
		}
		msgs := make([]bus.Message, 0, 1000)
		flush := func() {
			if err := bb.PublishAtomic(ctx, msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
		// With mix, event i is an order (80%), an answer (10%) or a refund
		// (10%) naming the order of a random index of the same shop (a
		// refund's or an answer's index: an order that never comes).
		perShop := max(1, n/len(shops))
		for i := range n {
			tenant := shops[i%len(shops)]
			id := "o" + strconv.Itoa(i)
			customer := fmt.Sprintf("c%d", r.IntN(max(1, n/(10*len(shops)))))
			ev, typ := orderEvent(id, id, customer, ats[i], int64(500+r.IntN(20000)), "EUR"), consumer.TypeOrderPlaced
			if mix {
				switch k := r.IntN(10); {
				case k == 0:
					j := i%len(shops) + len(shops)*r.IntN(perShop)
					id = "r" + strconv.Itoa(i)
					ev, typ = refundEvent(id, id, "o"+strconv.Itoa(min(j, n-1)), customer, ats[i], int64(100+r.IntN(3000))), consumer.TypeOrderRefunded
				case k == 1:
					id = "a" + strconv.Itoa(i)
					ev, typ = surveyEvent(id, customer, ats[i], eventsv1.SurveyKind_SURVEY_KIND_NPS, int32(r.IntN(11))), consumer.TypeSurveyAnswered
				}
			}
			ev.TenantId, ev.Type = tenant, typ
			data, err := proto.Marshal(ev)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, bus.Message{Subject: bus.EventSubject(tenant, typ), ID: tenant + "/" + id, Type: typ, Data: data})
			if len(msgs) == 1000 {
				flush()
			}
		}
		if len(msgs) > 0 {
			flush()
		}
		return backlog{name, filters}
	}

	config := func(durable string, filters []string) bus.ConsumerConfig {
		return bus.ConsumerConfig{
			Stream: bus.EventsStream, Durable: durable, FilterSubjects: filters,
			BatchSize: benchBatch(), Concurrency: 1,
		}
	}
	raw := testenv.RawStore(b, pool)
	for _, order := range []struct {
		name        string
		inTimeOrder bool
	}{{"time-ordered", true}, {"shuffled", false}} {
		b.Run(order.name, func(b *testing.B) {
			// The backlogs of the raw runner before, the handler and the
			// raw runner after.
			inTimeOrder := [3]bool{true, order.inTimeOrder, true}
			var backlogs [3]backlog
			if tenants == 1 {
				for _, i := range []int{1, 0, 2} {
					backlogs[i] = publish(b, b.N, inTimeOrder[i])
				}
			}
			next := func(i int) backlog {
				if backlogs[i].name == "" {
					backlogs[i] = publish(b, b.N, inTimeOrder[i])
				}
				return backlogs[i]
			}
			var handleTime atomic.Int64
			var batches atomic.Int64
			handle := consumer.Handler(st, slog.New(slog.DiscardHandler))
			rawBefore := next(0)
			before := testenv.ConsumerTime(b, bb, pool, config("raw"+rawBefore.name, rawBefore.filters), raw, b.N)
			events := next(1)
			testenv.TimeConsumer(b, bb, pool, config(consumer.Durable+events.name, events.filters), func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
				t0 := time.Now()
				err := handle(ctx, tx, ds)
				handleTime.Add(int64(time.Since(t0)))
				batches.Add(1)
				return err
			})
			rawAfter := next(2)
			after := testenv.ConsumerTime(b, bb, pool, config("raw"+rawAfter.name, rawAfter.filters), raw, b.N)
			b.ReportMetric(float64(handleTime.Load())/float64(max(1, batches.Load()))/1e6, "handler-ms/batch")
			rate := float64(b.N) / b.Elapsed().Seconds()
			rawRate := float64(2*b.N) / (before + after).Seconds()
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(rawRate, "raw-events/s")
			b.ReportMetric(100*rate/rawRate, "%-of-raw")
			b.ReportMetric(float64(tenants), "tenants")
			if mix {
				b.ReportMetric(1, "mixed")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchBatch is the consumer batch size of BenchmarkConsumer:
// RETAIN_BENCH_BATCH, default 500 (the service's default).
func benchBatch() int { return testenv.BenchInt("RETAIN_BENCH_BATCH", 500) }
