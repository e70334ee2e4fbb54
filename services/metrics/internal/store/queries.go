package store

import (
	"context"
	"fmt"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// The queries fill the domain's count types from the aggregates, within one
// read-only snapshot: sets of customers (active, new, repeat buyers) from the
// day bitmaps, sums from the daily counters, the partial edge days of a
// period from the facts by instant. Rates come from the domain. Period
// bounds and window starts are computed in Go, so SQL only compares
// instants.
//
// A query in a currency takes the one asked for (want) and returns the one
// it answers in, resolved in its own snapshot (resolveCurrency): resolved
// apart, a tenant's first orders committed in between gave an answer in no
// currency ("", no orders yet) counting customers with orders.

// netMinor is an order's value after refunds, never below zero
// (retention.NetOrder.NetMinor).
const netMinor = `greatest(o.total_minor - o.refunded_minor, 0)`

// withDays runs fn with the tenant's day cache validated against one
// snapshot. Queries of one tenant take turns on its cache; when fn is done
// the cache is brought back within its budget.
func (s *Store) withDays(ctx context.Context, tenant string, fn func(*dayView) error) error {
	// One snapshot: a query sees one state of the facts and aggregates
	// (never half a batch) and the cached bitmaps are validated against it.
	return pg.InSnapshot(ctx, s.pool, func(tx pgx.Tx) error {
		td := s.days.acquire(tenant)
		td.mu.Lock()
		defer s.days.release(td)
		if err := td.revalidate(ctx, tx, tenant); err != nil {
			return err
		}
		return fn(&dayView{ctx: ctx, tx: tx, tenant: tenant, td: td})
	})
}

// Retention counts S, E, N and the joint memberships of one period under
// one window: S and E are the customers with an order in [from-W, from)
// and [to-W, to), N those whose first order is in [from, to), all as
// bitmaps; the joint counts are intersections.
func (s *Store) Retention(ctx context.Context, tenant string, p retention.Period, w retention.Window) (retention.RetentionCounts, error) {
	var c retention.RetentionCounts
	err := s.withDays(ctx, tenant, func(v *dayView) error {
		start, err := v.union(p.From.Add(-w.Duration()), p.From, setOnes)
		if err != nil {
			return err
		}
		end, err := v.union(p.To.Add(-w.Duration()), p.To, setOnes)
		if err != nil {
			return err
		}
		newcomers, err := v.union(p.From, p.To, setFirsts)
		if err != nil {
			return err
		}
		c.Start, c.End, c.New = int64(start.GetCardinality()), int64(end.GetCardinality()), int64(newcomers.GetCardinality())
		c.Retained = int64(start.AndCardinality(end))
		c.Churned = c.Start - c.Retained
		lapsedOrNew := roaring.AndNot(end, start)
		c.NewActiveAtEnd = int64(lapsedOrNew.AndCardinality(newcomers))
		c.Reactivated = int64(lapsedOrNew.GetCardinality()) - c.NewActiveAtEnd
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("count retention: %w", err)
	}
	if err := c.Check(); err != nil {
		return c, fmt.Errorf("count retention: %w", err)
	}
	return c, nil
}

// Repeat counts buyers and repeat buyers among the orders in p (the fold of
// the period's days), and among every order before p.To: customers whose
// first, and second, order is before p.To.
func (s *Store) Repeat(ctx context.Context, tenant string, p retention.Period) (inPeriod, lifetime retention.RepeatCounts, err error) {
	err = s.withDays(ctx, tenant, func(v *dayView) error {
		in, err := v.fold(p.From, p.To)
		if err != nil {
			return err
		}
		inPeriod = retention.RepeatCounts{Buyers: int64(in.ones.GetCardinality()), Repeaters: int64(in.twos.GetCardinality())}
		first, _, ok := v.td.span()
		if !ok || !dayStart(first).Before(p.To) {
			return nil
		}
		buyers, err := v.union(dayStart(first), p.To, setFirsts)
		if err != nil {
			return err
		}
		repeaters, err := v.union(dayStart(first), p.To, setSeconds)
		if err != nil {
			return err
		}
		lifetime = retention.RepeatCounts{Buyers: int64(buyers.GetCardinality()), Repeaters: int64(repeaters.GetCardinality())}
		return nil
	})
	if err != nil {
		return inPeriod, lifetime, fmt.Errorf("count repeat purchases: %w", err)
	}
	return inPeriod, lifetime, nil
}

// CohortCells returns the cells of cohorts first..last as of until (the
// query's now): per cohort month and calendar month up to last, the members
// with an order that month (the cohort's first-order bitmap AND the month's
// buyers) and the net revenue of those orders in currency (cohort_revenue),
// the one want resolves to. Only orders placed before until count, as in a
// period cut at now: ingest accepts orders dated up to a day ahead, and
// the aggregates hold whole months, so the month of until is read as its
// whole days before until's, the partial day from the facts, and its
// revenue less that of the orders placed from until to the month's end.
// Cells with no active member are omitted, as in retention.CohortCells.
func (s *Store) CohortCells(ctx context.Context, tenant string, first, last retention.Month, until time.Time, want string) (cells []retention.CohortCell, currency string, err error) {
	until = until.UTC()
	err = s.withDays(ctx, tenant, func(v *dayView) error {
		var err error
		if currency, _, err = resolveCurrency(ctx, v.tx, tenant, want); err != nil {
			return err
		}
		n := int(last-first) + 1
		// Whole days before until's; its part before until is the edge.
		cut := dayOf(until)
		ranges := make([][2]int32, n)
		edge := -1
		for i := range ranges {
			d0, d1 := monthDays(first + retention.Month(i))
			if d0 <= cut && cut < d1 && dayStart(cut).Before(until) {
				edge = i
			}
			d1 = min(d1, cut)
			ranges[i] = [2]int32{min(d0, d1), d1}
		}
		members, err := v.td.unionOf(ctx, v.tx, tenant, setFirsts, ranges...)
		if err != nil {
			return err
		}
		buyers, err := v.td.unionOf(ctx, v.tx, tenant, setOnes, ranges...)
		if err != nil {
			return err
		}
		if edge >= 0 {
			part, err := v.edges([]retention.Period{{From: dayStart(cut), To: until}})
			if err != nil {
				return err
			}
			// The unions are the cache's: combined into new bitmaps.
			members[edge] = roaring.Or(members[edge], part.firsts)
			buyers[edge] = roaring.Or(buyers[edge], part.ones)
		}
		net, err := cohortRevenue(ctx, v.tx, tenant, currency, first, last, until)
		if err != nil {
			return err
		}
		for i := range n {
			for j := i; j < n; j++ {
				k := cohortCell{first + retention.Month(i), first + retention.Month(j)}
				active := int64(members[i].AndCardinality(buyers[j]))
				if active > 0 || net[k] != 0 {
					cells = append(cells, retention.CohortCell{Cohort: k.cohort, Month: k.month, Active: active, NetMinor: net[k]})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("count cohorts: %w", err)
	}
	return cells, currency, nil
}

// cohortCell names a cell of the cohort matrix.
type cohortCell struct{ cohort, month retention.Month }

// cohortRevenue is the net revenue in currency of the orders of cohorts
// first..last placed in each month up to last and before until:
// cohort_revenue's months that start before until, less, in until's month,
// the orders placed from until to its end (at most the day ahead ingest
// accepts, read by instant).
func cohortRevenue(ctx context.Context, tx pgx.Tx, tenant, currency string, first, last retention.Month, until time.Time) (map[cohortCell]int64, error) {
	cutMonth := retention.MonthOf(until)
	rows, err := tx.Query(ctx, `
		SELECT cohort, month, net_minor FROM cohort_revenue
		WHERE tenant = $1 AND currency = $2 AND cohort >= $3 AND cohort <= $4 AND month >= cohort AND month <= $4
		  AND month <= $5`,
		tenant, currency, int32(first), int32(last), int32(cutMonth))
	if err != nil {
		return nil, fmt.Errorf("read cohort revenue: %w", err)
	}
	net := map[cohortCell]int64{}
	var (
		cohort, month int32
		minor         int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&cohort, &month, &minor}, func() error {
		net[cohortCell{retention.Month(cohort), retention.Month(month)}] = minor
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read cohort revenue: %w", err)
	}
	if cutMonth > last {
		return net, nil
	}
	// The orders of until's month placed from until on are in its
	// cohort_revenue, but have not happened yet.
	rows, err = tx.Query(ctx, `
		SELECT c.first_order_at, `+netMinor+`
		FROM orders o JOIN customers c ON c.tenant = o.tenant AND c.customer_id = o.customer_id
		WHERE o.tenant = $1 AND o.currency = $2 AND o.placed_at >= $3 AND o.placed_at < $4`,
		tenant, currency, until, (cutMonth + 1).Start())
	if err != nil {
		return nil, fmt.Errorf("read cohort revenue after now: %w", err)
	}
	var firstOrder time.Time
	if _, err := pgx.ForEachRow(rows, []any{&firstOrder, &minor}, func() error {
		if c := retention.MonthOf(firstOrder); c >= first && c <= last {
			net[cohortCell{c, cutMonth}] -= minor
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read cohort revenue after now: %w", err)
	}
	return net, nil
}

// Surveys tallies the survey answers given in p: the whole days from
// survey_daily, the partial edge days from the answers.
func (s *Store) Surveys(ctx context.Context, tenant string, p retention.Period) (retention.SurveyTally, error) {
	var t retention.SurveyTally
	d0, d1, edges := splitDays(p.From, p.To)
	los, his := make([]time.Time, len(edges)), make([]time.Time, len(edges))
	for i, e := range edges {
		los[i], his[i] = e.From, e.To
	}
	rows, err := s.pool.Query(ctx, `
		SELECT kind, score, sum(n)::bigint FROM (
			SELECT kind, score, answers AS n FROM survey_daily
			WHERE tenant = $1 AND day >= $2 AND day < $3
			UNION ALL
			SELECT a.kind, a.score, 1 FROM unnest($4::timestamptz[], $5::timestamptz[]) AS e(lo, hi)
			CROSS JOIN LATERAL (
				SELECT kind, score FROM survey_answers
				WHERE tenant = $1 AND answered_at >= e.lo AND answered_at < e.hi) a
		) x GROUP BY kind, score`, tenant, dayStart(d0), dayStart(d1), los, his)
	if err != nil {
		return t, fmt.Errorf("tally surveys: %w", err)
	}
	var kind, score int16
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&kind, &score, &n}, func() error {
		var err error
		switch retention.SurveyKind(kind) {
		case retention.SurveyNPS:
			err = t.NPS.Add(int(score), n)
		case retention.SurveyCSAT:
			err = t.CSAT.Add(int(score), n)
		default:
			err = fmt.Errorf("survey kind %d: unknown", kind)
		}
		if err != nil {
			t.Ignored += n
		}
		return nil
	}); err != nil {
		return t, fmt.Errorf("tally surveys: %w", err)
	}
	return t, nil
}

// CustomerValues summarises every customer's orders placed before at (RFM's
// input): last order and order count over every order, net revenue over the
// orders in currency, the one want resolves to. Sorted by customer id.
func (s *Store) CustomerValues(ctx context.Context, tenant string, at time.Time, want string) (vs []retention.CustomerValue, currency string, err error) {
	err = pg.InSnapshot(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if currency, _, err = resolveCurrency(ctx, tx, tenant, want); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT o.customer_id, max(o.placed_at), count(*),
			       coalesce(sum(`+netMinor+`) FILTER (WHERE o.currency = $3), 0)::bigint
			FROM orders o
			WHERE o.tenant = $1 AND o.placed_at < $2
			GROUP BY o.customer_id
			ORDER BY o.customer_id`, tenant, at, currency)
		if err != nil {
			return err
		}
		var v retention.CustomerValue
		vs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (retention.CustomerValue, error) {
			err := r.Scan(&v.Customer, &v.LastOrder, &v.Orders, &v.NetMinor)
			v.LastOrder = v.LastOrder.UTC()
			return v, err
		})
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("summarise customers: %w", err)
	}
	return vs, currency, nil
}

// RevenueByCustomer sums the net value of the orders in currency (the one
// want resolves to) placed in p, one entry per customer, ranked by
// retention.Rank.
func (s *Store) RevenueByCustomer(ctx context.Context, tenant string, p retention.Period, want string) (rs []retention.CustomerRevenue, currency string, err error) {
	err = pg.InSnapshot(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if currency, _, err = resolveCurrency(ctx, tx, tenant, want); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT o.customer_id, coalesce(sum(`+netMinor+`), 0)::bigint, count(*)
			FROM orders o
			WHERE o.tenant = $1 AND o.placed_at >= $2 AND o.placed_at < $3 AND o.currency = $4
			GROUP BY o.customer_id`, tenant, p.From, p.To, currency)
		if err != nil {
			return err
		}
		var r retention.CustomerRevenue
		rs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (retention.CustomerRevenue, error) {
			err := row.Scan(&r.Customer, &r.NetMinor, &r.Orders)
			return r, err
		})
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("sum revenue by customer: %w", err)
	}
	retention.Rank(rs)
	return rs, currency, nil
}

// Sales sums the orders in currency (the one want resolves to) placed in p:
// the whole days from sales_daily, the partial edge days from the orders.
// The customers are the buyers of the period's bitmaps when the tenant
// sells in that currency only; a tenant with several currencies counts the
// customers who paid in this one from the orders.
func (s *Store) Sales(ctx context.Context, tenant string, p retention.Period, want string) (v retention.Sales, currency string, err error) {
	d0, d1, edges := splitDays(p.From, p.To)
	los, his := make([]time.Time, len(edges)), make([]time.Time, len(edges))
	for i, e := range edges {
		los[i], his[i] = e.From, e.To
	}
	err = s.withDays(ctx, tenant, func(dv *dayView) error {
		var (
			err        error
			currencies int
		)
		if currency, currencies, err = resolveCurrency(ctx, dv.tx, tenant, want); err != nil {
			return err
		}
		err = dv.tx.QueryRow(ctx, `
			SELECT coalesce(sum(orders), 0)::bigint, coalesce(sum(gross_minor), 0)::bigint,
			       coalesce(sum(refunded_minor), 0)::bigint, coalesce(sum(net_minor), 0)::bigint
			FROM sales_daily WHERE tenant = $1 AND currency = $2 AND day >= $3 AND day < $4`,
			tenant, currency, dayStart(d0), dayStart(d1),
		).Scan(&v.Orders, &v.GrossMinor, &v.RefundedMinor, &v.NetMinor)
		if err != nil {
			return fmt.Errorf("sum sales: %w", err)
		}
		if len(edges) > 0 {
			var e retention.Sales
			// One index range scan per edge (LATERAL is never turned into
			// a join over every order of the tenant).
			if err := dv.tx.QueryRow(ctx, `
				SELECT count(*), coalesce(sum(o.total_minor), 0)::bigint,
				       coalesce(sum(least(o.refunded_minor, o.total_minor)), 0)::bigint, coalesce(sum(`+netMinor+`), 0)::bigint
				FROM unnest($2::timestamptz[], $3::timestamptz[]) AS e(lo, hi)
				CROSS JOIN LATERAL (
					SELECT total_minor, refunded_minor FROM orders
					WHERE tenant = $1 AND placed_at >= e.lo AND placed_at < e.hi AND currency = $4) o`,
				tenant, los, his, currency).Scan(&e.Orders, &e.GrossMinor, &e.RefundedMinor, &e.NetMinor); err != nil {
				return fmt.Errorf("sum sales of partial days: %w", err)
			}
			v.Orders, v.GrossMinor, v.RefundedMinor, v.NetMinor = v.Orders+e.Orders, v.GrossMinor+e.GrossMinor, v.RefundedMinor+e.RefundedMinor, v.NetMinor+e.NetMinor
		}
		if v.Orders == 0 {
			return nil
		}
		if currencies == 1 {
			buyers, err := dv.union(p.From, p.To, setOnes)
			if err != nil {
				return err
			}
			v.Customers = int64(buyers.GetCardinality())
			return nil
		}
		return dv.tx.QueryRow(ctx, `
			SELECT count(DISTINCT o.customer_id) FROM orders o
			WHERE o.tenant = $1 AND o.placed_at >= $2 AND o.placed_at < $3 AND o.currency = $4`,
			tenant, p.From, p.To, currency).Scan(&v.Customers)
	})
	if err != nil {
		return retention.Sales{}, "", fmt.Errorf("sum sales: %w", err)
	}
	return v, currency, nil
}
