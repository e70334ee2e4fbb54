// Package store owns the metrics service's database: the fact projections
// (orders, refunds, customers, survey answers) and the queries that fill the
// domain's count types (internal/retention) from them.
//
// Writes happen in the bus consumer's transaction (Apply), keyed by natural
// ids so that any order of arrival, duplicates and late facts give the same
// rows. Reads compute exact counts in SQL and leave every rate to the domain.
package store

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the metrics tables.
var Migrations = pg.MigrationSet{Component: "metrics", FS: migrationFiles, Dir: "migrations"}

// Precision is what the store keeps of an instant: Postgres timestamps hold
// microseconds. Facts are truncated to it before they are written, so a fact
// and its re-send compare equal whatever the database would have rounded.
const Precision = time.Microsecond

// Order is an order.placed fact with its currency, which the domain's Order
// leaves out (the domain never mixes currencies in one call).
type Order struct {
	retention.Order
	Currency string
}

// Facts are one tenant's facts from one batch of events.
type Facts struct {
	Orders  []Order
	Refunds []retention.Refund
	Answers []retention.Answer
}

// Empty reports whether there is nothing to write.
func (f Facts) Empty() bool { return len(f.Orders) == 0 && len(f.Refunds) == 0 && len(f.Answers) == 0 }

// Store is the metrics database.
type Store struct {
	pool *pgxpool.Pool
}

// New returns the store in pool's database.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool is the store's connection pool (the consumer runner shares it).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// tenantLockKey is the advisory lock that serialises writers of one tenant:
// the consumer's batches (whatever their number of workers) and a rebuild's
// reset. Per-customer aggregates are recomputed from the fact tables, which
// is only exact when no other writer of the tenant is half-way through.
// Tenants whose keys collide merely wait for each other.
func tenantLockKey(tenant string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("retain-metrics/"))
	_, _ = h.Write([]byte(tenant))
	return int64(h.Sum64())
}

// LockTenants takes the write locks of tenants in tx, in key order so two
// writers can never wait for each other in a cycle.
func LockTenants(ctx context.Context, tx pgx.Tx, tenants []string) error {
	keys := make([]int64, len(tenants))
	for i, t := range tenants {
		keys[i] = tenantLockKey(t)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k`, keys); err != nil {
		return fmt.Errorf("lock tenants: %w", err)
	}
	return nil
}

// Apply writes one tenant's facts in tx. The caller holds the tenant's lock
// (LockTenants). Statements are per batch, never per fact.
func Apply(ctx context.Context, tx pgx.Tx, tenant string, f Facts) error {
	orders := winningOrders(f.Orders)
	refunds := winningRefunds(f.Refunds)
	answers := winningAnswers(f.Answers)

	touchedOrders := make([]string, 0, len(orders)+len(refunds))
	if len(orders) > 0 {
		applied, moved, err := upsertOrders(ctx, tx, tenant, orders)
		if err != nil {
			return err
		}
		if err := advanceFirstOrders(ctx, tx, tenant, applied); err != nil {
			return err
		}
		if len(moved) > 0 {
			if err := recomputeCustomers(ctx, tx, tenant, moved); err != nil {
				return err
			}
		}
		for _, o := range orders {
			touchedOrders = append(touchedOrders, o.ID)
		}
		if err := recordCurrencies(ctx, tx, tenant, orders); err != nil {
			return err
		}
	}
	if len(refunds) > 0 {
		previous, err := upsertRefunds(ctx, tx, tenant, refunds)
		if err != nil {
			return err
		}
		for _, r := range refunds {
			touchedOrders = append(touchedOrders, r.OrderID)
		}
		touchedOrders = append(touchedOrders, previous...)
	}
	if len(touchedOrders) > 0 {
		if err := refreshRefunded(ctx, tx, tenant, touchedOrders); err != nil {
			return err
		}
	}
	if len(answers) > 0 {
		if err := upsertAnswers(ctx, tx, tenant, answers); err != nil {
			return err
		}
	}
	return nil
}

// compareOrders is retention.NewLedger's rule for two versions of one order
// id, (At, Customer, TotalMinor), extended with the currency the domain does
// not carry, so that versions differing only in currency still have one
// winner. The upsert in upsertOrders applies the same order in SQL.
func compareOrders(a, b Order) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Customer, b.Customer); c != 0 {
		return c
	}
	if c := cmp.Compare(a.TotalMinor, b.TotalMinor); c != 0 {
		return c
	}
	return cmp.Compare(a.Currency, b.Currency)
}

// winningOrders keeps one version per order id (a multi-row upsert may not
// touch one row twice), truncated to the store's precision, in id order.
func winningOrders(in []Order) []Order {
	byID := make(map[string]Order, len(in))
	for _, o := range in {
		o.At = o.At.UTC().Truncate(Precision)
		if prev, ok := byID[o.ID]; !ok || compareOrders(o, prev) < 0 {
			byID[o.ID] = o
		}
	}
	out := make([]Order, 0, len(byID))
	for _, o := range byID {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Order) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// winningRefunds deduplicates refunds by id with the domain's rule (the
// version sorting first by (OrderID, AmountMinor) wins, which is what
// NewLedger does with refunds whose order is unknown) and drops the
// non-positive ones the domain ignores.
func winningRefunds(in []retention.Refund) []retention.Refund {
	out := retention.NewLedger(nil, in).Unmatched
	return out
}

// compareAnswers is retention.TallySurveys' rule for two versions of one
// answer id: (Customer, At, Kind, Score).
func compareAnswers(a, b retention.Answer) int {
	if c := cmp.Compare(a.Customer, b.Customer); c != 0 {
		return c
	}
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return cmp.Compare(a.Score, b.Score)
}

func winningAnswers(in []retention.Answer) []retention.Answer {
	byID := make(map[string]retention.Answer, len(in))
	for _, a := range in {
		a.At = a.At.UTC().Truncate(Precision)
		if prev, ok := byID[a.ID]; !ok || compareAnswers(a, prev) < 0 {
			byID[a.ID] = a
		}
	}
	out := make([]retention.Answer, 0, len(byID))
	for _, a := range byID {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b retention.Answer) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// upsertOrders writes the orders, keeping for each id the version that sorts
// first. It returns the versions it wrote (new ids and winning re-sends) and
// the customers that lost an order to another customer (a winning re-send
// naming someone else), whose first order must be recomputed.
//
// A winning version is never later than the stored one (the rule sorts by
// instant first), so a customer's first order only ever moves earlier,
// except for the customers in moved.
func upsertOrders(ctx context.Context, tx pgx.Tx, tenant string, orders []Order) (applied []Order, moved []string, err error) {
	n := len(orders)
	ids, customers, currencies := make([]string, n), make([]string, n), make([]string, n)
	placed, totals := make([]time.Time, n), make([]int64, n)
	for i, o := range orders {
		ids[i], customers[i], currencies[i] = o.ID, string(o.Customer), o.Currency
		placed[i], totals[i] = o.At, o.TotalMinor
	}
	// The previous customer of ids already stored, read under the tenant
	// lock, so a version that moves an order is seen.
	//
	// Lookups by a batch of ids probe the primary key once per id: a LATERAL
	// subquery with LIMIT is never flattened into a join, which the planner
	// could otherwise run as a hash join over every order of the tenant (and
	// "= ANY($n)" with a parameter array compares every row with every id).
	rows, err := tx.Query(ctx, `
		SELECT u.id, o.customer_id FROM unnest($2::text[]) AS u(id)
		CROSS JOIN LATERAL (
			SELECT customer_id FROM orders WHERE tenant = $1 AND order_id = u.id LIMIT 1) o`, tenant, ids)
	previous := make(map[string]string)
	var id, customer string
	if _, err := pgx.ForEachRow(rows, []any{&id, &customer}, func() error {
		previous[id] = customer
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("read stored orders: %w", err)
	}
	rows, err = tx.Query(ctx, `
		INSERT INTO orders (tenant, order_id, customer_id, placed_at, total_minor, currency)
		SELECT $1, u.order_id, u.customer_id, u.placed_at, u.total_minor, u.currency
		FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[])
		     AS u(order_id, customer_id, placed_at, total_minor, currency)
		ON CONFLICT (tenant, order_id) DO UPDATE SET
			customer_id = excluded.customer_id, placed_at = excluded.placed_at,
			total_minor = excluded.total_minor, currency = excluded.currency
		WHERE (excluded.placed_at, excluded.customer_id, excluded.total_minor, excluded.currency)
		    < (orders.placed_at, orders.customer_id, orders.total_minor, orders.currency)
		RETURNING order_id`,
		tenant, ids, customers, placed, totals, currencies)
	if err != nil {
		return nil, nil, fmt.Errorf("upsert %d orders: %w", n, err)
	}
	written, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("upsert %d orders: %w", n, err)
	}
	isWritten := make(map[string]bool, len(written))
	for _, id := range written {
		isWritten[id] = true
	}
	for _, o := range orders {
		if !isWritten[o.ID] {
			continue
		}
		applied = append(applied, o)
		if prev, ok := previous[o.ID]; ok && prev != string(o.Customer) {
			moved = append(moved, prev)
		}
	}
	return applied, moved, nil
}

// advanceFirstOrders moves each customer's first order to the earliest of
// the stored one and the written orders'. Order instants only move earlier
// (see upsertOrders), so least() is exact and needs no read of the orders.
func advanceFirstOrders(ctx context.Context, tx pgx.Tx, tenant string, applied []Order) error {
	if len(applied) == 0 {
		return nil
	}
	first := make(map[retention.CustomerID]time.Time, len(applied))
	for _, o := range applied {
		if f, ok := first[o.Customer]; !ok || o.At.Before(f) {
			first[o.Customer] = o.At
		}
	}
	customers, ats := make([]string, 0, len(first)), make([]time.Time, 0, len(first))
	for c, at := range first {
		customers, ats = append(customers, string(c)), append(ats, at)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO customers (tenant, customer_id, first_order_at)
		SELECT $1, u.customer_id, u.first_order_at
		FROM unnest($2::text[], $3::timestamptz[]) AS u(customer_id, first_order_at)
		ON CONFLICT (tenant, customer_id) DO UPDATE SET first_order_at = excluded.first_order_at
		WHERE excluded.first_order_at < customers.first_order_at`, tenant, customers, ats); err != nil {
		return fmt.Errorf("advance first orders of %d customers: %w", len(customers), err)
	}
	return nil
}

// recomputeCustomers recomputes the first order of customers that lost an
// order to another customer, from their remaining orders, and removes those
// left with none.
func recomputeCustomers(ctx context.Context, tx pgx.Tx, tenant string, customers []string) error {
	slices.Sort(customers)
	customers = slices.Compact(customers)
	if _, err := tx.Exec(ctx, `
		UPDATE customers c SET first_order_at = f.first_order_at
		FROM unnest($2::text[]) AS u(id)
		CROSS JOIN LATERAL (
			SELECT min(o.placed_at) AS first_order_at FROM orders o
			WHERE o.tenant = $1 AND o.customer_id = u.id) f
		WHERE c.tenant = $1 AND c.customer_id = u.id
		  AND f.first_order_at IS NOT NULL AND c.first_order_at <> f.first_order_at`, tenant, customers); err != nil {
		return fmt.Errorf("recompute %d customers: %w", len(customers), err)
	}
	if _, err := tx.Exec(ctx, `
		DELETE FROM customers c
		USING unnest($2::text[]) AS u(id)
		WHERE c.tenant = $1 AND c.customer_id = u.id
		  AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.tenant = $1 AND o.customer_id = c.customer_id)`,
		tenant, customers); err != nil {
		return fmt.Errorf("prune customers without orders: %w", err)
	}
	return nil
}

func recordCurrencies(ctx context.Context, tx pgx.Tx, tenant string, orders []Order) error {
	var currencies []string
	for _, o := range orders {
		currencies = append(currencies, o.Currency)
	}
	slices.Sort(currencies)
	currencies = slices.Compact(currencies)
	if _, err := tx.Exec(ctx, `
		INSERT INTO tenant_currencies (tenant, currency) SELECT $1, unnest($2::text[])
		ON CONFLICT DO NOTHING`, tenant, currencies); err != nil {
		return fmt.Errorf("record currencies: %w", err)
	}
	return nil
}

// upsertRefunds writes the refunds, keeping for each id the version that
// sorts first, and returns the orders that a re-sent refund moved away from.
func upsertRefunds(ctx context.Context, tx pgx.Tx, tenant string, refunds []retention.Refund) (previousOrders []string, err error) {
	n := len(refunds)
	ids, orders, amounts := make([]string, n), make([]string, n), make([]int64, n)
	for i, r := range refunds {
		ids[i], orders[i], amounts[i] = r.ID, r.OrderID, r.AmountMinor
	}
	rows, err := tx.Query(ctx, `
		SELECT r.order_id FROM unnest($2::text[]) AS u(id)
		CROSS JOIN LATERAL (
			SELECT order_id FROM refunds WHERE tenant = $1 AND refund_id = u.id LIMIT 1) r`, tenant, ids)
	if err != nil {
		return nil, fmt.Errorf("read stored refunds: %w", err)
	}
	previousOrders, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read stored refunds: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO refunds (tenant, refund_id, order_id, amount_minor)
		SELECT $1, u.refund_id, u.order_id, u.amount_minor
		FROM unnest($2::text[], $3::text[], $4::bigint[]) AS u(refund_id, order_id, amount_minor)
		ON CONFLICT (tenant, refund_id) DO UPDATE SET
			order_id = excluded.order_id, amount_minor = excluded.amount_minor
		WHERE (excluded.order_id, excluded.amount_minor) < (refunds.order_id, refunds.amount_minor)`,
		tenant, ids, orders, amounts); err != nil {
		return nil, fmt.Errorf("upsert %d refunds: %w", n, err)
	}
	return previousOrders, nil
}

// refreshRefunded recomputes orders.refunded_minor as the sum of the refunds
// naming each given order, so a refund that arrived before its order applies
// when the order lands, and a refund counted twice is impossible.
func refreshRefunded(ctx context.Context, tx pgx.Tx, tenant string, orderIDs []string) error {
	slices.Sort(orderIDs)
	orderIDs = slices.Compact(orderIDs)
	// First the stored and the true sums, probing by id; most batches are
	// new orders without refunds and stop here.
	rows, err := tx.Query(ctx, `
		SELECT u.id, o.refunded_minor, coalesce((
			SELECT sum(r.amount_minor) FROM refunds r
			WHERE r.tenant = $1 AND r.order_id = u.id), 0)::bigint
		FROM unnest($2::text[]) AS u(id)
		CROSS JOIN LATERAL (
			SELECT refunded_minor FROM orders WHERE tenant = $1 AND order_id = u.id LIMIT 1) o`,
		tenant, orderIDs)
	if err != nil {
		return fmt.Errorf("refresh refunds of %d orders: %w", len(orderIDs), err)
	}
	var (
		id            string
		stored, sum   int64
		changed, sums = []string{}, []int64{}
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &stored, &sum}, func() error {
		if stored != sum {
			changed, sums = append(changed, id), append(sums, sum)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("refresh refunds of %d orders: %w", len(orderIDs), err)
	}
	if len(changed) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `
		UPDATE orders o SET refunded_minor = u.refunded
		FROM unnest($2::text[], $3::bigint[]) AS u(id, refunded)
		WHERE o.tenant = $1 AND o.order_id = u.id`, tenant, changed, sums); err != nil {
		return fmt.Errorf("refresh refunds of %d orders: %w", len(changed), err)
	}
	return nil
}

func upsertAnswers(ctx context.Context, tx pgx.Tx, tenant string, answers []retention.Answer) error {
	n := len(answers)
	ids, customers := make([]string, n), make([]string, n)
	answered := make([]time.Time, n)
	kinds, scores := make([]int16, n), make([]int16, n)
	for i, a := range answers {
		ids[i], customers[i], answered[i] = a.ID, string(a.Customer), a.At
		kinds[i], scores[i] = int16(a.Kind), int16(a.Score)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO survey_answers (tenant, answer_id, customer_id, answered_at, kind, score)
		SELECT $1, u.answer_id, u.customer_id, u.answered_at, u.kind, u.score
		FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::smallint[], $6::smallint[])
		     AS u(answer_id, customer_id, answered_at, kind, score)
		ON CONFLICT (tenant, answer_id) DO UPDATE SET
			customer_id = excluded.customer_id, answered_at = excluded.answered_at,
			kind = excluded.kind, score = excluded.score
		WHERE (excluded.customer_id, excluded.answered_at, excluded.kind, excluded.score)
		    < (survey_answers.customer_id, survey_answers.answered_at, survey_answers.kind, survey_answers.score)`,
		tenant, ids, customers, answered, kinds, scores); err != nil {
		return fmt.Errorf("upsert %d survey answers: %w", n, err)
	}
	return nil
}

// ResetTenant deletes every projection row of tenant and, in the same
// transaction, the tenant's ids from consumer's inbox, so that replaying
// the stream applies the tenant's events again. It holds the tenant's lock,
// so no consumer batch of the tenant is half-applied around it.
func (s *Store) ResetTenant(ctx context.Context, tenant, consumer string) error {
	return pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if err := LockTenants(ctx, tx, []string{tenant}); err != nil {
			return err
		}
		for _, table := range []string{"orders", "refunds", "customers", "survey_answers", "tenant_currencies"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE tenant = $1`, tenant); err != nil {
				return fmt.Errorf("reset %s: %w", table, err)
			}
		}
		// Message ids are "<tenant>/<event id>" (ingest's MsgID).
		if _, err := tx.Exec(ctx, `DELETE FROM bus_inbox WHERE consumer = $1 AND starts_with(msg_id, $2)`, consumer, tenant+"/"); err != nil {
			return fmt.Errorf("reset inbox of %s: %w", consumer, err)
		}
		return nil
	})
}

// ErrCurrencyAmbiguous is returned by ResolveCurrency when the tenant has
// orders in several currencies and the query named none.
var ErrCurrencyAmbiguous = errors.New("the tenant has orders in several currencies")

// CurrencyError says which currencies the tenant has.
type CurrencyError struct {
	Currencies []string
}

func (e *CurrencyError) Error() string {
	return fmt.Sprintf("%v (%v): name one", ErrCurrencyAmbiguous, e.Currencies)
}

// Is makes errors.Is(err, ErrCurrencyAmbiguous) true.
func (e *CurrencyError) Is(target error) bool { return target == ErrCurrencyAmbiguous }

// ResolveCurrency returns want when given, else the tenant's only currency
// ("" when the tenant has no orders yet).
func (s *Store) ResolveCurrency(ctx context.Context, tenant, want string) (string, error) {
	if want != "" {
		return want, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT currency FROM tenant_currencies WHERE tenant = $1 ORDER BY currency`, tenant)
	if err != nil {
		return "", fmt.Errorf("read currencies: %w", err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("read currencies: %w", err)
	}
	switch len(cs) {
	case 0:
		return "", nil
	case 1:
		return cs[0], nil
	default:
		return "", &CurrencyError{Currencies: cs}
	}
}
