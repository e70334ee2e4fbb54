package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Entrant is a customer about to enter a campaign.
type Entrant struct {
	CustomerID string
	Key        string
	Anchor     time.Time
	Holdout    bool // the assignment if this is the customer's first entry
	Vars       Vars
}

// Admit applies the entry policy to entrants of one campaign (at most one
// per customer) and returns those admitted, with their persisted holdout
// group. gap < 0 admits a customer once ever, gap 0 always (the entry key
// decides), gap > 0 again only gap after the last entry. The conditional
// upsert is atomic, so concurrent or duplicate triggers cannot both pass.
func Admit(ctx context.Context, tx pgx.Tx, tenant, campaign string, gap time.Duration, es []Entrant) ([]Entrant, error) {
	if len(es) == 0 {
		return nil, nil
	}
	custs, holds, ats := make([]string, len(es)), make([]bool, len(es)), make([]time.Time, len(es))
	by := make(map[string]int, len(es))
	for i, e := range es {
		custs[i], holds[i], ats[i] = e.CustomerID, e.Holdout, e.Anchor
		by[e.CustomerID] = i
	}
	query := `
		INSERT INTO campaign_members AS m (tenant, campaign_id, customer_id, holdout, last_entered_at, entries)
		SELECT $1, $2, * , 1 FROM unnest($3::text[], $4::bool[], $5::timestamptz[])
		ON CONFLICT (tenant, campaign_id, customer_id) DO UPDATE
			SET last_entered_at = greatest(m.last_entered_at, excluded.last_entered_at), entries = m.entries + 1
			WHERE $6::bigint > 0 AND excluded.last_entered_at >= m.last_entered_at + make_interval(secs => $6::bigint)
		RETURNING customer_id, holdout`
	args := []any{tenant, campaign, custs, holds, ats, int64(gap / time.Second)}
	if gap == 0 {
		// Keyed entries: everyone passes (the enrollment key decides), so
		// only the holdout group is needed; not rewriting existing member
		// rows keeps a busy per-order campaign cheap. The select does not
		// see the rows the insert adds (one snapshot), so each customer
		// comes back once.
		query = `
			WITH ins AS (
				INSERT INTO campaign_members (tenant, campaign_id, customer_id, holdout, last_entered_at, entries)
				SELECT $1, $2, *, 1 FROM unnest($3::text[], $4::bool[], $5::timestamptz[])
				ON CONFLICT DO NOTHING
				RETURNING customer_id, holdout)
			SELECT customer_id, holdout FROM ins
			UNION ALL
			SELECT customer_id, holdout FROM campaign_members WHERE tenant = $1 AND campaign_id = $2 AND customer_id = ANY($3)`
		args = args[:5]
	}
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("admit %d customers to %s: %w", len(es), campaign, err)
	}
	var out []Entrant
	for rows.Next() {
		var c string
		var h bool
		if err := rows.Scan(&c, &h); err != nil {
			return nil, fmt.Errorf("admit to %s: %w", campaign, err)
		}
		e := es[by[c]]
		e.Holdout = h
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("admit to %s: %w", campaign, err)
	}
	if gap == 0 && len(out) < len(es) {
		// A member another transaction added after this statement's
		// snapshot was neither inserted nor seen: read it now.
		seen := make(map[string]bool, len(out))
		for _, e := range out {
			seen[e.CustomerID] = true
		}
		var missing []string
		for _, c := range custs {
			if !seen[c] {
				missing = append(missing, c)
			}
		}
		rows, err := tx.Query(ctx, `SELECT customer_id, holdout FROM campaign_members WHERE tenant = $1 AND campaign_id = $2 AND customer_id = ANY($3)`,
			tenant, campaign, missing)
		if err != nil {
			return nil, fmt.Errorf("admit to %s: %w", campaign, err)
		}
		for rows.Next() {
			var c string
			var h bool
			if err := rows.Scan(&c, &h); err != nil {
				return nil, fmt.Errorf("admit to %s: %w", campaign, err)
			}
			e := es[by[c]]
			e.Holdout = h
			out = append(out, e)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("admit to %s: %w", campaign, err)
		}
	}
	return out, nil
}

// Enrollment is an enrollment's row as the step runner needs it.
type Enrollment struct {
	ID                 int64
	Tenant, CampaignID string
	Version            int32
	CustomerID, Key    string
	Holdout            bool
	Anchor, EnteredAt  time.Time
	AttributionUntil   time.Time
	GoalEvent          string
	StopOnGoal         bool
	Status             string
	Step               int
	Due                *time.Time
	Armed, Converted   bool
	ConvertedAt        *time.Time
	StepsDone          []string
	Vars               Vars
	CouponCode         string
}

// InsertEnrollments creates enrollments in the state given (after their
// first steps); one whose (campaign, customer, key) exists already is
// skipped. It returns those created, with ids.
func InsertEnrollments(ctx context.Context, tx pgx.Tx, es []Enrollment) ([]Enrollment, error) {
	if len(es) == 0 {
		return nil, nil
	}
	n := len(es)
	var (
		tenants, camps, custs, keys, goals = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		versions                           = make([]int32, n)
		holds, stops                       = make([]bool, n), make([]bool, n)
		anchors, entered, until            = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		vars                               = make([][]byte, n)
		done                               = make([]string, n)
		statuses                           = make([]string, n)
		steps                              = make([]int32, n)
		dues                               = make([]*time.Time, n)
		armed                              = make([]bool, n)
	)
	idx := map[[4]string]int{}
	for i, e := range es {
		tenants[i], camps[i], custs[i], keys[i], goals[i] = e.Tenant, e.CampaignID, e.CustomerID, e.Key, e.GoalEvent
		versions[i], holds[i], stops[i] = e.Version, e.Holdout, e.StopOnGoal
		anchors[i], entered[i], until[i] = e.Anchor, e.EnteredAt, e.AttributionUntil
		vars[i] = encodeVars(e.Vars)
		statuses[i], steps[i], dues[i], armed[i] = e.Status, int32(e.Step), e.Due, e.Armed
		// Step ids never hold a comma (domain.ValidID).
		done[i] = strings.Join(e.StepsDone, ",")
		idx[[4]string{e.Tenant, e.CampaignID, e.CustomerID, e.Key}] = i
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO enrollments (tenant, campaign_id, version, customer_id, entry_key, holdout, anchor_at, entered_at,
			attribution_until, goal_event, stop_on_goal, vars, status, step, due_at, armed, steps_done)
		SELECT t.tenant, t.campaign_id, t.version, t.customer_id, t.entry_key, t.holdout, t.anchor_at, t.entered_at,
			t.attribution_until, t.goal_event, t.stop_on_goal, t.vars, t.status, t.step, t.due_at, t.armed,
			string_to_array(t.done, ',')
		FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bool[],
			$7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::bool[], $12::jsonb[],
			$13::text[], $14::int[], $15::timestamptz[], $16::bool[], $17::text[])
			AS t(tenant, campaign_id, version, customer_id, entry_key, holdout, anchor_at, entered_at, attribution_until,
				goal_event, stop_on_goal, vars, status, step, due_at, armed, done)
		ON CONFLICT (tenant, campaign_id, customer_id, entry_key) DO NOTHING
		RETURNING id, tenant, campaign_id, customer_id, entry_key`,
		tenants, camps, versions, custs, keys, holds, anchors, entered, until, goals, stops, vars,
		statuses, steps, dues, armed, done)
	if err != nil {
		return nil, fmt.Errorf("insert %d enrollments: %w", n, err)
	}
	var out []Enrollment
	for rows.Next() {
		var id int64
		var k [4]string
		if err := rows.Scan(&id, &k[0], &k[1], &k[2], &k[3]); err != nil {
			return nil, fmt.Errorf("insert enrollments: %w", err)
		}
		e := es[idx[k]]
		e.ID = id
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("insert enrollments: %w", err)
	}
	return out, nil
}

// LockDue locks up to limit active enrollments of active campaigns whose
// timer is due at now, skipping those another scheduler holds, so several
// replicas fire each timer once.
func LockDue(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]Enrollment, error) {
	rows, err := tx.Query(ctx, `
		SELECT e.id, e.tenant, e.campaign_id, e.version, e.customer_id, e.entry_key, e.holdout, e.anchor_at, e.status,
			e.step, e.due_at, e.armed, e.converted_at, e.steps_done, e.vars, e.coupon_code
		FROM enrollments e
		JOIN campaigns c ON c.tenant = e.tenant AND c.id = e.campaign_id AND c.state = 1
		WHERE e.status = 'ACTIVE' AND e.due_at <= $1
		ORDER BY e.due_at
		LIMIT $2
		FOR UPDATE OF e SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("lock due enrollments: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Enrollment, error) {
		var e Enrollment
		var vars []byte
		err := row.Scan(&e.ID, &e.Tenant, &e.CampaignID, &e.Version, &e.CustomerID, &e.Key, &e.Holdout, &e.Anchor, &e.Status,
			&e.Step, &e.Due, &e.Armed, &e.ConvertedAt, &e.StepsDone, &vars, &e.CouponCode)
		if err == nil {
			e.Converted = e.ConvertedAt != nil
			err = json.Unmarshal(vars, &e.Vars)
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("lock due enrollments: %w", err)
	}
	return out, nil
}

// SaveProgress writes the cursors, statuses, completed steps and coupons
// of enrollments after their steps ran.
func SaveProgress(ctx context.Context, tx pgx.Tx, es []Enrollment) error {
	if len(es) == 0 {
		return nil
	}
	n := len(es)
	ids, steps := make([]int64, n), make([]int32, n)
	statuses, coupons, done := make([]string, n), make([]string, n), make([]string, n)
	dues := make([]*time.Time, n)
	armed := make([]bool, n)
	for i, e := range es {
		ids[i], steps[i], statuses[i], coupons[i], dues[i], armed[i] = e.ID, int32(e.Step), e.Status, e.CouponCode, e.Due, e.Armed
		done[i] = strings.Join(e.StepsDone, ",")
	}
	_, err := tx.Exec(ctx, `
		UPDATE enrollments e SET step = u.step, status = u.status, due_at = u.due_at, armed = u.armed, coupon_code = u.coupon_code,
			steps_done = e.steps_done || string_to_array(u.done, ',')
		FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[], $5::bool[], $6::text[], $7::text[])
			AS u(id, step, status, due_at, armed, coupon_code, done)
		WHERE e.id = u.id`, ids, steps, statuses, dues, armed, coupons, done)
	if err != nil {
		return fmt.Errorf("save progress of %d enrollments: %w", n, err)
	}
	return nil
}

// Send is a requested notification, recorded for the report.
type Send struct {
	Tenant, RequestID, CampaignID, StepID string
	EnrollmentID                          int64
	At                                    time.Time
}

// InsertSends records requested notifications.
func InsertSends(ctx context.Context, tx pgx.Tx, ss []Send) error {
	if len(ss) == 0 {
		return nil
	}
	n := len(ss)
	tenants, reqs, camps, steps := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	enrs, ats := make([]int64, n), make([]time.Time, n)
	for i, s := range ss {
		tenants[i], reqs[i], camps[i], steps[i], enrs[i], ats[i] = s.Tenant, s.RequestID, s.CampaignID, s.StepID, s.EnrollmentID, s.At
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_sends (tenant, request_id, campaign_id, step_id, enrollment_id, requested_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[])
		ON CONFLICT DO NOTHING`, tenants, reqs, camps, steps, enrs, ats)
	if err != nil {
		return fmt.Errorf("record %d sends: %w", n, err)
	}
	return nil
}

// Coupon is an issued coupon.
type Coupon struct {
	Code        string
	PercentOff  int32
	AmountMinor int64
	Currency    string
	ExpiresAt   time.Time
}

// IssueCoupon stores c for the customer unless the customer already holds
// one of the campaign's coupons, which is returned instead (one per
// customer). A code already taken (a collision, vanishingly rare) is
// reported with taken so the caller draws another.
func IssueCoupon(ctx context.Context, tx pgx.Tx, tenant, campaign, customer string, enrollment int64, c Coupon, now time.Time) (_ Coupon, taken bool, err error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO coupons (tenant, code, campaign_id, customer_id, enrollment_id, percent_off, amount_minor, currency, issued_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
		tenant, c.Code, campaign, customer, enrollment, c.PercentOff, c.AmountMinor, c.Currency, now, c.ExpiresAt)
	if err != nil {
		return c, false, fmt.Errorf("issue coupon: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return c, false, nil
	}
	var held Coupon
	err = tx.QueryRow(ctx, `SELECT code, percent_off, amount_minor, currency, expires_at FROM coupons WHERE tenant = $1 AND campaign_id = $2 AND customer_id = $3`,
		tenant, campaign, customer).Scan(&held.Code, &held.PercentOff, &held.AmountMinor, &held.Currency, &held.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, true, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("issue coupon: %w", err)
	}
	return held, false, nil
}

// CustomerEnrollments lists a customer's enrollments, newest first.
func CustomerEnrollments(ctx context.Context, q Querier, tenant, customer string) ([]Enrollment, error) {
	rows, err := q.Query(ctx, `
		SELECT id, tenant, campaign_id, version, customer_id, entry_key, holdout, anchor_at, entered_at, status, step, due_at,
			converted_at, steps_done, coupon_code
		FROM enrollments WHERE tenant = $1 AND customer_id = $2 ORDER BY entered_at DESC, id DESC LIMIT 1000`, tenant, customer)
	if err != nil {
		return nil, fmt.Errorf("list enrollments of %s: %w", customer, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Enrollment, error) {
		var e Enrollment
		err := row.Scan(&e.ID, &e.Tenant, &e.CampaignID, &e.Version, &e.CustomerID, &e.Key, &e.Holdout, &e.Anchor, &e.EnteredAt,
			&e.Status, &e.Step, &e.Due, &e.ConvertedAt, &e.StepsDone, &e.CouponCode)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list enrollments of %s: %w", customer, err)
	}
	return out, nil
}

// Blocked returns which of the customers the entry policy keeps out of
// the campaign at now (for the audience preview).
func Blocked(ctx context.Context, q Querier, tenant, campaign string, gap time.Duration, customers []string, now time.Time) (map[string]bool, error) {
	rows, err := q.Query(ctx, `
		SELECT customer_id FROM campaign_members
		WHERE tenant = $1 AND campaign_id = $2 AND customer_id = ANY($3)
			AND ($4::bigint < 0 OR ($4::bigint > 0 AND $5::timestamptz < last_entered_at + make_interval(secs => $4::bigint)))`,
		tenant, campaign, customers, int64(gap/time.Second), now)
	if err != nil {
		return nil, fmt.Errorf("check entry policy: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("check entry policy: %w", err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// LoadCoupon returns an issued coupon by its code.
func LoadCoupon(ctx context.Context, q Querier, tenant, code string) (Coupon, error) {
	c := Coupon{Code: code}
	err := q.QueryRow(ctx, `SELECT percent_off, amount_minor, currency, expires_at FROM coupons WHERE tenant = $1 AND code = $2`, tenant, code).
		Scan(&c.PercentOff, &c.AmountMinor, &c.Currency, &c.ExpiresAt)
	if err != nil {
		return c, fmt.Errorf("load coupon: %w", err)
	}
	return c, nil
}

// SetCoupon records the coupon an enrollment was issued.
func SetCoupon(ctx context.Context, tx pgx.Tx, enrollment int64, code string) error {
	if _, err := tx.Exec(ctx, `UPDATE enrollments SET coupon_code = $2 WHERE id = $1`, enrollment, code); err != nil {
		return fmt.Errorf("record coupon of enrollment %d: %w", enrollment, err)
	}
	return nil
}
