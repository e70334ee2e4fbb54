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
// Revenue is every order a member placed within an enrollment's
// attribution window after entering.
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
	rows, err := q.Query(ctx, `
		SELECT o.currency, coalesce(sum(o.total_minor) FILTER (WHERE NOT e.holdout), 0), coalesce(sum(o.total_minor) FILTER (WHERE e.holdout), 0)
		FROM enrollments e
		JOIN campaign_orders o ON o.tenant = e.tenant AND o.customer_id = e.customer_id
			AND o.placed_at > e.anchor_at AND o.placed_at <= e.attribution_until
		WHERE e.tenant = $1 AND e.campaign_id = $2
		GROUP BY o.currency ORDER BY sum(o.total_minor) DESC, o.currency`, tenant, campaign)
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
