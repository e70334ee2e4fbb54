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

// OrderFact is an order.placed fact of a tenant.
type OrderFact struct {
	Tenant string
	domain.Order
	CustomerID string
	Coupon     string
}

// UpsertOrders stores order facts, of any tenants. Versions of an order id
// that disagree (a shop re-sent it changed): the one that sorts first by
// (placed_at, customer_id, total_minor, currency), bytewise, wins whatever
// the arrival order, the metrics service's rule, so that both see the same
// orders.
func UpsertOrders(ctx context.Context, tx pgx.Tx, os []OrderFact) error {
	os = winningOrders(os)
	n := len(os)
	if n == 0 {
		return nil
	}
	tenants, ids, custs, ats, totals, curs, coupons := make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n),
		make([]int64, n), make([]string, n), make([]string, n)
	for i, o := range os {
		tenants[i], ids[i], custs[i], ats[i], totals[i], curs[i], coupons[i] = o.Tenant, o.ID, o.CustomerID, o.At, o.TotalMinor, o.Currency, o.Coupon
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_orders AS o (tenant, order_id, customer_id, placed_at, total_minor, currency, coupon_code)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[])
		ON CONFLICT (tenant, order_id) DO UPDATE SET
			customer_id = excluded.customer_id, placed_at = excluded.placed_at, total_minor = excluded.total_minor,
			currency = excluded.currency, coupon_code = excluded.coupon_code
		WHERE (excluded.placed_at, excluded.customer_id COLLATE "C", excluded.total_minor, excluded.currency COLLATE "C")
		    < (o.placed_at, o.customer_id COLLATE "C", o.total_minor, o.currency COLLATE "C")`,
		tenants, ids, custs, ats, totals, curs, coupons)
	if err != nil {
		return fmt.Errorf("store %d orders: %w", n, err)
	}
	return nil
}

// winningOrders keeps one version per order by UpsertOrders' rule (an
// upsert may not touch a row twice), at the precision Postgres keeps, in
// key order (so concurrent batches lock rows in one order).
func winningOrders(in []OrderFact) []OrderFact {
	byID := make(map[[2]string]OrderFact, len(in))
	for _, o := range in {
		o.At = o.At.UTC().Truncate(time.Microsecond)
		k := [2]string{o.Tenant, o.ID}
		if prev, ok := byID[k]; !ok || compareOrders(o, prev) < 0 {
			byID[k] = o
		}
	}
	out := slices.Collect(maps.Values(byID))
	slices.SortFunc(out, func(a, b OrderFact) int { return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.ID, b.ID)) })
	return out
}

func compareOrders(a, b OrderFact) int { return a.version().Compare(b.version()) }

func (o OrderFact) version() rfm.OrderVersion {
	return rfm.OrderVersion{At: o.At, Customer: o.CustomerID, TotalMinor: o.TotalMinor, Currency: o.Currency}
}

// Profile is a customer.updated fact of a tenant; empty fields are not
// stated.
type Profile struct {
	Tenant, CustomerID, Locale, TimeZone string
	// RenewalSet: the renewal_date trait was stated (Renewal nil: cleared).
	RenewalSet bool
	Renewal    *time.Time
	At         time.Time
}

// UpsertProfiles applies profile facts, of any tenants; a field stated by
// a newer event than the stored one wins. A customer's profiles are
// applied oldest first in rounds of at most one profile per customer (an
// upsert cannot touch a row twice), each round one statement per kind
// (with or without the renewal_date trait): nearly every batch is one
// statement.
func UpsertProfiles(ctx context.Context, tx pgx.Tx, ps []Profile) error {
	ps = slices.Clone(ps)
	slices.SortStableFunc(ps, func(a, b Profile) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.CustomerID, b.CustomerID), a.At.Compare(b.At))
	})
	for len(ps) > 0 {
		var rest []Profile
		var round [2][]Profile // without, with the renewal_date trait
		for i, p := range ps {
			switch {
			case i > 0 && ps[i-1].Tenant == p.Tenant && ps[i-1].CustomerID == p.CustomerID:
				rest = append(rest, p)
			case p.RenewalSet:
				round[1] = append(round[1], p)
			default:
				round[0] = append(round[0], p)
			}
		}
		for kind, r := range round {
			if err := upsertProfiles(ctx, tx, r, kind == 1); err != nil {
				return err
			}
		}
		ps = rest
	}
	return nil
}

func upsertProfiles(ctx context.Context, tx pgx.Tx, ps []Profile, renewalSet bool) error {
	n := len(ps)
	if n == 0 {
		return nil
	}
	tenants, custs, locales, tzs, ats := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n)
	renewals := make([]*time.Time, n)
	for i, p := range ps {
		tenants[i], custs[i], locales[i], tzs[i], ats[i], renewals[i] = p.Tenant, p.CustomerID, p.Locale, p.TimeZone, p.At, p.Renewal
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_customers AS c (tenant, customer_id, locale, time_zone, renewal_date, profile_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::timestamptz[])
		ON CONFLICT (tenant, customer_id) DO UPDATE SET
			locale = CASE WHEN excluded.locale <> '' AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.locale ELSE c.locale END,
			time_zone = CASE WHEN excluded.time_zone <> '' AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.time_zone ELSE c.time_zone END,
			renewal_date = CASE WHEN $7 AND (c.profile_at IS NULL OR c.profile_at <= excluded.profile_at) THEN excluded.renewal_date ELSE c.renewal_date END,
			profile_at = greatest(c.profile_at, excluded.profile_at)`,
		tenants, custs, locales, tzs, renewals, ats, renewalSet)
	if err != nil {
		return fmt.Errorf("store %d profiles: %w", n, err)
	}
	return nil
}

// Band is a churn.risk_changed fact of a tenant.
type Band struct {
	Tenant     string
	CustomerID string
	Band       churnv1.RiskBand
	At         time.Time
}

// UpsertBands stores customers' churn bands, of any tenants, each if newer
// than the stored one (of several in the batch, the newest; the last on a
// tie).
func UpsertBands(ctx context.Context, tx pgx.Tx, bs []Band) error {
	latest := map[CustomerKey]int{}
	for i, b := range bs {
		k := CustomerKey{b.Tenant, b.CustomerID}
		if j, ok := latest[k]; !ok || !b.At.Before(bs[j].At) {
			latest[k] = i
		}
	}
	if len(latest) == 0 {
		return nil
	}
	// In key order, as every statement that writes customers' rows meets
	// them: the facts consumer's upserts lock the same rows, and two
	// transactions taking them in different orders can deadlock.
	keys := slices.SortedFunc(maps.Keys(latest), CompareCustomers)
	n := len(keys)
	tenants, custs, bands, ats := make([]string, 0, n), make([]string, 0, n), make([]int16, 0, n), make([]time.Time, 0, n)
	for _, k := range keys {
		b := bs[latest[k]]
		tenants, custs, bands, ats = append(tenants, b.Tenant), append(custs, b.CustomerID), append(bands, int16(b.Band)), append(ats, b.At)
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_customers AS c (tenant, customer_id, churn_band, band_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::timestamptz[])
		ON CONFLICT (tenant, customer_id) DO UPDATE SET
			churn_band = CASE WHEN c.band_at IS NULL OR c.band_at <= excluded.band_at THEN excluded.churn_band ELSE c.churn_band END,
			band_at = greatest(c.band_at, excluded.band_at)`, tenants, custs, bands, ats)
	if err != nil {
		return fmt.Errorf("store %d churn bands: %w", len(custs), err)
	}
	return nil
}

// CustomerKey names a customer of a tenant.
type CustomerKey struct{ Tenant, ID string }

// customerArrays are the columns of keys, for unnest.
func customerArrays(keys []CustomerKey) (tenants, ids []string) {
	tenants, ids = make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		tenants[i], ids[i] = k.Tenant, k.ID
	}
	return tenants, ids
}

// LockCustomers takes the row lock of each customer's campaign_customers
// row, creating the row of a customer seen for the first time, in key
// order, until tx ends: two transactions applying one customer's events,
// on any replicas, then run one after the other, the second reading the
// facts the first wrote. (Row locks live in the rows: unlike advisory
// locks they take no slot of the server's shared lock table, however many
// customers a batch holds.)
func LockCustomers(ctx context.Context, tx pgx.Tx, keys []CustomerKey) error {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, CompareCustomers)
	keys = slices.Compact(keys)
	if len(keys) == 0 {
		return nil
	}
	tenants, ids := customerArrays(keys)
	// An upsert whose update never applies still locks the row it meets
	// (ON CONFLICT DO UPDATE locks every conflicting row); the statement
	// meets the rows in key order, so two batches cannot deadlock on them.
	// Bytewise ("C") order, as Go sorts the keys of the other statements
	// that write these rows, whatever the database's collation.
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_customers AS c (tenant, customer_id)
		SELECT * FROM unnest($1::text[], $2::text[]) AS k(tenant, id) ORDER BY k.tenant COLLATE "C", k.id COLLATE "C"
		ON CONFLICT (tenant, customer_id) DO UPDATE SET locale = c.locale WHERE false`, tenants, ids)
	if err != nil {
		return fmt.Errorf("lock %d customers: %w", len(keys), err)
	}
	return nil
}

// CompareCustomers orders customer keys by tenant, then id (bytewise).
func CompareCustomers(a, b CustomerKey) int {
	return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.ID, b.ID))
}

// LoadCustomers returns the facts of the given customers, of any tenants
// (those the service has never seen are absent), in one round trip: the
// orders placed at or after since listed, of those before it the latest
// and their number up to countCap (negative: all; domain.HistoryNeeds). A
// regular of years is not read whole for each event: with 50 orders two
// years old per customer, reading them all halved the facts consumer's
// events/s. Zero since lists every order.
func LoadCustomers(ctx context.Context, q Querier, keys []CustomerKey, since time.Time, countCap int64) (map[CustomerKey]*domain.Customer, error) {
	out := make(map[CustomerKey]*domain.Customer, len(keys))
	get := func(k CustomerKey) *domain.Customer {
		c := out[k]
		if c == nil {
			c = &domain.Customer{ID: k.ID}
			out[k] = c
		}
		return c
	}
	tenants, ids := customerArrays(keys)
	batch := &pgx.Batch{}
	batch.Queue(`
		SELECT c.tenant, c.customer_id, c.locale, c.time_zone, c.renewal_date, c.churn_band
		FROM unnest($1::text[], $2::text[]) AS u(tenant, customer_id)
		JOIN campaign_customers c ON c.tenant = u.tenant AND c.customer_id = u.customer_id`, tenants, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var (
				k          CustomerKey
				locale, tz string
				renewal    *time.Time
				band       int16
			)
			if err := rows.Scan(&k.Tenant, &k.ID, &locale, &tz, &renewal, &band); err != nil {
				return err
			}
			c := get(k)
			c.Locale, c.TimeZone, c.RenewalDate, c.ChurnBand = locale, tz, renewal, churnv1.RiskBand(band)
		}
		return rows.Err()
	})
	if !since.IsZero() {
		// From the index (tenant, customer_id, placed_at) alone: the
		// latest is one probe, the count reads at most countCap entries
		// (and is not asked for when no condition needs it).
		var limit *int64
		if countCap >= 0 {
			limit = &countCap
		}
		count := `(SELECT count(*) FROM (SELECT FROM campaign_orders o
			WHERE o.tenant = u.tenant AND o.customer_id = u.customer_id AND o.placed_at < $3 LIMIT $4) c)`
		if countCap == 0 {
			count = `$4::bigint`
		}
		batch.Queue(`
			SELECT u.tenant, u.customer_id, (SELECT max(o.placed_at) FROM campaign_orders o
				WHERE o.tenant = u.tenant AND o.customer_id = u.customer_id AND o.placed_at < $3), `+count+`
			FROM unnest($1::text[], $2::text[]) AS u(tenant, customer_id)`, tenants, ids, since, limit).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k CustomerKey
				var last *time.Time
				var n int64
				if err := rows.Scan(&k.Tenant, &k.ID, &last, &n); err != nil {
					return err
				}
				if last != nil {
					get(k).Earlier = domain.OrderSummary{Count: n, Last: *last}
				}
			}
			return rows.Err()
		})
	}
	batch.Queue(`
		SELECT o.tenant, o.customer_id, o.order_id, o.placed_at, o.total_minor, o.currency
		FROM unnest($1::text[], $2::text[]) AS u(tenant, customer_id)
		JOIN campaign_orders o ON o.tenant = u.tenant AND o.customer_id = u.customer_id AND o.placed_at >= $3
		ORDER BY o.tenant, o.customer_id, o.placed_at, o.order_id`, tenants, ids, since).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k CustomerKey
			var o domain.Order
			if err := rows.Scan(&k.Tenant, &k.ID, &o.ID, &o.At, &o.TotalMinor, &o.Currency); err != nil {
				return err
			}
			c := get(k)
			c.Orders = append(c.Orders, o)
		}
		return rows.Err()
	})
	if err := q.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("load %d customers: %w", len(keys), err)
	}
	for _, c := range out {
		c.Since = since
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

// TimeZones returns the stored time zones of customers, of any tenants
// (absent: unknown).
func TimeZones(ctx context.Context, q Querier, keys []CustomerKey) (map[CustomerKey]string, error) {
	tenants, ids := customerArrays(keys)
	rows, err := q.Query(ctx, `
		SELECT c.tenant, c.customer_id, c.time_zone
		FROM unnest($1::text[], $2::text[]) AS u(tenant, customer_id)
		JOIN campaign_customers c ON c.tenant = u.tenant AND c.customer_id = u.customer_id
		WHERE c.time_zone <> ''`, tenants, ids)
	if err != nil {
		return nil, fmt.Errorf("load time zones: %w", err)
	}
	out := map[CustomerKey]string{}
	for rows.Next() {
		var k CustomerKey
		var tz string
		if err := rows.Scan(&k.Tenant, &k.ID, &tz); err != nil {
			return nil, fmt.Errorf("load time zones: %w", err)
		}
		out[k] = tz
	}
	return out, rows.Err()
}

// GoalEvent is an event of a tenant that may reach enrollments' goals.
type GoalEvent struct {
	Tenant, CustomerID, Type string
	At                       time.Time
}

// Redemption is an order of a tenant's customer that used a coupon code.
type Redemption struct {
	Tenant, Code, CustomerID, OrderID string
	At                                time.Time
}

// MarkGoals applies goal events, of any tenants, to the enrollments of
// their customers. An order.placed goal is not written (see conversion):
// an order only wakes the enrollments it converts that go on after their
// goal and wait on a branch (due now, so the scheduler takes the branch's
// if_goal path at once rather than at its timeout). Any other goal is
// recorded as the enrollment's converted_at, the earliest such event
// within the attribution window (earliest-wins: independent of the order
// events arrive), waking the same way. In the same round trip it marks the
// coupons the orders used as redeemed: a coupon is its customer's, so only
// an order of that customer placed between its issue and its expiry
// redeems it, the earliest such (by placed time, then order id, bytewise)
// whatever the order they arrive in.
func MarkGoals(ctx context.Context, tx pgx.Tx, evs []GoalEvent, rs []Redemption, now time.Time) error {
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
		tenants, custs, ats := make([]string, len(orders)), make([]string, len(orders)), make([]time.Time, len(orders))
		for i, e := range orders {
			tenants[i], custs[i], ats[i] = e.Tenant, e.CustomerID, e.At
		}
		// The rows are locked in key order first (see enrollmentsInKeyOrder).
		batch.Queue(`
			UPDATE enrollments e SET due_at = $4
			FROM (SELECT l.tenant, l.campaign_id, l.customer_id, l.entry_key
				FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS ev(tenant, customer_id, at)
				JOIN enrollments l ON l.tenant = ev.tenant AND l.customer_id = ev.customer_id
				WHERE l.status = 'ACTIVE' AND l.armed AND NOT l.stop_on_goal
					AND l.goal_event = 'order.placed' AND ev.at > l.anchor_at AND ev.at <= l.attribution_until AND l.due_at > $4
				`+enrollmentsInKeyOrder+`) g
			WHERE e.tenant = g.tenant AND e.campaign_id = g.campaign_id AND e.customer_id = g.customer_id AND e.entry_key = g.entry_key`,
			tenants, custs, ats, now)
	}
	if len(others) > 0 {
		n := len(others)
		tenants, custs, types, ats := make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n)
		for i, e := range others {
			tenants[i], custs[i], types[i], ats[i] = e.Tenant, e.CustomerID, e.Type, e.At
		}
		batch.Queue(`
			UPDATE enrollments e SET converted_at = g.at,
				due_at = CASE WHEN e.status = 'ACTIVE' AND e.armed AND NOT e.stop_on_goal THEN least(e.due_at, $5) ELSE e.due_at END
			FROM (SELECT f.*
				FROM (SELECT DISTINCT ON (e2.tenant, e2.campaign_id, e2.customer_id, e2.entry_key) e2.tenant, e2.campaign_id, e2.customer_id, e2.entry_key, ev.at
					FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS ev(tenant, customer_id, type, at)
					JOIN enrollments e2 ON e2.tenant = ev.tenant AND e2.customer_id = ev.customer_id AND e2.goal_event = ev.type
						AND e2.goal_event <> 'order.placed' -- the index of recorded goals
						AND ev.at > e2.anchor_at AND ev.at <= e2.attribution_until
					WHERE e2.converted_at IS NULL OR ev.at < e2.converted_at
					ORDER BY e2.tenant, e2.campaign_id, e2.customer_id, e2.entry_key, ev.at) f
				JOIN enrollments l ON l.tenant = f.tenant AND l.campaign_id = f.campaign_id AND l.customer_id = f.customer_id AND l.entry_key = f.entry_key
				WHERE l.converted_at IS NULL OR f.at < l.converted_at
				`+enrollmentsInKeyOrder+`) g
			WHERE e.tenant = g.tenant AND e.campaign_id = g.campaign_id AND e.customer_id = g.customer_id AND e.entry_key = g.entry_key`,
			tenants, custs, types, ats, now)
	}
	if len(rs) > 0 {
		n := len(rs)
		tenants, codes, custs, orders, ats := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n)
		for i, r := range rs {
			tenants[i], codes[i], custs[i], orders[i], ats[i] = r.Tenant, r.Code, r.CustomerID, r.OrderID, r.At
		}
		// The orders that may redeem are picked before the earliest of
		// them (another customer's order, or one placed before the issue,
		// must not hide a later one that counts).
		batch.Queue(`
			UPDATE coupons c SET redeemed_at = u.at, redeemed_order_id = u.order_id
			FROM (SELECT DISTINCT ON (k.tenant, k.code) k.tenant, k.code, t.order_id, t.at
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS t(tenant, code, customer_id, order_id, at)
				JOIN coupons k ON k.tenant = t.tenant AND k.code = t.code AND k.customer_id = t.customer_id
					AND t.at >= k.issued_at AND t.at <= k.expires_at
				ORDER BY k.tenant, k.code, t.at, t.order_id COLLATE "C") u
			WHERE c.tenant = u.tenant AND c.code = u.code
				AND (c.redeemed_at IS NULL OR (u.at, u.order_id COLLATE "C") < (c.redeemed_at, c.redeemed_order_id COLLATE "C"))`,
			tenants, codes, custs, orders, ats)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record goals and coupon redemptions: %w", err)
	}
	return nil
}

// enrollmentsInKeyOrder ends a sub-select of the enrollments l that a
// statement is about to update: it locks them in key order (bytewise, the
// columns are "C") before the update meets them in whatever order its
// join does. Pausing, resuming and archiving a campaign update its
// enrollments in the same order (SetState), so the facts consumer's goals
// and the API never wait on each other in a cycle.
const enrollmentsInKeyOrder = `ORDER BY l.tenant, l.campaign_id, l.customer_id, l.entry_key FOR UPDATE OF l`

// Delivery is a delivery outcome of a tenant's campaign request.
type Delivery struct {
	Tenant, RequestID, CampaignID string
	Outcome                       int16
	Sequence                      int32
}

// UpsertDeliveries keeps the outcome with the highest sequence per
// request, of any tenants.
func UpsertDeliveries(ctx context.Context, tx pgx.Tx, ds []Delivery) error {
	best := map[[2]string]int{}
	for i, d := range ds {
		k := [2]string{d.Tenant, d.RequestID}
		if j, ok := best[k]; !ok || d.Sequence > ds[j].Sequence {
			best[k] = i
		}
	}
	if len(best) == 0 {
		return nil
	}
	// In key order (bytewise): the upsert locks every row it meets, and
	// the deliveries consumers of two replicas storing outcomes of the
	// same requests in map order deadlocked.
	keys := slices.SortedFunc(maps.Keys(best), func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	n := len(keys)
	tenants, reqs, camps := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	outcomes, seqs := make([]int16, 0, n), make([]int32, 0, n)
	for _, k := range keys {
		d := ds[best[k]]
		tenants, reqs, camps = append(tenants, d.Tenant), append(reqs, d.RequestID), append(camps, d.CampaignID)
		outcomes, seqs = append(outcomes, d.Outcome), append(seqs, d.Sequence)
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO campaign_deliveries AS d (tenant, request_id, campaign_id, outcome, sequence)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::int[])
		ON CONFLICT (tenant, request_id) DO UPDATE SET outcome = excluded.outcome, sequence = excluded.sequence
		WHERE d.sequence < excluded.sequence`, tenants, reqs, camps, outcomes, seqs)
	if err != nil {
		return fmt.Errorf("store %d delivery outcomes: %w", len(reqs), err)
	}
	return nil
}

// Vars are the template values an enrollment's trigger provides.
type Vars struct {
	OrderID    string `json:"order_id,omitempty"`
	OrderTotal int64  `json:"order_total,omitempty"`
	Currency   string `json:"currency,omitempty"`
	NPS        *int32 `json:"nps_score,omitempty"`
	// Comment is a survey answer's free text, for a detractor alert.
	Comment     string `json:"comment,omitempty"`
	RenewalDate string `json:"renewal_date,omitempty"`
}

func encodeVars(v Vars) []byte {
	b, _ := json.Marshal(v) // a struct of strings and ints always encodes
	return b
}
