package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T) *Store {
	t.Helper()
	return New(testenv.MigratedPool(t, Migrations))
}

func mustDay(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// history is one tenant's facts, every version sent, in sending order.
type history struct {
	orders  []Order
	refunds []retention.Refund
	answers []retention.Answer
}

func (h *history) order(id, customer string, at time.Time, minor int64) {
	h.orders = append(h.orders, Order{Order: retention.Order{ID: id, Customer: retention.CustomerID(customer), At: at, TotalMinor: minor}, Currency: "EUR"})
}

// randomHistory has the awkward cases: instants at any microsecond, re-sent
// orders that move earlier or later (across days and months), to another
// customer or to another total, refunds before their order, re-sent to
// another order, for orders that never come, and re-sent survey answers
// that disagree.
func randomHistory(seed uint64, customers int, start time.Time, days int) history {
	r := rand.New(rand.NewPCG(seed, seed^0xabc))
	var h history
	instant := func(from time.Time, maxDays float64) time.Time {
		return from.Add(time.Duration(r.Float64() * maxDays * float64(retention.Day))).Truncate(Precision)
	}
	end := start.AddDate(0, 0, days)
	n := 0
	for c := range customers {
		customer := fmt.Sprintf("c%03d", c)
		for at := instant(start, float64(days)); at.Before(end); at = instant(at, 40) {
			n++
			id := fmt.Sprintf("o%d", n)
			minor := int64(100 + r.IntN(10000))
			if r.IntN(8) == 0 {
				h.refunds = append(h.refunds, retention.Refund{ID: "r" + id, OrderID: id, AmountMinor: 1 + r.Int64N(minor+200)})
			}
			h.order(id, customer, at, minor)
			switch r.IntN(12) {
			case 0:
				h.order(id, customer, at, minor)
			case 1:
				h.order(id, customer, at.Add(time.Duration(r.IntN(96*60)-48*60)*time.Minute), minor+int64(r.IntN(50)))
			case 2:
				h.order(id, fmt.Sprintf("c%03d", r.IntN(customers)), at, minor)
			case 3:
				h.order(id, customer, at.AddDate(0, -1, 0), minor)
			}
			if r.IntN(4) == 0 {
				kind, score := retention.SurveyNPS, r.IntN(11)
				if r.IntN(3) == 0 {
					kind, score = retention.SurveyCSAT, 1+r.IntN(5)
				}
				a := retention.Answer{ID: "a" + id, Customer: retention.CustomerID(customer), At: instant(at, 5), Kind: kind, Score: score}
				h.answers = append(h.answers, a)
				if r.IntN(5) == 0 {
					a.At, a.Score = instant(start, float64(days)), r.IntN(6)
					h.answers = append(h.answers, a)
				}
			}
			if r.IntN(5) == 0 {
				break
			}
		}
	}
	for i := range 5 {
		h.refunds = append(h.refunds, retention.Refund{ID: fmt.Sprintf("rm%d", i), OrderID: fmt.Sprintf("missing%d", i), AmountMinor: 50})
	}
	// A refund re-sent naming another order.
	if len(h.refunds) > 2 {
		re := h.refunds[0]
		re.OrderID = h.refunds[1].OrderID
		h.refunds = append(h.refunds, re)
	}
	return h
}

// shuffled is the history in another order, every fact sent twice.
func (h history) shuffled(seed uint64) history {
	r := rand.New(rand.NewPCG(seed, 1))
	out := history{
		orders:  append(slices.Clone(h.orders), h.orders...),
		refunds: append(slices.Clone(h.refunds), h.refunds...),
		answers: append(slices.Clone(h.answers), h.answers...),
	}
	r.Shuffle(len(out.orders), func(i, j int) { out.orders[i], out.orders[j] = out.orders[j], out.orders[i] })
	r.Shuffle(len(out.refunds), func(i, j int) { out.refunds[i], out.refunds[j] = out.refunds[j], out.refunds[i] })
	r.Shuffle(len(out.answers), func(i, j int) { out.answers[i], out.answers[j] = out.answers[j], out.answers[i] })
	return out
}

func applyFacts(t *testing.T, s *Store, tenant string, f Facts) {
	t.Helper()
	ctx := context.Background()
	if err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if err := LockTenants(ctx, tx, []string{tenant}); err != nil {
			return err
		}
		_, err := s.Apply(ctx, tx, tenant, f)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// send applies the history in batches of the given size, mixing the kinds
// of facts in each batch.
func send(t *testing.T, s *Store, tenant string, h history, size int) {
	t.Helper()
	for i := 0; ; i++ {
		lo, f := i*size, Facts{}
		if lo >= len(h.orders) && lo >= len(h.refunds) && lo >= len(h.answers) {
			return
		}
		f.Orders = h.orders[min(lo, len(h.orders)):min(lo+size, len(h.orders))]
		f.Refunds = h.refunds[min(lo, len(h.refunds)):min(lo+size, len(h.refunds))]
		f.Answers = h.answers[min(lo, len(h.answers)):min(lo+size, len(h.answers))]
		applyFacts(t, s, tenant, f)
	}
}

// reference holds the domain's reference computations over a history.
type reference struct {
	ledger  retention.Ledger
	acts    []retention.Activity
	answers []retention.Answer
}

func referenceOf(h history) reference {
	orders := make([]retention.Order, len(h.orders))
	for i, o := range h.orders {
		orders[i] = o.Order
		orders[i].At = o.At.Truncate(Precision)
	}
	l := retention.NewLedger(orders, h.refunds)
	return reference{ledger: l, acts: l.Activities(), answers: h.answers}
}

// figureCase is one period and window of the comparisons.
type figureCase struct {
	p retention.Period
	w retention.Window
}

// figureCases are whole months and quarters with whole-day windows, and
// periods starting and ending inside days with windows that are not whole
// days, so that every figure reads partial edge days.
func figureCases(start time.Time, months int) []figureCase {
	var cs []figureCase
	windows := []retention.Window{retention.WindowDays(1), retention.WindowDays(30), retention.WindowDays(90), retention.WindowDays(365),
		retention.Window(36*time.Hour + 17*time.Minute + 3*time.Microsecond), retention.Window(45*retention.Day + 12*time.Hour)}
	for m := 0; m < months; m++ {
		from := start.AddDate(0, m, 0)
		for i, w := range windows {
			cs = append(cs, figureCase{retention.Period{From: from, To: from.AddDate(0, 1+i%3, 0)}, w})
		}
		odd := from.Add(7*time.Hour + 13*time.Minute + 5*time.Microsecond)
		cs = append(cs,
			figureCase{retention.Period{From: odd, To: odd.Add(19*retention.Day + 3*time.Hour)}, windows[m%len(windows)]},
			figureCase{retention.Period{From: odd, To: odd.Add(5 * time.Hour)}, retention.WindowDays(7)},
			figureCase{retention.Period{From: from.Add(-time.Microsecond), To: from.AddDate(0, 0, 1)}, windows[(m+3)%len(windows)]},
		)
	}
	return cs
}

// checkFigures compares every store answer with the reference.
func checkFigures(t *testing.T, s *Store, tenant string, ref reference, cases []figureCase, first, last retention.Month) {
	t.Helper()
	ctx := context.Background()
	bad := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 5 {
			t.Errorf(format, args...)
		}
	}
	for _, c := range cases {
		label := fmt.Sprintf("%s..%s W%s", c.p.From.Format(time.RFC3339Nano), c.p.To.Format(time.RFC3339Nano), time.Duration(c.w))
		got, err := s.Retention(ctx, tenant, c.p, c.w)
		if err != nil {
			t.Fatal(err)
		}
		if want := retention.CountRetention(ref.acts, c.p, c.w); got != want {
			fail("retention %s: got %+v, want %+v", label, got, want)
		}
		in, life, err := s.Repeat(ctx, tenant, c.p)
		if err != nil {
			t.Fatal(err)
		}
		if want := retention.CountRepeat(ref.acts, c.p); in != want {
			fail("repeat %s: got %+v, want %+v", label, in, want)
		}
		if want := retention.CountRepeatLifetime(ref.acts, c.p.To); life != want {
			fail("lifetime repeat %s: got %+v, want %+v", label, life, want)
		}
		sales, _, err := s.Sales(ctx, tenant, c.p, "EUR")
		if err != nil {
			t.Fatal(err)
		}
		if want := retention.SumSales(ref.ledger.Orders, c.p); sales != want {
			fail("sales %s: got %+v, want %+v", label, sales, want)
		}
		surveys, err := s.Surveys(ctx, tenant, c.p)
		if err != nil {
			t.Fatal(err)
		}
		if want := retention.TallySurveys(ref.answers, c.p); surveys != want {
			fail("surveys %s: got %+v, want %+v", label, surveys, want)
		}
	}
	// Cohorts as of the end of last (whole months), and as of instants in
	// last (a query's now, with orders dated after it): a cut inside a
	// day, and one at the month's start. The reference sees only the
	// orders placed before the cut.
	for _, until := range []time.Time{(last + 1).Start(), last.Start().Add(9*retention.Day + 7*time.Hour + 13*time.Minute + 5*time.Microsecond), last.Start()} {
		cells, _, err := s.CohortCells(ctx, tenant, first, last, until, "EUR")
		if err != nil {
			t.Fatal(err)
		}
		got, err := retention.AssembleCohorts(first, last, cells)
		if err != nil {
			t.Fatal(err)
		}
		var before []retention.NetOrder
		for _, o := range ref.ledger.Orders {
			if o.At.Before(until) {
				before = append(before, o)
			}
		}
		want, err := retention.Cohorts(before, first, last)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			fail("cohorts as of %s:\ngot  %v\nwant %v", until.Format(time.RFC3339Nano), got, want)
		}
	}
	if bad > 0 {
		t.Fatalf("%d figures differ from the reference", bad)
	}
}

// aggregates is a tenant's aggregate rows, the ones that hold nothing left
// out (a counter whose differences cancelled, a day whose bits moved away).
type aggregates struct {
	customers map[string]string
	days      map[int32]string
	sales     map[string]string
	cohorts   map[string]int64
	surveys   map[string]int64
}

func readAggregates(t *testing.T, s *Store, tenant string) aggregates {
	t.Helper()
	ctx := context.Background()
	a := aggregates{customers: map[string]string{}, days: map[int32]string{}, sales: map[string]string{}, cohorts: map[string]int64{}, surveys: map[string]int64{}}
	query := func(sql string, scan func(pgx.Rows) error) {
		t.Helper()
		rows, err := s.pool.Query(ctx, sql, tenant)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				t.Fatal(err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	query(`SELECT customer_id, cseq, first_order_at, second_order_at FROM customers WHERE tenant = $1`, func(r pgx.Rows) error {
		var id string
		var cseq int32
		var first, second *time.Time
		err := r.Scan(&id, &cseq, &first, &second)
		a.customers[id] = fmt.Sprint(cseq, " ", first, " ", second)
		return err
	})
	rows, err := s.pool.Query(ctx, `SELECT day - DATE '1970-01-01' FROM day_buyers WHERE tenant = $1`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	days, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		stored, err := readDayRows(ctx, tx, tenant, days)
		for d, r := range stored {
			if !r.empty() {
				a.days[d] = fmt.Sprint(r.ge1, r.ge2, r.firsts, r.seconds)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	query(`SELECT day::text, currency, orders, gross_minor, refunded_minor, net_minor FROM sales_daily WHERE tenant = $1`, func(r pgx.Rows) error {
		var day, currency string
		var s salesSums
		err := r.Scan(&day, &currency, &s.orders, &s.gross, &s.refunded, &s.net)
		if s != (salesSums{}) {
			a.sales[day+currency] = fmt.Sprint(s)
		}
		return err
	})
	query(`SELECT cohort, month, currency, net_minor FROM cohort_revenue WHERE tenant = $1 AND net_minor <> 0`, func(r pgx.Rows) error {
		var cohort, month int32
		var currency string
		var net int64
		err := r.Scan(&cohort, &month, &currency, &net)
		a.cohorts[fmt.Sprint(cohort, month, currency)] = net
		return err
	})
	query(`SELECT day::text, kind, score, answers FROM survey_daily WHERE tenant = $1 AND answers <> 0`, func(r pgx.Rows) error {
		var day string
		var kind, score int16
		var n int64
		err := r.Scan(&day, &kind, &score, &n)
		a.surveys[fmt.Sprint(day, kind, score)] = n
		return err
	})
	return a
}

func sameAggregates(t *testing.T, what string, got, want aggregates) {
	t.Helper()
	for _, c := range []struct {
		name     string
		got, wnt any
	}{
		{"customers", got.customers, want.customers}, {"day bitmaps", got.days, want.days},
		{"sales", got.sales, want.sales}, {"cohort revenue", got.cohorts, want.cohorts}, {"surveys", got.surveys, want.surveys},
	} {
		if g, w := fmt.Sprint(c.got), fmt.Sprint(c.wnt); g != w {
			t.Errorf("%s: %s differ:\ngot  %.2000s\nwant %.2000s", what, c.name, g, w)
		}
	}
}

// buildAgain rebuilds the tenant's aggregates from the facts and checks that
// the builder finds exactly what the batches maintained.
func buildAgain(t *testing.T, s *Store, tenant string) {
	t.Helper()
	ctx := context.Background()
	maintained := readAggregates(t, s, tenant)
	if err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error { return BuildAggregates(ctx, tx, tenant) }); err != nil {
		t.Fatal(err)
	}
	sameAggregates(t, "maintained vs built", maintained, readAggregates(t, s, tenant))
}

func TestAggregatesMatchTheReference(t *testing.T) {
	s := newStore(t)
	start := mustDay("2024-01-01")
	h := randomHistory(1, 150, start, 540)
	ref := referenceOf(h)
	cases := figureCases(start, 18)
	first, last := retention.MonthOf(start), retention.MonthOf(start)+17

	send(t, s, "ordered", h, 97)
	checkFigures(t, s, "ordered", ref, cases, first, last)

	t.Run("shuffled and sent twice in other batches", func(t *testing.T) {
		send(t, s, "shuffled", h.shuffled(2), 41)
		checkFigures(t, s, "shuffled", ref, cases, first, last)
	})
	t.Run("one fact per batch", func(t *testing.T) {
		send(t, s, "single", h.shuffled(3), 1)
		checkFigures(t, s, "single", ref, cases[:40], first, last)
	})
	t.Run("the bulk builder finds what the batches maintained", func(t *testing.T) {
		for _, tenant := range []string{"ordered", "shuffled", "single"} {
			buildAgain(t, s, tenant)
		}
		checkFigures(t, s, "ordered", ref, cases, first, last)
	})
}

// TestLateEarlierOrder sends, after the figures were read (and cached), an
// order placed before a customer's first order: in an earlier month (the
// customer changes cohort, with all their revenue), and on an earlier day
// of the same month.
func TestLateEarlierOrder(t *testing.T) {
	s := newStore(t)
	var h history
	h.order("o1", "ann", mustDay("2024-03-10").Add(9*time.Hour), 1000)
	h.order("o2", "ann", mustDay("2024-04-02").Add(10*time.Hour), 2000)
	h.order("o3", "ann", mustDay("2024-04-20"), 3000)
	h.order("o4", "bob", mustDay("2024-03-15").Add(23*time.Hour), 500)
	h.order("o5", "bob", mustDay("2024-03-15").Add(23*time.Hour+30*time.Minute), 700)
	h.refunds = append(h.refunds, retention.Refund{ID: "r1", OrderID: "o2", AmountMinor: 300})
	send(t, s, "shop", h, 100)
	start := mustDay("2024-01-01")
	cases := figureCases(start, 6)
	first, last := retention.MonthOf(start), retention.MonthOf(start)+5
	checkFigures(t, s, "shop", referenceOf(h), cases, first, last)

	for _, late := range []struct {
		name     string
		customer string
		at       time.Time
	}{
		{"a month earlier: ann moves from the March cohort to February", "ann", mustDay("2024-02-27").Add(time.Hour)},
		{"the same month, a day earlier: bob's first day moves", "bob", mustDay("2024-03-14").Add(23*time.Hour + 59*time.Minute)},
		{"between the first two orders: bob's second order moves", "bob", mustDay("2024-03-15").Add(time.Minute)},
	} {
		t.Run(late.name, func(t *testing.T) {
			id := fmt.Sprintf("late-%d", len(h.orders))
			h.order(id, late.customer, late.at, 4000)
			applyFacts(t, s, "shop", Facts{Orders: h.orders[len(h.orders)-1:]})
			checkFigures(t, s, "shop", referenceOf(h), cases, first, last)
			buildAgain(t, s, "shop")
		})
	}
}

// TestConflictingResends sends versions of known orders that win: earlier
// across a day boundary, and naming another customer, whose only order it
// was (they stop being a customer).
func TestConflictingResends(t *testing.T) {
	s := newStore(t)
	var h history
	h.order("o1", "ann", mustDay("2024-03-10").Add(9*time.Hour), 1000)
	h.order("o2", "ann", mustDay("2024-04-02").Add(10*time.Hour), 2000)
	h.order("o3", "zed", mustDay("2024-03-20").Add(8*time.Hour), 3000)
	h.order("o4", "bob", mustDay("2024-04-02").Add(11*time.Hour), 700)
	h.refunds = append(h.refunds, retention.Refund{ID: "r1", OrderID: "o3", AmountMinor: 100})
	send(t, s, "shop", h, 100)
	start := mustDay("2024-01-01")
	cases := figureCases(start, 6)
	first, last := retention.MonthOf(start), retention.MonthOf(start)+5
	checkFigures(t, s, "shop", referenceOf(h), cases, first, last)

	for _, resend := range []struct {
		name string
		o    Order
	}{
		{"o2 moves earlier, to the previous day and month", Order{Order: retention.Order{ID: "o2", Customer: "ann", At: mustDay("2024-03-31").Add(22 * time.Hour), TotalMinor: 2000}, Currency: "EUR"}},
		{"o3 names ann, zed has no order left", Order{Order: retention.Order{ID: "o3", Customer: "ann", At: mustDay("2024-03-20").Add(8 * time.Hour), TotalMinor: 3000}, Currency: "EUR"}},
		{"o4 moves earlier and to ann, before her first order", Order{Order: retention.Order{ID: "o4", Customer: "ann", At: mustDay("2024-02-01"), TotalMinor: 700}, Currency: "EUR"}},
		{"a later version loses", Order{Order: retention.Order{ID: "o1", Customer: "ann", At: mustDay("2024-05-01"), TotalMinor: 1}, Currency: "EUR"}},
	} {
		t.Run(resend.name, func(t *testing.T) {
			h.orders = append(h.orders, resend.o)
			applyFacts(t, s, "shop", Facts{Orders: []Order{resend.o}})
			checkFigures(t, s, "shop", referenceOf(h), cases, first, last)
			buildAgain(t, s, "shop")
		})
	}
	ctx := context.Background()
	var first3 *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT first_order_at FROM customers WHERE tenant = 'shop' AND customer_id = 'zed'`).Scan(&first3); err != nil || first3 != nil {
		t.Fatalf("zed keeps a customer row without a first order: %v, %v", first3, err)
	}
}

// TestPartialEdgeDays pins the counts of periods and windows that start and
// end inside days on a small shop.
func TestPartialEdgeDays(t *testing.T) {
	s := newStore(t)
	d := mustDay("2025-03-10")
	var h history
	h.order("a1", "a", d.Add(-30*time.Hour), 100) // 03-08 18:00
	h.order("a2", "a", d.Add(5*time.Hour), 100)   // 03-10 05:00
	h.order("b1", "b", d.Add(13*time.Hour), 100)  // 03-10 13:00, new
	h.order("b2", "b", d.Add(14*time.Hour), 100)  // 03-10 14:00
	h.order("c1", "c", d.Add(-50*time.Hour), 100) // 03-07 22:00
	send(t, s, "shop", h, 10)
	ctx := context.Background()
	p := retention.Period{From: d.Add(6 * time.Hour), To: d.Add(14 * time.Hour)} // 06:00..14:00
	w := retention.Window(36 * time.Hour)
	got, err := s.Retention(ctx, "shop", p, w)
	if err != nil {
		t.Fatal(err)
	}
	// S = [03-08 18:00, 03-10 06:00): a. E = [03-09 02:00, 03-10 14:00): a, b.
	want := retention.RetentionCounts{Start: 1, End: 2, New: 1, Retained: 1, NewActiveAtEnd: 1}
	if got != want {
		t.Fatalf("retention: got %+v, want %+v", got, want)
	}
	in, life, err := s.Repeat(ctx, "shop", retention.Period{From: d.Add(5 * time.Hour), To: d.Add(14*time.Hour + time.Microsecond)})
	if err != nil {
		t.Fatal(err)
	}
	if in != (retention.RepeatCounts{Buyers: 2, Repeaters: 1}) || life != (retention.RepeatCounts{Buyers: 3, Repeaters: 2}) {
		t.Fatalf("repeat: in period %+v, lifetime %+v", in, life)
	}
	checkFigures(t, s, "shop", referenceOf(h), figureCases(mustDay("2025-02-01"), 2), retention.MonthFor(2025, 2), retention.MonthFor(2025, 3))
}

// TestCacheFollowsWrites reads figures (filling the cache), changes the
// facts under it, and reads again: every answer follows, including after a
// tenant reset.
func TestCacheFollowsWrites(t *testing.T) {
	s := newStore(t)
	start := mustDay("2024-01-01")
	h := randomHistory(7, 60, start, 200)
	cases := figureCases(start, 7)
	first, last := retention.MonthOf(start), retention.MonthOf(start)+6
	send(t, s, "shop", history{orders: h.orders[:len(h.orders)/2]}, 50)
	checkFigures(t, s, "shop", referenceOf(history{orders: h.orders[:len(h.orders)/2]}), cases, first, last)
	send(t, s, "shop", history{orders: h.orders[len(h.orders)/2:], refunds: h.refunds, answers: h.answers}, 50)
	checkFigures(t, s, "shop", referenceOf(h), cases, first, last)

	if err := s.ResetTenant(context.Background(), "shop", "metrics-facts"); err != nil {
		t.Fatal(err)
	}
	part := history{orders: h.orders[:10]}
	send(t, s, "shop", part, 50)
	checkFigures(t, s, "shop", referenceOf(part), cases, first, last)
}

// TestMigrationBuildsPendingAggregates loads facts under the first schema,
// migrates, and checks that BuildPending gives every tenant its aggregates.
func TestMigrationBuildsPendingAggregates(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	v1, err := migrationFiles.ReadFile("migrations/0001_projections.sql")
	if err != nil {
		t.Fatal(err)
	}
	first := pg.MigrationSet{Component: "metrics", FS: fstest.MapFS{"0001_projections.sql": {Data: v1}}, Dir: "."}
	if err := pg.Migrate(ctx, pool, nil, bus.Migrations, first); err != nil {
		t.Fatal(err)
	}
	start := mustDay("2024-01-01")
	h := randomHistory(9, 80, start, 300)
	ref := referenceOf(h)
	// The facts as the first schema held them.
	for _, o := range ref.ledger.Orders {
		if _, err := pool.Exec(ctx, `INSERT INTO orders (tenant, order_id, customer_id, placed_at, total_minor, currency, refunded_minor) VALUES ('old', $1, $2, $3, $4, 'EUR', $5)`,
			o.ID, string(o.Customer), o.At, o.TotalMinor, o.RefundedMinor); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO customers (tenant, customer_id, first_order_at) SELECT tenant, customer_id, min(placed_at) FROM orders GROUP BY 1, 2;
		INSERT INTO tenant_currencies VALUES ('old', 'EUR')`); err != nil {
		t.Fatal(err)
	}
	for _, a := range h.answers {
		if _, err := pool.Exec(ctx, `
			INSERT INTO survey_answers (tenant, answer_id, customer_id, answered_at, kind, score) VALUES ('old', $1, $2, $3, $4, $5)
			ON CONFLICT (tenant, answer_id) DO UPDATE SET customer_id = excluded.customer_id, answered_at = excluded.answered_at, kind = excluded.kind, score = excluded.score
			WHERE (excluded.customer_id, excluded.answered_at, excluded.kind, excluded.score) < (survey_answers.customer_id, survey_answers.answered_at, survey_answers.kind, survey_answers.score)`,
			a.ID, string(a.Customer), a.At, int16(a.Kind), int16(a.Score)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pg.Migrate(ctx, pool, nil, bus.Migrations, Migrations); err != nil {
		t.Fatal(err)
	}
	s := New(pool)
	if err := s.BuildPending(ctx); err != nil {
		t.Fatal(err)
	}
	checkFigures(t, s, "old", ref, figureCases(start, 10), retention.MonthOf(start), retention.MonthOf(start)+9)

	// Later batches carry on from the built aggregates.
	h2 := randomHistory(10, 20, start.AddDate(0, 6, 0), 60)
	for i := range h2.orders {
		h2.orders[i].Customer = "new-" + h2.orders[i].Customer
		h2.orders[i].ID = "new-" + h2.orders[i].ID
	}
	send(t, s, "old", history{orders: h2.orders}, 30)
	all := history{orders: append(slices.Clone(h.orders), h2.orders...), refunds: h.refunds, answers: h.answers}
	checkFigures(t, s, "old", referenceOf(all), figureCases(start, 10), retention.MonthOf(start), retention.MonthOf(start)+9)
	buildAgain(t, s, "old")
}

func TestSplitDays(t *testing.T) {
	d := mustDay("2025-01-10")
	for _, tc := range []struct {
		name   string
		a, b   time.Time
		d0, d1 int32
		edges  int
	}{
		{"whole days", d, d.AddDate(0, 0, 3), dayOf(d), dayOf(d) + 3, 0},
		{"inside one day", d.Add(time.Hour), d.Add(2 * time.Hour), 0, 0, 1},
		{"across midnight, no whole day", d.Add(-time.Hour), d.Add(time.Hour), 0, 0, 1},
		{"partial both ends", d.Add(-time.Hour), d.AddDate(0, 0, 2).Add(time.Hour), dayOf(d), dayOf(d) + 2, 2},
		{"partial start", d.Add(-time.Microsecond), d.AddDate(0, 0, 1), dayOf(d), dayOf(d) + 1, 1},
		{"before 1970", time.Date(1969, 12, 30, 12, 0, 0, 0, time.UTC), time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC), -1, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d0, d1, edges := splitDays(tc.a, tc.b)
			if d0 != tc.d0 || d1 != tc.d1 || len(edges) != tc.edges {
				t.Fatalf("got days [%d, %d) and %d edges %v, want [%d, %d) and %d", d0, d1, len(edges), edges, tc.d0, tc.d1, tc.edges)
			}
		})
	}
}

func TestBlocksCoverExactly(t *testing.T) {
	for _, r := range [][2]int32{{0, 1}, {3, 97}, {-40, 500}, {1 << 12, 1<<12 + 5000}, {20089, 20179}} {
		next := r[0]
		for _, k := range blocks(r[0], r[1]) {
			if first := k.index << k.level; first != next {
				t.Fatalf("range %v: block %+v starts at %d, want %d", r, k, first, next)
			}
			next += 1 << k.level
		}
		if next != r[1] {
			t.Fatalf("range %v: blocks end at %d", r, next)
		}
	}
}
