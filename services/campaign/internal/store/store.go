// Package store is the campaign service's SQL: facts, campaigns and their
// versions, members, enrollments (with their timers), coupons, sends and
// delivery outcomes. Every write takes the caller's transaction; the
// batch statements use unnest so a batch of events costs a few round trips.
package store

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/retainhq/retain/platform/pg"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
	"github.com/retainhq/retain/services/metrics/rfm"
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
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
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

// UpsertOrders stores order facts. Versions of an order id that disagree
// (a shop re-sent it changed): the one that sorts first by (placed_at,
// customer_id, total_minor, currency), bytewise, wins whatever the arrival
// order, the metrics service's rule, so that both see the same orders.
func UpsertOrders(ctx context.Context, tx pgx.Tx, tenant string, os []OrderFact) error {
	os = winningOrders(os)
	n := len(os)
	if n == 0 {
		return nil
	}
	ids, custs, ats, totals, curs, coupons := make([]string, n), make([]string, n), make([]time.Time, n),
		make([]int64, n), make([]string, n), make([]string, n)
	for i, o := range os {
		ids[i], custs[i], ats[i], totals[i], curs[i], coupons[i] = o.ID, o.CustomerID, o.At, o.TotalMinor, o.Currency, o.Coupon
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_orders AS o (tenant, order_id, customer_id, placed_at, total_minor, currency, coupon_code)
		SELECT $1, * FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[])
		ON CONFLICT (tenant, order_id) DO UPDATE SET
			customer_id = excluded.customer_id, placed_at = excluded.placed_at, total_minor = excluded.total_minor,
			currency = excluded.currency, coupon_code = excluded.coupon_code
		WHERE (excluded.placed_at, excluded.customer_id COLLATE "C", excluded.total_minor, excluded.currency COLLATE "C")
		    < (o.placed_at, o.customer_id COLLATE "C", o.total_minor, o.currency COLLATE "C")`,
		tenant, ids, custs, ats, totals, curs, coupons)
	if err != nil {
		return fmt.Errorf("store %d orders: %w", n, err)
	}
	return nil
}

// winningOrders keeps one version per order id by UpsertOrders' rule (an
// upsert may not touch a row twice), at the precision Postgres keeps, in
// id order (so concurrent batches lock rows in one order).
func winningOrders(in []OrderFact) []OrderFact {
	byID := make(map[string]OrderFact, len(in))
	for _, o := range in {
		o.At = o.At.UTC().Truncate(time.Microsecond)
		if prev, ok := byID[o.ID]; !ok || compareOrders(o, prev) < 0 {
			byID[o.ID] = o
		}
	}
	out := slices.Collect(maps.Values(byID))
	slices.SortFunc(out, func(a, b OrderFact) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func compareOrders(a, b OrderFact) int { return a.version().Compare(b.version()) }

func (o OrderFact) version() rfm.OrderVersion {
	return rfm.OrderVersion{At: o.At, Customer: o.CustomerID, TotalMinor: o.TotalMinor, Currency: o.Currency}
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
// than the stored one wins. A customer's profiles are applied oldest first
// in rounds of at most one profile per customer (an upsert cannot touch a
// row twice), each round one statement per kind (with or without the
// renewal_date trait): nearly every batch is one statement.
func UpsertProfiles(ctx context.Context, tx pgx.Tx, tenant string, ps []Profile) error {
	ps = slices.Clone(ps)
	slices.SortStableFunc(ps, func(a, b Profile) int { return cmp.Or(cmp.Compare(a.CustomerID, b.CustomerID), a.At.Compare(b.At)) })
	for len(ps) > 0 {
		var rest []Profile
		var round [2][]Profile // without, with the renewal_date trait
		for i, p := range ps {
			switch {
			case i > 0 && ps[i-1].CustomerID == p.CustomerID:
				rest = append(rest, p)
			case p.RenewalSet:
				round[1] = append(round[1], p)
			default:
				round[0] = append(round[0], p)
			}
		}
		for kind, r := range round {
			if err := upsertProfiles(ctx, tx, tenant, r, kind == 1); err != nil {
				return err
			}
		}
		ps = rest
	}
	return nil
}

func upsertProfiles(ctx context.Context, tx pgx.Tx, tenant string, ps []Profile, renewalSet bool) error {
	n := len(ps)
	if n == 0 {
		return nil
	}
	custs, locales, tzs, ats := make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n)
	renewals := make([]*time.Time, n)
	for i, p := range ps {
		custs[i], locales[i], tzs[i], ats[i], renewals[i] = p.CustomerID, p.Locale, p.TimeZone, p.At, p.Renewal
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_customers AS c (tenant, customer_id, locale, time_zone, renewal_date, profile_at)
		SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::date[], $6::timestamptz[])
		ON CONFLICT (tenant, customer_id) DO UPDATE SET
			locale = CASE WHEN excluded.locale <> '' AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.locale ELSE c.locale END,
			time_zone = CASE WHEN excluded.time_zone <> '' AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.time_zone ELSE c.time_zone END,
			renewal_date = CASE WHEN $7 AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.renewal_date ELSE c.renewal_date END,
			profile_at = greatest(c.profile_at, excluded.profile_at)`,
		tenant, custs, locales, tzs, renewals, ats, renewalSet)
	if err != nil {
		return fmt.Errorf("store %d profiles: %w", n, err)
	}
	return nil
}

// Band is a churn.risk_changed fact.
type Band struct {
	CustomerID string
	Band       churnv1.RiskBand
	At         time.Time
}

// UpsertBands stores customers' churn bands, each if newer than the stored
// one (of several in the batch, the newest; the last on a tie).
func UpsertBands(ctx context.Context, tx pgx.Tx, tenant string, bs []Band) error {
	latest := map[string]int{}
	for i, b := range bs {
		if j, ok := latest[b.CustomerID]; !ok || !b.At.Before(bs[j].At) {
			latest[b.CustomerID] = i
		}
	}
	if len(latest) == 0 {
		return nil
	}
	custs, bands, ats := make([]string, 0, len(latest)), make([]int16, 0, len(latest)), make([]time.Time, 0, len(latest))
	for _, i := range latest {
		custs, bands, ats = append(custs, bs[i].CustomerID), append(bands, int16(bs[i].Band)), append(ats, bs[i].At)
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_customers AS c (tenant, customer_id, churn_band, band_at)
		SELECT $1, * FROM unnest($2::text[], $3::smallint[], $4::timestamptz[])
		ON CONFLICT (tenant, customer_id) DO UPDATE SET
			churn_band = CASE WHEN c.band_at IS NULL OR c.band_at <= excluded.band_at THEN excluded.churn_band ELSE c.churn_band END,
			band_at = greatest(c.band_at, excluded.band_at)`, tenant, custs, bands, ats)
	if err != nil {
		return fmt.Errorf("store %d churn bands: %w", len(custs), err)
	}
	return nil
}

// LoadCustomers returns the facts of the given customers (those with no
// fact at all are absent), in one round trip.
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
	batch := &pgx.Batch{}
	batch.Queue(`
		SELECT customer_id, locale, time_zone, renewal_date, churn_band
		FROM campaign_customers WHERE tenant = $1 AND customer_id = ANY($2)`, tenant, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var (
				id, locale, tz string
				renewal        *time.Time
				band           int16
			)
			if err := rows.Scan(&id, &locale, &tz, &renewal, &band); err != nil {
				return err
			}
			c := get(id)
			c.Locale, c.TimeZone, c.RenewalDate, c.ChurnBand = locale, tz, renewal, churnv1.RiskBand(band)
		}
		return rows.Err()
	})
	batch.Queue(`
		SELECT customer_id, order_id, placed_at, total_minor, currency
		FROM campaign_orders WHERE tenant = $1 AND customer_id = ANY($2)
		ORDER BY customer_id, placed_at, order_id`, tenant, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			var o domain.Order
			if err := rows.Scan(&id, &o.ID, &o.At, &o.TotalMinor, &o.Currency); err != nil {
				return err
			}
			c := get(id)
			c.Orders = append(c.Orders, o)
		}
		return rows.Err()
	})
	if err := q.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("load %d customers: %w", len(ids), err)
	}
	return out, nil
}

// CustomerIDs pages through every customer the service has a fact about,
// in id order after after.
func CustomerIDs(ctx context.Context, q Querier, tenant, after string, limit int) ([]string, error) {
	// Each side is limited on its own, so a page reads about limit index
	// entries of each table rather than everything after the cursor (a
	// union limited only outside made a pass over every customer
	// quadratic); the first limit ids of the union are among them.
	rows, err := q.Query(ctx, `
		SELECT customer_id FROM (
			(SELECT customer_id FROM campaign_customers WHERE tenant = $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3)
			UNION
			(SELECT DISTINCT customer_id FROM campaign_orders WHERE tenant = $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3)) c
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

// RFMValues summarises the tenant's orders placed before at, one row per
// customer (last order and order count): what domain.NewRFMScales builds
// the tenant's RFM scales from, in one scan.
func RFMValues(ctx context.Context, q Querier, tenant string, at time.Time) ([]domain.RFMValue, error) {
	rows, err := q.Query(ctx, `
		SELECT customer_id, max(placed_at), count(*)
		FROM campaign_orders
		WHERE tenant = $1 AND placed_at < $2
		GROUP BY customer_id`, tenant, at)
	if err != nil {
		return nil, fmt.Errorf("rfm values: %w", err)
	}
	var v domain.RFMValue
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.RFMValue, error) {
		err := r.Scan(&v.Customer, &v.LastOrder, &v.Orders)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("rfm values: %w", err)
	}
	return vs, nil
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

// GoalEvent is an event that may reach enrollments' goals.
type GoalEvent struct {
	CustomerID, Type string
	At               time.Time
}

// Redemption is an order that used a coupon code.
type Redemption struct {
	Code, OrderID string
	At            time.Time
}

// MarkGoals applies goal events to the enrollments of their customers. An
// order.placed goal is not written (see conversion): an order only wakes
// the enrollments it converts that go on after their goal and wait on a
// branch (due now, so the scheduler takes the branch's if_goal path at
// once rather than at its timeout). Any other goal is recorded as the
// enrollment's converted_at, the earliest such event within the
// attribution window (earliest-wins: independent of the order events
// arrive), waking the same way. In the same round trip it marks the
// coupons the orders used as redeemed by the earliest order placed before
// they expired.
func MarkGoals(ctx context.Context, tx pgx.Tx, tenant string, evs []GoalEvent, rs []Redemption, now time.Time) error {
	batch := &pgx.Batch{}
	var orders, others []GoalEvent
	for _, e := range evs {
		if e.Type == domain.EventOrderPlaced {
			orders = append(orders, e)
		} else {
			others = append(others, e)
		}
	}
	if len(orders) > 0 {
		custs, ats := make([]string, len(orders)), make([]time.Time, len(orders))
		for i, e := range orders {
			custs[i], ats[i] = e.CustomerID, e.At
		}
		batch.Queue(`
			UPDATE enrollments e SET due_at = $4
			FROM unnest($2::text[], $3::timestamptz[]) AS ev(customer_id, at)
			WHERE e.tenant = $1 AND e.customer_id = ev.customer_id AND e.status = 'ACTIVE' AND e.armed AND NOT e.stop_on_goal
				AND e.goal_event = 'order.placed' AND ev.at > e.anchor_at AND ev.at <= e.attribution_until AND e.due_at > $4`,
			tenant, custs, ats, now)
	}
	if len(others) > 0 {
		custs, types, ats := make([]string, len(others)), make([]string, len(others)), make([]time.Time, len(others))
		for i, e := range others {
			custs[i], types[i], ats[i] = e.CustomerID, e.Type, e.At
		}
		batch.Queue(`
			UPDATE enrollments e SET converted_at = g.at,
				due_at = CASE WHEN e.status = 'ACTIVE' AND e.armed AND NOT e.stop_on_goal THEN least(e.due_at, $5) ELSE e.due_at END
			FROM (
				SELECT DISTINCT ON (e2.campaign_id, e2.customer_id, e2.entry_key) e2.campaign_id, e2.customer_id, e2.entry_key, ev.at
				FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS ev(customer_id, type, at)
				JOIN enrollments e2 ON e2.tenant = $1 AND e2.customer_id = ev.customer_id AND e2.goal_event = ev.type
					AND e2.goal_event <> 'order.placed' -- the index of recorded goals
					AND ev.at > e2.anchor_at AND ev.at <= e2.attribution_until
				WHERE e2.converted_at IS NULL OR ev.at < e2.converted_at
				ORDER BY e2.campaign_id, e2.customer_id, e2.entry_key, ev.at) g
			WHERE e.tenant = $1 AND e.campaign_id = g.campaign_id AND e.customer_id = g.customer_id AND e.entry_key = g.entry_key`,
			tenant, custs, types, ats, now)
	}
	if len(rs) > 0 {
		codes, orders, ats := make([]string, len(rs)), make([]string, len(rs)), make([]time.Time, len(rs))
		for i, r := range rs {
			codes[i], orders[i], ats[i] = r.Code, r.OrderID, r.At
		}
		batch.Queue(`
			UPDATE coupons c SET redeemed_at = u.at, redeemed_order_id = u.order_id
			FROM (SELECT DISTINCT ON (code) * FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS t(code, order_id, at) ORDER BY code, at) u
			WHERE c.tenant = $1 AND c.code = u.code AND u.at <= c.expires_at AND (c.redeemed_at IS NULL OR u.at < c.redeemed_at)`,
			tenant, codes, orders, ats)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record goals and coupon redemptions: %w", err)
	}
	return nil
}

// Delivery is a delivery outcome of a campaign's request.
type Delivery struct {
	RequestID, CampaignID string
	Outcome               int16
	Sequence              int32
}

// UpsertDeliveries keeps the outcome with the highest sequence per request.
func UpsertDeliveries(ctx context.Context, tx pgx.Tx, tenant string, ds []Delivery) error {
	best := map[string]int{}
	for i, d := range ds {
		if j, ok := best[d.RequestID]; !ok || d.Sequence > ds[j].Sequence {
			best[d.RequestID] = i
		}
	}
	if len(best) == 0 {
		return nil
	}
	reqs, camps := make([]string, 0, len(best)), make([]string, 0, len(best))
	outcomes, seqs := make([]int16, 0, len(best)), make([]int32, 0, len(best))
	for _, i := range best {
		d := ds[i]
		reqs, camps, outcomes, seqs = append(reqs, d.RequestID), append(camps, d.CampaignID), append(outcomes, d.Outcome), append(seqs, d.Sequence)
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_deliveries AS d (tenant, request_id, campaign_id, outcome, sequence)
		SELECT $1, * FROM unnest($2::text[], $3::text[], $4::smallint[], $5::int[])
		ON CONFLICT (tenant, request_id) DO UPDATE SET outcome = excluded.outcome, sequence = excluded.sequence
		WHERE d.sequence < excluded.sequence`, tenant, reqs, camps, outcomes, seqs)
	if err != nil {
		return fmt.Errorf("store %d delivery outcomes: %w", len(reqs), err)
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
