package store

import (
	"context"
	"fmt"
)

// Counts are a campaign's raw report figures.
type Counts struct {
	// StepsDone counts the steps completed by treated enrollments, by
	// campaign version and step id: the caller counts a version's send
	// steps among them as the messages requested.
	StepsDone                                map[int32]map[string]int64
	Treated, Holdout, Active                 int64
	ConvTreated, ConvHoldout                 int64
	Requested, Delivered, Failed, Suppressed int64
	CouponsIssued, CouponsRedeemed           int64
	Revenue                                  []Revenue
}

// Revenue is the revenue of one currency within attribution windows.
type Revenue struct {
	Currency         string
	Treated, Holdout int64
}

// ReportCounts computes a campaign's figures over all its versions.
// Revenue is every order a member placed within an attribution window of
// one of their enrollments, after its anchor, each order once.
func ReportCounts(ctx context.Context, q Querier, tenant, campaign string) (Counts, error) {
	var c Counts
	err := q.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE NOT e.holdout), count(*) FILTER (WHERE e.holdout),
			count(*) FILTER (WHERE `+settledStatus+` = 'ACTIVE'),
			count(*) FILTER (WHERE NOT e.holdout AND conv.at IS NOT NULL), count(*) FILTER (WHERE e.holdout AND conv.at IS NOT NULL)
		FROM enrollments e `+conversionOnce+`
		WHERE e.tenant = $1 AND e.campaign_id = $2`, tenant, campaign).Scan(&c.Treated, &c.Holdout, &c.Active, &c.ConvTreated, &c.ConvHoldout)
	if err != nil {
		return c, fmt.Errorf("report %s: enrollments: %w", campaign, err)
	}
	steps, err := q.Query(ctx, `
		SELECT e.version, s.id, count(*)
		FROM enrollments e CROSS JOIN unnest(e.steps_done) AS s(id)
		WHERE e.tenant = $1 AND e.campaign_id = $2 AND NOT e.holdout
		GROUP BY 1, 2`, tenant, campaign)
	if err != nil {
		return c, fmt.Errorf("report %s: steps: %w", campaign, err)
	}
	c.StepsDone = map[int32]map[string]int64{}
	for steps.Next() {
		var v int32
		var id string
		var n int64
		if err := steps.Scan(&v, &id, &n); err != nil {
			return c, fmt.Errorf("report %s: steps: %w", campaign, err)
		}
		if c.StepsDone[v] == nil {
			c.StepsDone[v] = map[string]int64{}
		}
		c.StepsDone[v][id] = n
	}
	if err := steps.Err(); err != nil {
		return c, fmt.Errorf("report %s: steps: %w", campaign, err)
	}
	err = q.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE outcome = 1), count(*) FILTER (WHERE outcome = 2), count(*) FILTER (WHERE outcome = 3)
		FROM campaign_deliveries WHERE tenant = $1 AND campaign_id = $2`, tenant, campaign).Scan(&c.Delivered, &c.Failed, &c.Suppressed)
	if err != nil {
		return c, fmt.Errorf("report %s: messages: %w", campaign, err)
	}
	err = q.QueryRow(ctx, `SELECT count(*), count(redeemed_at) FROM coupons WHERE tenant = $1 AND campaign_id = $2`, tenant, campaign).
		Scan(&c.CouponsIssued, &c.CouponsRedeemed)
	if err != nil {
		return c, fmt.Errorf("report %s: coupons: %w", campaign, err)
	}
	// Each order counts once, however many of the customer's enrollments'
	// windows hold it: a per-order campaign gives a regular an enrollment
	// per order, with overlapping windows, and joining enrollments to
	// orders counted an order once per window (QA: a customer's 312k EUR
	// reported as 3.9G) in time quadratic in their orders. The windows and
	// orders of each customer who has orders after their first anchor (a
	// win-back's lapsed customers mostly have none) are read as one stream
	// by time, an order covered when the latest end of the windows opened
	// before it (anchor strictly before: orders sort first at equal times)
	// reaches it. A customer's group is the same in all their enrollments
	// (HoldoutGroups).
	rows, err := q.Query(ctx, `
		WITH w AS (
			SELECT customer_id, anchor_at, attribution_until, holdout FROM enrollments
			WHERE tenant = $1 AND campaign_id = $2),
		o AS (
			SELECT o.customer_id, o.placed_at, o.total_minor, o.currency
			FROM (SELECT customer_id, min(anchor_at) AS first FROM w GROUP BY customer_id) c
			JOIN campaign_orders o ON o.tenant = $1 AND o.customer_id = c.customer_id AND o.placed_at > c.first),
		ev AS (
			SELECT customer_id, anchor_at AS at, 0 AS kind, attribution_until AS until, holdout, 0::bigint AS total, ''::text AS currency
			FROM w WHERE customer_id IN (SELECT customer_id FROM o)
			UNION ALL
			SELECT customer_id, placed_at, 1, NULL, NULL, total_minor, currency FROM o),
		run AS (
			SELECT kind, at, total, currency,
				max(until) OVER (PARTITION BY customer_id ORDER BY at, kind DESC ROWS UNBOUNDED PRECEDING) AS covered_until,
				bool_or(holdout) OVER (PARTITION BY customer_id) AS holdout
			FROM ev)
		SELECT currency, coalesce(sum(total) FILTER (WHERE NOT holdout), 0), coalesce(sum(total) FILTER (WHERE holdout), 0)
		FROM run WHERE kind = 1 AND covered_until >= at
		GROUP BY currency ORDER BY sum(total) DESC, currency`, tenant, campaign)
	if err != nil {
		return c, fmt.Errorf("report %s: revenue: %w", campaign, err)
	}
	for rows.Next() {
		var r Revenue
		if err := rows.Scan(&r.Currency, &r.Treated, &r.Holdout); err != nil {
			return c, fmt.Errorf("report %s: revenue: %w", campaign, err)
		}
		c.Revenue = append(c.Revenue, r)
	}
	return c, rows.Err()
}
