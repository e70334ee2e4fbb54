package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// A batch of events from many shops holds a few facts of each. Its
// statements are therefore set-based across tenants, the tenant a column
// of the unnest arrays: the reads that start applying the orders
// (readForOrders), those that out-of-order orders need (readBack) and the
// writes of the projections and aggregates (tableWrites) are one statement
// per table for the whole batch, whatever its number of tenants. A round of
// statements per tenant cost about 40 us a statement: with 500 shops in a
// batch of 500 events, 5,500 statements and 240 ms a batch. The refunds
// and survey answers of all the tenants go likewise in one round trip
// (applyRefundsAndAnswers): the upserts, the refresh of the refunded
// orders, and the locks when the batch has no orders. What a tenant rarely
// needs (customers and orders read back after a re-send moved an order, a
// day recomputed) stays statements of its tenant.

// orderReads are what readForOrders read for one tenant's orders.
type orderReads struct {
	// names are the customers of the orders, sorted; hits those the
	// customer cache holds, at version cachedAt (cached: the cache knows
	// the tenant).
	names    []string
	hits     map[string]cachedCustomer
	cachedAt int64
	cached   bool
	// next is the tenant's next customer number.
	next int32
	// stored are the stored versions of the order ids; waiting the sums of
	// the refunds stored for the order ids, by currency.
	stored  map[string]orderRow
	waiting map[string]map[string]int64
}

// Reads of many tenants' rows: one primary-key probe per (tenant, key), as
// the one-tenant reads (selectCustomers, selectDayRows, selectStoredOrders,
// selectWaitingRefunds), whose LIMIT or aggregate keeps the subquery from
// being pulled up into a join over whole tables.
const (
	selectCustomersOf = `
	SELECT u.t, u.id, c.cseq, c.first_order_at, c.second_order_at FROM unnest($1::text[], $2::text[]) AS u(t, id)
	CROSS JOIN LATERAL (
		SELECT cseq, first_order_at, second_order_at FROM customers
		WHERE tenant = u.t AND customer_id = u.id LIMIT 1) c`
	selectTenantStates = `SELECT tenant, next_cseq, version FROM tenant_state WHERE tenant = ANY($1::text[])`
	selectDayRowsOf    = `
	SELECT u.t, d.day - DATE '1970-01-01', d.version, d.ge1, d.ge2, d.firsts, d.seconds
	FROM unnest($1::text[], $2::date[]) AS u(t, day)
	CROSS JOIN LATERAL (SELECT * FROM day_buyers WHERE tenant = u.t AND day = u.day LIMIT 1) d`
	selectStoredOrdersOf = `
	SELECT u.t, o.* FROM unnest($1::text[], $2::text[]) AS u(t, id)
	CROSS JOIN LATERAL (
		SELECT order_id, customer_id, cseq, placed_at, total_minor, currency, refunded_minor FROM orders
		WHERE tenant = u.t AND order_id = u.id LIMIT 1) o`
	selectWaitingRefundsOf = `
	SELECT u.t, u.id, r.currency, r.refunded FROM unnest($1::text[], $2::text[]) AS u(t, id)
	CROSS JOIN LATERAL (
		SELECT currency, sum(amount_minor)::bigint AS refunded FROM refunds WHERE tenant = u.t AND order_id = u.id
		GROUP BY currency) r`
)

// queueDayRows queues the read of the stored day rows (dayTenants[i],
// days[i]) into the batches of their tenants (ws[index[tenant]]).
func queueDayRows(b *pgx.Batch, dayTenants []string, days []time.Time, ws []*writeBatch, index map[string]int) {
	b.Queue(selectDayRowsOf, dayTenants, days).Query(func(rows pgx.Rows) error {
		var (
			tenant                    string
			day                       int32
			version                   int64
			ge1, ge2, firsts, seconds []byte
		)
		_, err := pgx.ForEachRow(rows, []any{&tenant, &day, &version, &ge1, &ge2, &firsts, &seconds}, func() error {
			r, err := decodeDayRow(day, version, ge1, ge2, firsts, seconds)
			ws[index[tenant]].storedDays[day] = r
			return err
		})
		return err
	})
}

// readForOrders reads, for every tenant with orders (orders[i] are ws[i]'s
// winning versions), what applying them starts from: the orders'
// customers (those the cache does not hold), the tenant's state, the rows
// of the days the orders fall on, the stored versions of the order ids and
// the refunds waiting for them. One round trip for all the tenants, which
// starts with their locks when lock is set.
func readForOrders(ctx context.Context, tx pgx.Tx, ws []*writeBatch, orders [][]Order, lock bool) ([]orderReads, error) {
	reads := make([]orderReads, len(ws))
	index := make(map[string]int, len(ws))
	var (
		keys                     []int64
		custTenants, custIDs     []string
		stateTenants             []string
		dayTenants               []string
		dayDays                  []time.Time
		orderTenants, orderIDs   []string
		customers, days, ordersN int
	)
	for i, w := range ws {
		index[w.tenant] = i
		keys = append(keys, tenantLockKey(w.tenant))
		if len(orders[i]) == 0 {
			continue
		}
		r := &reads[i]
		r.stored, r.waiting = map[string]orderRow{}, map[string]map[string]int64{}
		var ds []int32
		for _, o := range orders[i] {
			r.names = append(r.names, string(o.Customer))
			ds = append(ds, dayOf(o.At))
			orderTenants, orderIDs = append(orderTenants, w.tenant), append(orderIDs, o.ID)
		}
		slices.Sort(r.names)
		r.names = slices.Compact(r.names)
		slices.Sort(ds)
		ds = slices.Compact(ds)
		// Customers the cache holds are read only if the version it holds
		// them at turns out not to be the tenant's.
		r.cachedAt, r.hits, r.cached = w.cache.lookup(w.tenant, r.names)
		toRead := r.names
		if len(r.hits) > 0 {
			toRead = slices.DeleteFunc(slices.Clone(r.names), func(n string) bool { _, ok := r.hits[n]; return ok })
		}
		for _, id := range w.newCustomers(toRead) {
			custTenants, custIDs = append(custTenants, w.tenant), append(custIDs, id)
		}
		stateTenants = append(stateTenants, w.tenant)
		for _, d := range ds {
			dayTenants, dayDays = append(dayTenants, w.tenant), append(dayDays, dayStart(d))
			w.readDays[d] = true
		}
		customers, days, ordersN = customers+len(r.names), days+len(ds), ordersN+len(orders[i])
	}
	b := &pgx.Batch{}
	if lock {
		slices.Sort(keys)
		b.Queue(lockTenants, slices.Compact(keys))
	}
	var tenant string
	b.Queue(selectCustomersOf, custTenants, custIDs).Query(func(rows pgx.Rows) error {
		var (
			id            string
			cseq          int32
			first, second pgtype.Timestamptz
		)
		_, err := pgx.ForEachRow(rows, []any{&tenant, &id, &cseq, &first, &second}, func() error {
			ws[index[tenant]].storedCustomer(id, cseq, first, second)
			return nil
		})
		return err
	})
	b.Queue(selectTenantStates, stateTenants).Query(func(rows pgx.Rows) error {
		var (
			next    int32
			version int64
		)
		_, err := pgx.ForEachRow(rows, []any{&tenant, &next, &version}, func() error {
			i := index[tenant]
			reads[i].next, ws[i].version = next, version
			return nil
		})
		return err
	})
	queueDayRows(b, dayTenants, dayDays, ws, index)
	b.Queue(selectStoredOrdersOf, orderTenants, orderIDs).Query(func(rows pgx.Rows) error {
		var (
			o    orderRow
			cseq int32
		)
		_, err := pgx.ForEachRow(rows, []any{&tenant, &o.id, &o.customer, &cseq, &o.at, &o.total, &o.currency, &o.refunded}, func() error {
			o.cseq, o.at = uint32(cseq), o.at.UTC()
			reads[index[tenant]].stored[o.id] = o
			return nil
		})
		return err
	})
	b.Queue(selectWaitingRefundsOf, orderTenants, orderIDs).Query(func(rows pgx.Rows) error {
		var (
			id, currency string
			sum          int64
		)
		_, err := pgx.ForEachRow(rows, []any{&tenant, &id, &currency, &sum}, func() error {
			w := reads[index[tenant]].waiting
			if w[id] == nil {
				w[id] = map[string]int64{}
			}
			w[id][currency] = sum
			return nil
		})
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("read %d customers, %d day bitmaps and %d stored orders of %d tenants: %w", customers, days, ordersN, len(stateTenants), err)
	}
	return reads, nil
}

// tableWrites are the rows a batch writes, of any number of tenants: send
// writes them with one statement per table.
type tableWrites struct {
	fresh, resent orderColumns
	state         struct {
		tenants  []string
		next     []int32
		versions []int64
	}
	customers struct {
		tenants, ids   []string
		cseqs          []int32
		firsts, second []pgtype.Timestamptz
	}
	days struct {
		tenants  []string
		versions []int64
		dayRowWrites
	}
	sales struct {
		tenants, currencies          []string
		days                         []time.Time
		orders, gross, refunded, net []int64
	}
	cohorts struct {
		tenants, currencies []string
		cohorts, months     []int32
		nets                []int64
	}
	surveys struct {
		tenants       []string
		days          []time.Time
		kinds, scores []int16
		counts        []int64
	}
	currencies struct{ tenants, currencies []string }
}

// Writes of many tenants' rows: the one-tenant statements with the tenant
// a column.
const (
	insertOrders = `
	INSERT INTO orders (tenant, order_id, customer_id, cseq, placed_at, total_minor, currency, refunded_minor)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::timestamptz[], $6::bigint[], $7::text[], $8::bigint[])`
	updateOrders = `
	UPDATE orders o SET customer_id = u.customer_id, cseq = u.cseq, placed_at = u.placed_at,
		total_minor = u.total_minor, currency = u.currency
	FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::timestamptz[], $6::bigint[], $7::text[])
	     AS u(tenant, order_id, customer_id, cseq, placed_at, total_minor, currency)
	WHERE o.tenant = u.tenant AND o.order_id = u.order_id`
	upsertTenantStates = `
	INSERT INTO tenant_state AS t (tenant, next_cseq, version)
	SELECT * FROM unnest($1::text[], $2::int4[], $3::bigint[])
	ON CONFLICT (tenant) DO UPDATE SET next_cseq = excluded.next_cseq, version = excluded.version`
	upsertCustomers = `
	INSERT INTO customers AS c (tenant, customer_id, cseq, first_order_at, second_order_at)
	SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[], $5::timestamptz[])
	ON CONFLICT (tenant, customer_id) DO UPDATE SET
		first_order_at = excluded.first_order_at, second_order_at = excluded.second_order_at`
	upsertDayRowsOf = `
	INSERT INTO day_buyers AS d (tenant, day, version, ge1, ge2, firsts, seconds)
	SELECT u.tenant, u.day, u.version, u.ge1, u.ge2, u.firsts, u.seconds
	FROM unnest($1::text[], $2::bigint[], $3::date[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[])
	     AS u(tenant, version, day, ge1, ge2, firsts, seconds)
	ON CONFLICT (tenant, day) DO UPDATE SET
		version = excluded.version, ge1 = excluded.ge1, ge2 = excluded.ge2,
		firsts = excluded.firsts, seconds = excluded.seconds`
	addSalesDaily = `
	INSERT INTO sales_daily AS s (tenant, day, currency, orders, gross_minor, refunded_minor, net_minor)
	SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
	ON CONFLICT (tenant, day, currency) DO UPDATE SET
		orders = s.orders + excluded.orders, gross_minor = s.gross_minor + excluded.gross_minor,
		refunded_minor = s.refunded_minor + excluded.refunded_minor, net_minor = s.net_minor + excluded.net_minor`
	addCohortRevenue = `
	INSERT INTO cohort_revenue AS c (tenant, cohort, month, currency, net_minor)
	SELECT * FROM unnest($1::text[], $2::int4[], $3::int4[], $4::text[], $5::bigint[])
	ON CONFLICT (tenant, cohort, month, currency) DO UPDATE SET net_minor = c.net_minor + excluded.net_minor`
	addSurveyDaily = `
	INSERT INTO survey_daily AS s (tenant, day, kind, score, answers)
	SELECT * FROM unnest($1::text[], $2::date[], $3::smallint[], $4::smallint[], $5::bigint[])
	ON CONFLICT (tenant, day, kind, score) DO UPDATE SET answers = s.answers + excluded.answers`
	insertTenantCurrencies = `
	INSERT INTO tenant_currencies (tenant, currency) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`
)

// queueOrders queues the order writes, first (statements after them may
// read the orders back).
func (t *tableWrites) queueOrders(b *pgx.Batch) {
	if f := &t.fresh; len(f.ids) > 0 {
		b.Queue(insertOrders, f.tenants, f.ids, f.customers, f.cseqs, f.placed, f.totals, f.currencies, f.refunded)
	}
	if r := &t.resent; len(r.ids) > 0 {
		b.Queue(updateOrders, r.tenants, r.ids, r.customers, r.cseqs, r.placed, r.totals, r.currencies)
	}
}

// send writes every row in one round trip.
func (t *tableWrites) send(ctx context.Context, tx pgx.Tx) error {
	b := &pgx.Batch{}
	t.queueOrders(b)
	if s := &t.state; len(s.tenants) > 0 {
		b.Queue(upsertTenantStates, s.tenants, s.next, s.versions)
	}
	if c := &t.customers; len(c.ids) > 0 {
		b.Queue(upsertCustomers, c.tenants, c.ids, c.cseqs, c.firsts, c.second)
	}
	if d := &t.days; len(d.days) > 0 {
		b.Queue(upsertDayRowsOf, d.tenants, d.versions, d.days, d.ge1, d.ge2, d.firsts, d.seconds)
	}
	if s := &t.sales; len(s.days) > 0 {
		b.Queue(addSalesDaily, s.tenants, s.days, s.currencies, s.orders, s.gross, s.refunded, s.net)
	}
	if c := &t.cohorts; len(c.cohorts) > 0 {
		b.Queue(addCohortRevenue, c.tenants, c.cohorts, c.months, c.currencies, c.nets)
	}
	if s := &t.surveys; len(s.days) > 0 {
		b.Queue(addSurveyDaily, s.tenants, s.days, s.kinds, s.scores, s.counts)
	}
	if c := &t.currencies; len(c.currencies) > 0 {
		b.Queue(insertTenantCurrencies, c.tenants, c.currencies)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write orders and aggregates: %w", err)
	}
	return nil
}

// Refunds and answers of many tenants: the one-tenant statements with the
// tenant a column. The refunds upsert keeps for each (tenant, refund id)
// the version that sorts first and returns the order a re-sent refund moved
// away from (the subquery reads the statement's snapshot: the row before
// the update); the answers upsert likewise, with the replaced version.
//
// A refund counts against its order only in the order's currency (no
// conversion). The upsert reads each refund's order once (u) and leaves out
// the refunds whose order is stored in another currency, which it returns
// as conflicts (id set) for the consumer to dead-letter, besides the orders
// re-sent refunds moved away from (id null); a refund whose order is not
// known yet is stored with its currency and counts only if the order
// arrives in it (refreshRefunds, planOrders). A refund without a currency
// (empty: stored before refunds kept theirs, or written by a caller of the
// store that names none) counts in any.
const (
	upsertRefundsOf = `
	WITH u AS (
		SELECT u.t, u.id, u.o, u.a, u.c, x.currency AS oc
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(t, id, o, c, a)
		LEFT JOIN LATERAL (SELECT currency FROM orders WHERE tenant = u.t AND order_id = u.o LIMIT 1) x ON true
	), w AS (
		INSERT INTO refunds AS r (tenant, refund_id, order_id, amount_minor, currency)
		SELECT t, id, o, a, c FROM u WHERE c = '' OR oc IS NULL OR oc = c
		ON CONFLICT (tenant, refund_id) DO UPDATE SET
			order_id = excluded.order_id, amount_minor = excluded.amount_minor, currency = excluded.currency
		WHERE (excluded.order_id, excluded.amount_minor, excluded.currency) < (r.order_id, r.amount_minor, r.currency)
		RETURNING r.tenant,
			CASE WHEN r.xmax <> 0 THEN (SELECT p.order_id FROM refunds p WHERE p.tenant = r.tenant AND p.refund_id = r.refund_id) END AS previous
	)
	SELECT t, id, o, c, oc FROM u WHERE oc <> c AND c <> ''
	UNION ALL
	SELECT tenant, NULL, previous, NULL, NULL FROM w WHERE previous IS NOT NULL`
	// refreshRefunds sets the refunded sum of the named orders (those
	// stored: a refund whose order has not arrived waits for it) to the
	// sum of their refunds in their currency where the two differ, and returns the changed
	// orders with the sum before (probing by id, the sum and the stored
	// value read from the statement's snapshot) and the customer's stored
	// first order. The rows to update are named by the ctid the probe
	// found (a TID scan per row): joined on (tenant, order_id), the planner
	// hashed the whole orders table when its statistics lagged behind its
	// growth (measured 8.5 ms a batch against 0.8 ms). A ctid names the
	// row version the probe saw, which stays current because the batch
	// holds its tenants' write locks (no other writer of their orders).
	// OFFSET 0 computes each sum once.
	refreshRefunds = `
	UPDATE orders o SET refunded_minor = s.refunded
	FROM (
		SELECT x.ctid AS row, x.refunded_minor AS stored, coalesce((
			SELECT sum(r.amount_minor) FROM refunds r
			WHERE r.tenant = u.t AND r.order_id = u.id AND r.currency IN (x.currency, '')), 0)::bigint AS refunded
		FROM unnest($1::text[], $2::text[]) AS u(t, id)
		CROSS JOIN LATERAL (
			SELECT ctid, refunded_minor, currency FROM orders WHERE tenant = u.t AND order_id = u.id LIMIT 1) x
		OFFSET 0
	) s
	WHERE o.ctid = s.row AND s.stored <> s.refunded
	RETURNING o.tenant, s.stored, o.order_id, o.customer_id, o.placed_at, o.total_minor, o.refunded_minor, o.currency,
		(SELECT c.first_order_at FROM customers c WHERE c.tenant = o.tenant AND c.customer_id = o.customer_id)`
	upsertAnswersOf = `
	INSERT INTO survey_answers AS s (tenant, answer_id, customer_id, answered_at, kind, score)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::smallint[], $6::smallint[])
	ON CONFLICT (tenant, answer_id) DO UPDATE SET
		customer_id = excluded.customer_id, answered_at = excluded.answered_at,
		kind = excluded.kind, score = excluded.score
	WHERE (excluded.customer_id, excluded.answered_at, excluded.kind, excluded.score)
	    < (s.customer_id, s.answered_at, s.kind, s.score)
	RETURNING s.tenant, s.answered_at, s.kind, s.score, s.xmax <> 0,
		CASE WHEN s.xmax <> 0 THEN (SELECT p.answered_at FROM survey_answers p WHERE p.tenant = s.tenant AND p.answer_id = s.answer_id) END,
		CASE WHEN s.xmax <> 0 THEN (SELECT p.kind FROM survey_answers p WHERE p.tenant = s.tenant AND p.answer_id = s.answer_id) END,
		CASE WHEN s.xmax <> 0 THEN (SELECT p.score FROM survey_answers p WHERE p.tenant = s.tenant AND p.answer_id = s.answer_id) END`
)

// tenantOrder is an order id of a tenant.
type tenantOrder struct{ tenant, id string }

// orderSet is a list of distinct (tenant, order id), as statement
// parameters.
type orderSet struct {
	seen         map[tenantOrder]bool
	tenants, ids []string
}

// add adds (tenant, id) unless it is in the set or in except.
func (s *orderSet) add(tenant, id string, except *orderSet) {
	k := tenantOrder{tenant, id}
	if s.seen[k] || (except != nil && except.seen[k]) {
		return
	}
	if s.seen == nil {
		s.seen = map[tenantOrder]bool{}
	}
	s.seen[k] = true
	s.tenants, s.ids = append(s.tenants, tenant), append(s.ids, id)
}

// applyRefundsAndAnswers writes the refunds and the survey answers of every
// tenant of the batch (fs[i] are ws[i]'s, whose orders are applied) and
// moves the aggregates by what they change: the sales and cohort revenue
// of each order whose refunded sum changes, the daily survey counters by
// the answers written and the versions they replaced. One round trip for
// all the tenants: the locks when lock is set (a batch without orders),
// the order writes not sent yet (refreshRefunds reads them back), the
// refunds upsert, the refresh of the orders the refunds name and the
// answers upsert; a second one refreshes the orders a re-sent refund moved
// away from (rare).
func applyRefundsAndAnswers(ctx context.Context, tx pgx.Tx, ws []*writeBatch, fs []TenantFacts, lock bool) error {
	index := make(map[string]int, len(ws))
	var (
		keys    []int64
		refunds struct {
			tenants, ids, orders, currencies []string
			amounts                          []int64
		}
		answers struct {
			tenants, ids, customers []string
			at                      []time.Time
			kinds, scores           []int16
		}
		named orderSet
	)
	for i, w := range ws {
		index[w.tenant] = i
		keys = append(keys, tenantLockKey(w.tenant))
		for _, r := range winningRefunds(fs[i].Facts.Refunds) {
			refunds.tenants, refunds.ids = append(refunds.tenants, w.tenant), append(refunds.ids, r.ID)
			refunds.orders, refunds.amounts = append(refunds.orders, r.OrderID), append(refunds.amounts, r.AmountMinor)
			refunds.currencies = append(refunds.currencies, r.Currency)
			named.add(w.tenant, r.OrderID, nil)
		}
		for _, a := range winningAnswers(fs[i].Facts.Answers) {
			answers.tenants, answers.ids, answers.customers = append(answers.tenants, w.tenant), append(answers.ids, a.ID), append(answers.customers, string(a.Customer))
			answers.at, answers.kinds, answers.scores = append(answers.at, a.At), append(answers.kinds, int16(a.Kind)), append(answers.scores, int16(a.Score))
		}
	}
	b := &pgx.Batch{}
	if lock {
		slices.Sort(keys)
		b.Queue(lockTenants, slices.Compact(keys))
	}
	var moved orderSet
	if len(refunds.ids) > 0 {
		// The refresh reads the orders back: the order writes go first.
		var writes tableWrites
		for _, w := range ws {
			writes.fresh.addAll(&w.fresh)
			writes.resent.addAll(&w.resent)
			w.fresh, w.resent = orderColumns{}, orderColumns{}
		}
		writes.queueOrders(b)
		b.Queue(upsertRefundsOf, refunds.tenants, refunds.ids, refunds.orders, refunds.currencies, refunds.amounts).Query(func(rows pgx.Rows) error {
			var (
				tenant, order                  string
				id, refundCurrency, currencyOf pgtype.Text
			)
			_, err := pgx.ForEachRow(rows, []any{&tenant, &id, &order, &refundCurrency, &currencyOf}, func() error {
				if !id.Valid {
					moved.add(tenant, order, &named)
					return nil
				}
				w := ws[index[tenant]]
				w.conflicts = append(w.conflicts, RefundConflict{
					Tenant: tenant, RefundID: id.String, OrderID: order,
					RefundCurrency: refundCurrency.String, OrderCurrency: currencyOf.String,
				})
				return nil
			})
			return err
		})
		queueRefresh(b, &named, ws, index)
	}
	if len(answers.ids) > 0 {
		b.Queue(upsertAnswersOf, answers.tenants, answers.ids, answers.customers, answers.at, answers.kinds, answers.scores).Query(func(rows pgx.Rows) error {
			var (
				tenant       string
				at           time.Time
				kind, score  int16
				updated      bool
				pAt          pgtype.Timestamptz
				pKind, pScor pgtype.Int2
			)
			_, err := pgx.ForEachRow(rows, []any{&tenant, &at, &kind, &score, &updated, &pAt, &pKind, &pScor}, func() error {
				w := ws[index[tenant]]
				w.surveys[surveyKey{dayOf(at), kind, score}]++
				if updated {
					w.surveys[surveyKey{dayOf(pAt.Time), pKind.Int16, pScor.Int16}]--
				}
				return nil
			})
			return err
		})
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write %d refunds and %d survey answers of %d tenants: %w", len(refunds.ids), len(answers.ids), len(ws), err)
	}
	if len(moved.ids) == 0 {
		return nil
	}
	b = &pgx.Batch{}
	queueRefresh(b, &moved, ws, index)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("refresh the refunds of %d orders re-sent refunds moved away from: %w", len(moved.ids), err)
	}
	return nil
}

// queueRefresh queues refreshRefunds of the orders os and moves each
// changed order's sales and cohort revenue in its tenant's batch
// (ws[index[tenant]]) from the refunded sum before to the one after.
func queueRefresh(b *pgx.Batch, os *orderSet, ws []*writeBatch, index map[string]int) {
	b.Queue(refreshRefunds, os.tenants, os.ids).Query(func(rows pgx.Rows) error {
		var (
			tenant string
			stored int64
			after  orderRow
			first  pgtype.Timestamptz
		)
		_, err := pgx.ForEachRow(rows, []any{&tenant, &stored, &after.id, &after.customer, &after.at, &after.total, &after.refunded, &after.currency, &first}, func() error {
			w := ws[index[tenant]]
			after.at = after.at.UTC()
			before := after
			before.refunded = stored
			// The customer's first order as of the end of the batch.
			cohortFirst := instant(first)
			if c := w.customers[after.customer]; c != nil {
				cohortFirst = c.newFirst
			}
			w.addSales(&before, -1)
			w.addSales(&after, +1)
			w.addCohort(cohortFirst, &before, -1)
			w.addCohort(cohortFirst, &after, +1)
			return nil
		})
		return err
	})
}
