package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// BuildAggregates recomputes every aggregate of tenant from its fact tables
// in tx, under the tenant's lock: the customers' first and second orders,
// day_buyers, sales_daily, cohort_revenue and survey_daily; the tenant's
// version moves on. It is the bulk equivalent of applying every fact
// through Apply (the tests check both give the same aggregates), used for
// facts that were loaded without their aggregates: the tenants of the
// migration that introduced them (BuildPending) and bulk loads.
//
// The facts must carry their customer numbers (orders.cseq equal to the
// customer's customers.cseq), as Apply and migration 0002 leave them.
func BuildAggregates(ctx context.Context, tx pgx.Tx, tenant string) error {
	if err := LockTenants(ctx, tx, []string{tenant}); err != nil {
		return err
	}
	b := &builder{days: map[int32]*dayRow{}, sales: map[salesKey]*salesSums{}}
	if err := b.scanOrders(ctx, tx, tenant); err != nil {
		return err
	}
	var version int64
	if err := tx.QueryRow(ctx, `
		INSERT INTO tenant_state AS t (tenant, next_cseq, version) VALUES ($1, $2, 1)
		ON CONFLICT (tenant) DO UPDATE SET next_cseq = greatest(t.next_cseq, $2), version = t.version + 1
		RETURNING version`, tenant, len(b.first)).Scan(&version); err != nil {
		return fmt.Errorf("build aggregates: move version on: %w", err)
	}
	for _, table := range []string{"day_buyers", "sales_daily", "cohort_revenue", "survey_daily"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE tenant = $1`, tenant); err != nil {
			return fmt.Errorf("build aggregates: clear %s: %w", table, err)
		}
	}
	steps := []func(context.Context, pgx.Tx, string, int64) error{b.writeCustomers, b.writeDays, b.writeSales, b.writeCohorts, buildSurveys}
	for _, step := range steps {
		if err := step(ctx, tx, tenant, version); err != nil {
			return fmt.Errorf("build aggregates: %w", err)
		}
	}
	return nil
}

// builder holds one tenant's aggregates computed from a scan of its orders.
type builder struct {
	// first and second order instants in Unix microseconds, by cseq.
	first, second []int64
	days          map[int32]*dayRow
	sales         map[salesKey]*salesSums
	// orders keeps what the cohort revenue needs of each order until every
	// customer's first order is known.
	orders     []cohortOrder
	currencies []string
}

type cohortOrder struct {
	cseq     uint32
	currency uint16 // index in builder.currencies
	month    retention.Month
	net      int64
}

// noOrder marks a customer number without a first (or second) order.
const noOrder = math.MinInt64

func (b *builder) scanOrders(ctx context.Context, tx pgx.Tx, tenant string) error {
	rows, err := tx.Query(ctx, `
		SELECT cseq, placed_at, total_minor, refunded_minor, currency FROM orders WHERE tenant = $1`, tenant)
	if err != nil {
		return fmt.Errorf("build aggregates: scan orders: %w", err)
	}
	currencyIndex := map[string]uint16{}
	var (
		cseq     int32
		o        orderRow
		currency string
	)
	if _, err := pgx.ForEachRow(rows, []any{&cseq, &o.at, &o.total, &o.refunded, &currency}, func() error {
		if cseq < 0 {
			return fmt.Errorf("order with customer number %d", cseq)
		}
		c := uint32(cseq)
		for int(c) >= len(b.first) {
			b.first, b.second = append(b.first, noOrder), append(b.second, noOrder)
		}
		at := o.at.UnixMicro()
		switch f, s := b.first[c], b.second[c]; {
		case f == noOrder || at < f:
			b.first[c], b.second[c] = at, f
		case s == noOrder || at < s:
			b.second[c] = at
		}
		day := dayOf(o.at)
		r := b.days[day]
		if r == nil {
			r = newDayRow()
			b.days[day] = r
		}
		if !r.ge1.CheckedAdd(c) {
			r.ge2.Add(c)
		}
		ci, ok := currencyIndex[currency]
		if !ok {
			ci = uint16(len(b.currencies))
			currencyIndex[currency] = ci
			b.currencies = append(b.currencies, currency)
		}
		o.currency = currency
		b.addSales(&o)
		b.orders = append(b.orders, cohortOrder{cseq: c, currency: ci, month: retention.MonthOf(o.at), net: o.net()})
		return nil
	}); err != nil {
		return fmt.Errorf("build aggregates: scan orders: %w", err)
	}
	for c, f := range b.first {
		for _, at := range []struct {
			micros int64
			firsts bool
		}{{f, true}, {b.second[c], false}} {
			if at.micros == noOrder {
				continue
			}
			day := dayOf(time.UnixMicro(at.micros))
			r := b.days[day]
			if r == nil {
				r = newDayRow()
				b.days[day] = r
			}
			if at.firsts {
				r.firsts.Add(uint32(c))
			} else {
				r.seconds.Add(uint32(c))
			}
		}
	}
	return nil
}

func (b *builder) addSales(o *orderRow) {
	k := salesKey{dayOf(o.at), o.currency}
	s := b.sales[k]
	if s == nil {
		s = &salesSums{}
		b.sales[k] = s
	}
	net := o.net()
	s.orders++
	s.gross += o.total
	s.refunded += o.total - net
	s.net += net
}

// writeCustomers sets every customer's first and second order to the
// scanned ones, writing only the rows that differ.
func (b *builder) writeCustomers(ctx context.Context, tx pgx.Tx, tenant string, _ int64) error {
	if _, err := tx.Exec(ctx, `
		CREATE TEMP TABLE build_customers (cseq int4 PRIMARY KEY, first_order_at timestamptz, second_order_at timestamptz)
		ON COMMIT DROP`); err != nil {
		return fmt.Errorf("customers: %w", err)
	}
	ts := func(micros int64) any {
		if micros == noOrder {
			return nil
		}
		return time.UnixMicro(micros).UTC()
	}
	rows := make([][]any, 0, len(b.first))
	for c, f := range b.first {
		if f != noOrder {
			rows = append(rows, []any{int32(c), ts(f), ts(b.second[c])})
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"build_customers"}, []string{"cseq", "first_order_at", "second_order_at"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("customers: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		UPDATE customers c SET first_order_at = b.first_order_at, second_order_at = b.second_order_at
		FROM build_customers b
		WHERE c.tenant = $1 AND c.cseq = b.cseq
		  AND (c.first_order_at, c.second_order_at) IS DISTINCT FROM (b.first_order_at, b.second_order_at)`, tenant); err != nil {
		return fmt.Errorf("customers: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		UPDATE customers c SET first_order_at = NULL, second_order_at = NULL
		WHERE c.tenant = $1 AND c.first_order_at IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM build_customers b WHERE b.cseq = c.cseq)`, tenant); err != nil {
		return fmt.Errorf("customers without orders: %w", err)
	}
	return nil
}

func (b *builder) writeDays(ctx context.Context, tx pgx.Tx, tenant string, version int64) error {
	rows := make([][]any, 0, len(b.days))
	for _, d := range slices.Sorted(maps.Keys(b.days)) {
		var w dayRowWrites
		if err := w.add(d, b.days[d]); err != nil {
			return err
		}
		rows = append(rows, []any{tenant, w.days[0], version, w.ge1[0], w.ge2[0], w.firsts[0], w.seconds[0]})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"day_buyers"}, []string{"tenant", "day", "version", "ge1", "ge2", "firsts", "seconds"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("day buyers: %w", err)
	}
	return nil
}

func (b *builder) writeSales(ctx context.Context, tx pgx.Tx, tenant string, _ int64) error {
	rows := make([][]any, 0, len(b.sales))
	for k, s := range b.sales {
		rows = append(rows, []any{tenant, dayStart(k.day), k.currency, s.orders, s.gross, s.refunded, s.net})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sales_daily"}, []string{"tenant", "day", "currency", "orders", "gross_minor", "refunded_minor", "net_minor"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("sales: %w", err)
	}
	return nil
}

func (b *builder) writeCohorts(ctx context.Context, tx pgx.Tx, tenant string, _ int64) error {
	type key struct {
		cohort, month retention.Month
		currency      uint16
	}
	sums := map[key]int64{}
	for _, o := range b.orders {
		cohort := retention.MonthOf(time.UnixMicro(b.first[o.cseq]))
		sums[key{cohort, o.month, o.currency}] += o.net
	}
	rows := make([][]any, 0, len(sums))
	for k, net := range sums {
		if net != 0 {
			rows = append(rows, []any{tenant, int32(k.cohort), int32(k.month), b.currencies[k.currency], net})
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"cohort_revenue"}, []string{"tenant", "cohort", "month", "currency", "net_minor"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("cohort revenue: %w", err)
	}
	return nil
}

func buildSurveys(ctx context.Context, tx pgx.Tx, tenant string, _ int64) error {
	if _, err := tx.Exec(ctx, `
		INSERT INTO survey_daily (tenant, day, kind, score, answers)
		SELECT tenant, (answered_at AT TIME ZONE 'UTC')::date, kind, score, count(*)
		FROM survey_answers WHERE tenant = $1
		GROUP BY 1, 2, 3, 4`, tenant); err != nil {
		return fmt.Errorf("survey counters: %w", err)
	}
	return nil
}

// BuildPending builds the aggregates of the tenants whose facts predate
// them (listed by migration 0002), one tenant per transaction. Several
// instances starting at once build each tenant once: the first to take
// the tenant's lock removes it from the list.
func (s *Store) BuildPending(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT tenant FROM aggregates_pending ORDER BY tenant`)
	if err != nil {
		return fmt.Errorf("list tenants without aggregates: %w", err)
	}
	tenants, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list tenants without aggregates: %w", err)
	}
	for _, tenant := range tenants {
		err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
			if err := LockTenants(ctx, tx, []string{tenant}); err != nil {
				return err
			}
			var done string
			err := tx.QueryRow(ctx, `DELETE FROM aggregates_pending WHERE tenant = $1 RETURNING tenant`, tenant).Scan(&done)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			return BuildAggregates(ctx, tx, tenant)
		})
		if err != nil {
			return fmt.Errorf("build aggregates of tenant %s: %w", tenant, err)
		}
	}
	return nil
}
