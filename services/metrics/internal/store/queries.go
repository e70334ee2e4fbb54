package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// The queries compute exact counts from the fact tables and return the
// domain's count types; the rates come from the domain. Period bounds and
// window starts are computed in Go, so SQL only compares instants.

// netMinor is an order's value after refunds, never below zero
// (retention.NetOrder.NetMinor).
const netMinor = `greatest(o.total_minor - o.refunded_minor, 0)`

// monthIndex is retention.MonthOf in SQL: year*12 + month - 1 of a UTC
// timestamp without time zone (date_trunc of "x AT TIME ZONE 'UTC'").
func monthIndex(col string) string {
	return fmt.Sprintf(`(extract(year FROM %[1]s)::int * 12 + extract(month FROM %[1]s)::int - 1)`, col)
}

// Retention counts S, E, N and the joint memberships of one period under
// one window. S and E are the distinct customers with an order in
// [from-W, from) and [to-W, to), read by index-only range scans of
// (tenant, placed_at); N comes from customers' first orders. Each count is
// computed on its own, so RetentionCounts.Check really checks them.
func (s *Store) Retention(ctx context.Context, tenant string, p retention.Period, w retention.Window) (retention.RetentionCounts, error) {
	var c retention.RetentionCounts
	err := s.pool.QueryRow(ctx, `
		WITH s AS (
			SELECT DISTINCT o.customer_id FROM orders o
			WHERE o.tenant = $1 AND o.placed_at >= $2 AND o.placed_at < $3),
		e AS (
			SELECT DISTINCT o.customer_id FROM orders o
			WHERE o.tenant = $1 AND o.placed_at >= $4 AND o.placed_at < $5),
		n AS (
			SELECT c.customer_id FROM customers c
			WHERE c.tenant = $1 AND c.first_order_at >= $3 AND c.first_order_at < $5),
		joint AS (
			SELECT s.customer_id IS NOT NULL AS in_s, e.customer_id IS NOT NULL AS in_e, n.customer_id IS NOT NULL AS is_new
			FROM s FULL JOIN e ON e.customer_id = s.customer_id
			LEFT JOIN n ON n.customer_id = e.customer_id)
		SELECT
			count(*) FILTER (WHERE in_s),
			count(*) FILTER (WHERE in_e),
			(SELECT count(*) FROM n),
			count(*) FILTER (WHERE in_s AND in_e),
			count(*) FILTER (WHERE in_s AND NOT in_e),
			count(*) FILTER (WHERE in_e AND NOT in_s AND NOT is_new),
			count(*) FILTER (WHERE in_e AND NOT in_s AND is_new)
		FROM joint`,
		tenant, p.From.Add(-w.Duration()), p.From, p.To.Add(-w.Duration()), p.To,
	).Scan(&c.Start, &c.End, &c.New, &c.Retained, &c.Churned, &c.Reactivated, &c.NewActiveAtEnd)
	if err != nil {
		return c, fmt.Errorf("count retention: %w", err)
	}
	if err := c.Check(); err != nil {
		return c, fmt.Errorf("count retention: %w", err)
	}
	return c, nil
}

// Repeat counts buyers and repeat buyers among the orders in p, and among
// every order before p.To (the lifetime version as of the period's end).
func (s *Store) Repeat(ctx context.Context, tenant string, p retention.Period) (inPeriod, lifetime retention.RepeatCounts, err error) {
	err = s.pool.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE n >= 2) FROM (
			SELECT count(*) AS n FROM orders o
			WHERE o.tenant = $1 AND o.placed_at >= $2 AND o.placed_at < $3
			GROUP BY o.customer_id) x`, tenant, p.From, p.To).Scan(&inPeriod.Buyers, &inPeriod.Repeaters)
	if err != nil {
		return inPeriod, lifetime, fmt.Errorf("count repeat purchases in period: %w", err)
	}
	err = s.pool.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE n >= 2) FROM (
			SELECT count(*) AS n FROM orders o
			WHERE o.tenant = $1 AND o.placed_at < $2
			GROUP BY o.customer_id) x`, tenant, p.To).Scan(&lifetime.Buyers, &lifetime.Repeaters)
	if err != nil {
		return inPeriod, lifetime, fmt.Errorf("count lifetime repeat purchases: %w", err)
	}
	return inPeriod, lifetime, nil
}

// CohortCells returns the cells of cohorts first..last: per cohort month and
// calendar month up to last, the members with an order that month and the
// net revenue of those orders in currency. Cells with no active member are
// omitted, as in retention.CohortCells.
func (s *Store) CohortCells(ctx context.Context, tenant string, first, last retention.Month, currency string) ([]retention.CohortCell, error) {
	// Grouped by date_trunc (cheap per order); the month arithmetic runs
	// once per cell.
	rows, err := s.pool.Query(ctx, `
		SELECT `+monthIndex("cohort")+`, `+monthIndex("month")+`, active, net FROM (
			SELECT date_trunc('month', c.first_order_at AT TIME ZONE 'UTC') AS cohort,
			       date_trunc('month', o.placed_at AT TIME ZONE 'UTC') AS month,
			       count(DISTINCT o.customer_id) AS active,
			       coalesce(sum(`+netMinor+`) FILTER (WHERE o.currency = $4), 0)::bigint AS net
			FROM customers c
			JOIN orders o ON o.tenant = c.tenant AND o.customer_id = c.customer_id
			WHERE c.tenant = $1 AND c.first_order_at >= $2 AND c.first_order_at < $3
			  AND o.placed_at < $3
			GROUP BY 1, 2) cells
		ORDER BY 1, 2`,
		tenant, first.Start(), (last + 1).Start(), currency)
	if err != nil {
		return nil, fmt.Errorf("count cohorts: %w", err)
	}
	var cell retention.CohortCell
	cells, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (retention.CohortCell, error) {
		err := r.Scan(&cell.Cohort, &cell.Month, &cell.Active, &cell.NetMinor)
		return cell, err
	})
	if err != nil {
		return nil, fmt.Errorf("count cohorts: %w", err)
	}
	return cells, nil
}

// Surveys tallies the survey answers given in p.
func (s *Store) Surveys(ctx context.Context, tenant string, p retention.Period) (retention.SurveyTally, error) {
	var t retention.SurveyTally
	rows, err := s.pool.Query(ctx, `
		SELECT kind, score, count(*) FROM survey_answers
		WHERE tenant = $1 AND answered_at >= $2 AND answered_at < $3
		GROUP BY kind, score`, tenant, p.From, p.To)
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
// orders in currency. Sorted by customer id.
func (s *Store) CustomerValues(ctx context.Context, tenant string, at time.Time, currency string) ([]retention.CustomerValue, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT o.customer_id, max(o.placed_at), count(*),
		       coalesce(sum(`+netMinor+`) FILTER (WHERE o.currency = $3), 0)::bigint
		FROM orders o
		WHERE o.tenant = $1 AND o.placed_at < $2
		GROUP BY o.customer_id
		ORDER BY o.customer_id`, tenant, at, currency)
	if err != nil {
		return nil, fmt.Errorf("summarise customers: %w", err)
	}
	var v retention.CustomerValue
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (retention.CustomerValue, error) {
		err := r.Scan(&v.Customer, &v.LastOrder, &v.Orders, &v.NetMinor)
		v.LastOrder = v.LastOrder.UTC()
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("summarise customers: %w", err)
	}
	return vs, nil
}

// RevenueByCustomer sums the net value of the orders in currency placed in
// p, one entry per customer, ranked by retention.Rank.
func (s *Store) RevenueByCustomer(ctx context.Context, tenant string, p retention.Period, currency string) ([]retention.CustomerRevenue, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT o.customer_id, coalesce(sum(`+netMinor+`), 0)::bigint, count(*)
		FROM orders o
		WHERE o.tenant = $1 AND o.placed_at >= $2 AND o.placed_at < $3 AND o.currency = $4
		GROUP BY o.customer_id`, tenant, p.From, p.To, currency)
	if err != nil {
		return nil, fmt.Errorf("sum revenue by customer: %w", err)
	}
	var r retention.CustomerRevenue
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (retention.CustomerRevenue, error) {
		err := row.Scan(&r.Customer, &r.NetMinor, &r.Orders)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("sum revenue by customer: %w", err)
	}
	retention.Rank(rs)
	return rs, nil
}

// Sales sums the orders in currency placed in p.
func (s *Store) Sales(ctx context.Context, tenant string, p retention.Period, currency string) (retention.Sales, error) {
	var v retention.Sales
	err := s.pool.QueryRow(ctx, `
		SELECT count(*), count(DISTINCT o.customer_id),
		       coalesce(sum(o.total_minor), 0)::bigint,
		       coalesce(sum(least(o.refunded_minor, o.total_minor)), 0)::bigint,
		       coalesce(sum(`+netMinor+`), 0)::bigint
		FROM orders o
		WHERE o.tenant = $1 AND o.placed_at >= $2 AND o.placed_at < $3 AND o.currency = $4`,
		tenant, p.From, p.To, currency,
	).Scan(&v.Orders, &v.Customers, &v.GrossMinor, &v.RefundedMinor, &v.NetMinor)
	if err != nil {
		return v, fmt.Errorf("sum sales: %w", err)
	}
	return v, nil
}
