// Package store is the campaign service's SQL: facts, campaigns and their
// versions, members, enrollments (with their timers), coupons, sends and
// delivery outcomes. Every write takes the caller's transaction; the
// batch statements use unnest so a batch of events costs a few round trips.
package store

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/retainhq/retain/platform/pg"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the campaign tables.
var Migrations = pg.MigrationSet{Component: "campaign", FS: migrationFiles, Dir: "migrations"}

// Querier is a pool or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Errors the use cases match.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// OrderFact is an order.placed fact.
type OrderFact struct {
	domain.Order
	CustomerID string
	Coupon     string
}

// UpsertOrders stores order facts; an order id seen before keeps its row.
func UpsertOrders(ctx context.Context, tx pgx.Tx, tenant string, os []OrderFact) error {
	if len(os) == 0 {
		return nil
	}
	ids, custs, ats, totals, curs, coupons := make([]string, len(os)), make([]string, len(os)), make([]time.Time, len(os)),
		make([]int64, len(os)), make([]string, len(os)), make([]string, len(os))
	for i, o := range os {
		ids[i], custs[i], ats[i], totals[i], curs[i], coupons[i] = o.ID, o.CustomerID, o.At, o.TotalMinor, o.Currency, o.Coupon
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_orders (tenant, order_id, customer_id, placed_at, total_minor, currency, coupon_code)
		SELECT $1, * FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[])
		ON CONFLICT (tenant, order_id) DO NOTHING`, tenant, ids, custs, ats, totals, curs, coupons)
	if err != nil {
		return fmt.Errorf("store %d orders: %w", len(os), err)
	}
	return nil
}

// Profile is a customer.updated fact; empty fields are not stated.
type Profile struct {
	CustomerID, Locale, TimeZone string
	// RenewalSet: the renewal_date trait was stated (Renewal nil: cleared).
	RenewalSet bool
	Renewal    *time.Time
	At         time.Time
}

// UpsertProfiles applies profile facts; a field stated by a newer event
// than the stored one wins.
func UpsertProfiles(ctx context.Context, tx pgx.Tx, tenant string, ps []Profile) error {
	for _, p := range ps {
		_, err := tx.Exec(ctx, `
			INSERT INTO campaign_customers AS c (tenant, customer_id, locale, time_zone, renewal_date, profile_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant, customer_id) DO UPDATE SET
				locale = CASE WHEN excluded.locale <> '' AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.locale ELSE c.locale END,
				time_zone = CASE WHEN excluded.time_zone <> '' AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.time_zone ELSE c.time_zone END,
				renewal_date = CASE WHEN $7 AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.renewal_date ELSE c.renewal_date END,
				profile_at = greatest(c.profile_at, excluded.profile_at)`,
			tenant, p.CustomerID, p.Locale, p.TimeZone, p.Renewal, p.At, p.RenewalSet)
		if err != nil {
			return fmt.Errorf("store profile of %s: %w", p.CustomerID, err)
		}
	}
	return nil
}

// UpsertBand stores a customer's churn band if at is newer than the stored
// one.
func UpsertBand(ctx context.Context, tx pgx.Tx, tenant, customer string, band churnv1.RiskBand, at time.Time) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_customers AS c (tenant, customer_id, churn_band, band_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant, customer_id) DO UPDATE SET
			churn_band = CASE WHEN c.band_at IS NULL OR c.band_at <= excluded.band_at THEN excluded.churn_band ELSE c.churn_band END,
			band_at = greatest(c.band_at, excluded.band_at)`, tenant, customer, int16(band), at)
	if err != nil {
		return fmt.Errorf("store churn band of %s: %w", customer, err)
	}
	return nil
}

// LoadCustomers returns the facts of the given customers (those with no
// fact at all are absent).
func LoadCustomers(ctx context.Context, q Querier, tenant string, ids []string) (map[string]*domain.Customer, error) {
	out := make(map[string]*domain.Customer, len(ids))
	get := func(id string) *domain.Customer {
		c := out[id]
		if c == nil {
			c = &domain.Customer{ID: id}
			out[id] = c
		}
		return c
	}
	rows, err := q.Query(ctx, `
		SELECT customer_id, locale, time_zone, renewal_date, churn_band
		FROM campaign_customers WHERE tenant = $1 AND customer_id = ANY($2)`, tenant, ids)
	if err != nil {
		return nil, fmt.Errorf("load customers: %w", err)
	}
	for rows.Next() {
		var (
			id, locale, tz string
			renewal        *time.Time
			band           int16
		)
		if err := rows.Scan(&id, &locale, &tz, &renewal, &band); err != nil {
			return nil, fmt.Errorf("load customers: %w", err)
		}
		c := get(id)
		c.Locale, c.TimeZone, c.RenewalDate, c.ChurnBand = locale, tz, renewal, churnv1.RiskBand(band)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load customers: %w", err)
	}
	rows, err = q.Query(ctx, `
		SELECT customer_id, order_id, placed_at, total_minor, currency
		FROM campaign_orders WHERE tenant = $1 AND customer_id = ANY($2)
		ORDER BY customer_id, placed_at, order_id`, tenant, ids)
	if err != nil {
		return nil, fmt.Errorf("load orders: %w", err)
	}
	for rows.Next() {
		var id string
		var o domain.Order
		if err := rows.Scan(&id, &o.ID, &o.At, &o.TotalMinor, &o.Currency); err != nil {
			return nil, fmt.Errorf("load orders: %w", err)
		}
		c := get(id)
		c.Orders = append(c.Orders, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load orders: %w", err)
	}
	return out, nil
}

// CustomerIDs pages through every customer the service has a fact about,
// in id order after after.
func CustomerIDs(ctx context.Context, q Querier, tenant, after string, limit int) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT customer_id FROM (
			SELECT customer_id FROM campaign_customers WHERE tenant = $1 AND customer_id > $2
			UNION
			SELECT DISTINCT customer_id FROM campaign_orders WHERE tenant = $1 AND customer_id > $2) c
		ORDER BY customer_id LIMIT $3`, tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	return ids, nil
}

// RevenuesDesc is every customer's positive revenue over the 365 days
// before now, largest first.
func RevenuesDesc(ctx context.Context, q Querier, tenant string, now time.Time) ([]int64, error) {
	rows, err := q.Query(ctx, `
		SELECT sum(total_minor) FROM campaign_orders
		WHERE tenant = $1 AND placed_at > $2::timestamptz - interval '365 days' AND placed_at <= $2
		GROUP BY customer_id HAVING sum(total_minor) > 0 ORDER BY 1 DESC`, tenant, now)
	if err != nil {
		return nil, fmt.Errorf("revenues: %w", err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("revenues: %w", err)
	}
	return rs, nil
}

// TimeZones returns the stored time zones of customers (absent: unknown).
func TimeZones(ctx context.Context, q Querier, tenant string, ids []string) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT customer_id, time_zone FROM campaign_customers WHERE tenant = $1 AND customer_id = ANY($2) AND time_zone <> ''`, tenant, ids)
	if err != nil {
		return nil, fmt.Errorf("load time zones: %w", err)
	}
	out := map[string]string{}
	for rows.Next() {
		var id, tz string
		if err := rows.Scan(&id, &tz); err != nil {
			return nil, fmt.Errorf("load time zones: %w", err)
		}
		out[id] = tz
	}
	return out, rows.Err()
}

// RedeemCoupons marks the coupons used by orders (code, order, time) as
// redeemed by the earliest order placed before they expired.
func RedeemCoupons(ctx context.Context, tx pgx.Tx, tenant string, codes, orders []string, ats []time.Time) error {
	if len(codes) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `
		UPDATE coupons c SET redeemed_at = u.at, redeemed_order_id = u.order_id
		FROM (SELECT DISTINCT ON (code) * FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS t(code, order_id, at) ORDER BY code, at) u
		WHERE c.tenant = $1 AND c.code = u.code AND u.at <= c.expires_at AND (c.redeemed_at IS NULL OR u.at < c.redeemed_at)`,
		tenant, codes, orders, ats)
	if err != nil {
		return fmt.Errorf("redeem coupons: %w", err)
	}
	return nil
}

// GoalEvent is an event that may reach enrollments' goals.
type GoalEvent struct {
	CustomerID, Type string
	At               time.Time
}

// MarkGoals records, for every enrollment of the customers whose goal is
// one of the events within its attribution window, the earliest such
// event as its conversion, and ends the ones that stop on their goal.
// Earliest-wins makes the result independent of the order events arrive.
func MarkGoals(ctx context.Context, tx pgx.Tx, tenant string, evs []GoalEvent) (int64, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	custs, types, ats := make([]string, len(evs)), make([]string, len(evs)), make([]time.Time, len(evs))
	for i, e := range evs {
		custs[i], types[i], ats[i] = e.CustomerID, e.Type, e.At
	}
	tag, err := tx.Exec(ctx, `
		UPDATE enrollments e SET converted_at = g.at,
			status = CASE WHEN e.status = 'ACTIVE' AND e.stop_on_goal THEN 'CONVERTED' ELSE e.status END,
			due_at = CASE WHEN e.status = 'ACTIVE' AND e.stop_on_goal THEN NULL ELSE e.due_at END
		FROM (
			SELECT DISTINCT ON (e2.id) e2.id, ev.at
			FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS ev(customer_id, type, at)
			JOIN enrollments e2 ON e2.tenant = $1 AND e2.customer_id = ev.customer_id AND e2.goal_event = ev.type
				AND ev.at > e2.anchor_at AND ev.at <= e2.attribution_until
			WHERE e2.converted_at IS NULL OR ev.at < e2.converted_at
			ORDER BY e2.id, ev.at) g
		WHERE e.id = g.id`, tenant, custs, types, ats)
	if err != nil {
		return 0, fmt.Errorf("record goals: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Delivery is a delivery outcome of a campaign's request.
type Delivery struct {
	RequestID, CampaignID string
	Outcome               int16
	Sequence              int32
}

// UpsertDeliveries keeps the outcome with the highest sequence per request.
func UpsertDeliveries(ctx context.Context, tx pgx.Tx, tenant string, ds []Delivery) error {
	for _, d := range ds {
		_, err := tx.Exec(ctx, `
			INSERT INTO campaign_deliveries AS d (tenant, request_id, campaign_id, outcome, sequence) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant, request_id) DO UPDATE SET outcome = excluded.outcome, sequence = excluded.sequence
			WHERE d.sequence < excluded.sequence`, tenant, d.RequestID, d.CampaignID, d.Outcome, d.Sequence)
		if err != nil {
			return fmt.Errorf("store delivery outcome of %s: %w", d.RequestID, err)
		}
	}
	return nil
}

// Vars are the template values an enrollment's trigger provides.
type Vars struct {
	OrderID     string `json:"order_id,omitempty"`
	OrderTotal  int64  `json:"order_total,omitempty"`
	Currency    string `json:"currency,omitempty"`
	NPS         *int32 `json:"nps_score,omitempty"`
	RenewalDate string `json:"renewal_date,omitempty"`
}

func encodeVars(v Vars) []byte {
	b, _ := json.Marshal(v) // a struct of strings and ints always encodes
	return b
}
