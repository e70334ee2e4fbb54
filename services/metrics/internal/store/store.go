// Package store owns the metrics service's database: the fact projections
// (orders, refunds, customers, survey answers), the aggregates maintained
// from them (day buyer bitmaps, daily sales and survey counters, cohort
// revenue; see DESIGN.md) and the queries that fill the domain's count types
// (internal/retention) from the aggregates.
//
// Writes happen in the bus consumer's transaction (Apply), keyed by natural
// ids so that any order of arrival, duplicates and late facts give the same
// rows; the aggregates are updated in the same transaction from what the
// batch changed. Reads combine the aggregates with the facts of partial edge
// days and leave every rate to the domain.
package store

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/metrics/internal/retention"
	"github.com/retainhq/retain/services/metrics/rfm"
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
	pool      *pgxpool.Pool
	days      *dayCache
	customers *customerCache
}

// New returns the store in pool's database.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	o := options{cacheBytes: DefaultCacheBytes}
	for _, opt := range opts {
		opt(&o)
	}
	return &Store{pool: pool, days: newDayCache(o), customers: newCustomerCache(maxCachedCustomers)}
}

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

// lockTenants takes the advisory locks $1 (sorted keys) in order.
const lockTenants = `SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k`

// LockTenants takes the write locks of tenants in tx, in key order so two
// writers can never wait for each other in a cycle.
func LockTenants(ctx context.Context, tx pgx.Tx, tenants []string) error {
	keys := make([]int64, len(tenants))
	for i, t := range tenants {
		keys[i] = tenantLockKey(t)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if _, err := tx.Exec(ctx, lockTenants, keys); err != nil {
		return fmt.Errorf("lock tenants: %w", err)
	}
	return nil
}

// compareOrders is retention.NewLedger's rule for two versions of one order
// id, (At, Customer, TotalMinor), extended with the currency the domain does
// not carry, so that versions differing only in currency still have one
// winner: rfm.OrderVersion's rule, which the campaign service applies too.
// planOrders applies it against the stored version.
func compareOrders(a, b Order) int { return a.version().Compare(b.version()) }

func (o Order) version() rfm.OrderVersion {
	return rfm.OrderVersion{At: o.At, Customer: string(o.Customer), TotalMinor: o.TotalMinor, Currency: o.Currency}
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
// version sorting first by (OrderID, AmountMinor, Currency) wins, which is what
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

// ResetTenant deletes every projection and aggregate row of tenant and, in
// the same transaction, the tenant's ids from consumer's inbox, so that
// replaying the stream applies the tenant's events again. It holds the
// tenant's lock, so no consumer batch of the tenant is half-applied around
// it. The tenant's version moves on (cached day bitmaps are dropped) and its
// customer sequence starts again from zero. The tenant is marked as being
// rebuilt in the same transaction (its figures are partial from then on)
// until FinishRebuild; a reset of a tenant already marked keeps the instant
// its figures went partial. The reset starts an attempt of the rebuild: its
// progress counts start again from zero (RebuildProgress).
func (s *Store) ResetTenant(ctx context.Context, tenant, consumer string) error {
	return pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if err := LockTenants(ctx, tx, []string{tenant}); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO tenant_rebuilds AS r (tenant, started_at, starts, attempt_started_at, progress_at) VALUES ($1, now(), 1, now(), now())
			ON CONFLICT (tenant) DO UPDATE SET started_at = coalesce(r.started_at, excluded.started_at), starts = r.starts + 1,
				attempt_started_at = now(), replayed = 0, applied = 0, rejected = 0, pending = NULL, progress_at = now(), finished_at = NULL`,
			tenant); err != nil {
			return fmt.Errorf("mark the rebuild: %w", err)
		}
		for _, table := range []string{
			"orders", "refunds", "customers", "survey_answers", "tenant_currencies",
			"day_buyers", "sales_daily", "cohort_revenue", "survey_daily", "aggregates_pending",
		} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE tenant = $1`, tenant); err != nil {
				return fmt.Errorf("reset %s: %w", table, err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE tenant_state SET next_cseq = 0, version = version + 1 WHERE tenant = $1`, tenant); err != nil {
			return fmt.Errorf("reset tenant state: %w", err)
		}
		// Message ids are "<tenant>/<event id>" (ingest's MsgID); deleted
		// in the hourly cleanup's lock order (ReleaseInboxPrefix).
		if err := bus.ReleaseInboxPrefix(ctx, tx, consumer, tenant+"/"); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		return nil
	})
}

// ErrCurrencyAmbiguous is returned by the queries in a currency when the
// tenant has orders in several currencies and the query named none.
var ErrCurrencyAmbiguous = errors.New("the tenant has orders in several currencies")

// ErrNoOrdersInCurrency is returned when a query names a currency none of
// the tenant's orders is in, while it has orders in others.
var ErrNoOrdersInCurrency = errors.New("the tenant has no orders in that currency")

// CurrencyError says which currencies the tenant has: the query named none
// and there are several, or it named one (Want) the tenant has no orders in.
type CurrencyError struct {
	Want       string
	Currencies []string
}

func (e *CurrencyError) Error() string {
	if e.Want != "" {
		return fmt.Sprintf("the tenant has no orders in %s; its orders are in %s", e.Want, strings.Join(e.Currencies, ", "))
	}
	return fmt.Sprintf("%v (%v): name one", ErrCurrencyAmbiguous, e.Currencies)
}

// Is makes errors.Is(err, ErrCurrencyAmbiguous) or, with Want,
// errors.Is(err, ErrNoOrdersInCurrency) true.
func (e *CurrencyError) Is(target error) bool {
	if e.Want != "" {
		return target == ErrNoOrdersInCurrency
	}
	return target == ErrCurrencyAmbiguous
}

// resolveCurrency returns the currency a query of tenant is in, read in
// the query's own snapshot (tx), so that the answer's currency and figures
// are of one state: the tenant's only currency when want is empty ("" when
// the tenant has no orders yet), and want when the tenant has orders in it
// or no orders at all. A currency none of the tenant's orders is in would
// only give zeros, hiding a mistyped or wrong currency: that is a
// CurrencyError naming the currencies it has. n is how many currencies
// the tenant has.
func resolveCurrency(ctx context.Context, tx pgx.Tx, tenant, want string) (currency string, n int, err error) {
	rows, err := tx.Query(ctx, `SELECT currency FROM tenant_currencies WHERE tenant = $1 ORDER BY currency`, tenant)
	if err != nil {
		return "", 0, fmt.Errorf("read currencies: %w", err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", 0, fmt.Errorf("read currencies: %w", err)
	}
	if want != "" {
		if len(cs) > 0 && !slices.Contains(cs, want) {
			return "", len(cs), &CurrencyError{Want: want, Currencies: cs}
		}
		return want, len(cs), nil
	}
	switch len(cs) {
	case 0:
		return "", 0, nil
	case 1:
		return cs[0], 1, nil
	default:
		return "", len(cs), &CurrencyError{Currencies: cs}
	}
}
