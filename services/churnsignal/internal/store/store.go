// Package store owns churn-signal's database: the features projection built
// from facts, the current scores, the fitted models and the weights. Every
// read of features takes an instant and uses only facts from before it.
package store

import (
	"cmp"
	"context"
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/churnsignal/internal/facts"
	"github.com/retainhq/retain/services/churnsignal/internal/model"
	"github.com/retainhq/retain/services/churnsignal/internal/score"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the churn-signal tables.
var Migrations = pg.MigrationSet{Component: "churnsignal", FS: migrationFiles, Dir: "migrations"}

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ApplyFacts writes a batch of facts into the projection in tx, one
// statement per table, and makes sure every customer concerned has a score
// row (so that rescoring can lock it). The writes commute: the same facts in
// any order or any number of times give the same rows.
func ApplyFacts(ctx context.Context, tx pgx.Tx, b *facts.Batch, customers []facts.Customer) error {
	batch := &pgx.Batch{}
	if len(b.Orders) > 0 {
		// Several events naming one order in one statement would make ON
		// CONFLICT touch a row twice: keep the winner of the same rule.
		win := map[[2]string]facts.Order{}
		for _, o := range b.Orders {
			k := [2]string{o.Tenant, o.OrderID}
			if cur, ok := win[k]; !ok || orderBefore(o, cur) {
				win[k] = o
			}
		}
		var tenant, id, customer, event, currency []string
		var placed []time.Time
		var amount []int64
		for _, k := range sortedKeys(win) {
			o := win[k]
			tenant, id, customer, event, currency = append(tenant, o.Tenant), append(id, o.OrderID), append(customer, o.CustomerID), append(event, o.EventID), append(currency, o.Currency)
			placed, amount = append(placed, o.PlacedAt), append(amount, o.AmountMinor)
		}
		batch.Queue(`
			INSERT INTO churn_orders AS o (tenant_id, order_id, customer_id, placed_at, amount_minor, currency, event_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[])
			ON CONFLICT (tenant_id, order_id) DO UPDATE SET
				customer_id = excluded.customer_id, placed_at = excluded.placed_at,
				amount_minor = excluded.amount_minor, currency = excluded.currency, event_id = excluded.event_id
			WHERE (excluded.placed_at, excluded.event_id) < (o.placed_at, o.event_id)`,
			tenant, id, customer, placed, amount, currency, event)
	}
	if len(b.Opened) > 0 {
		win := map[[2]string]facts.TicketOpened{}
		for _, t := range b.Opened {
			k := [2]string{t.Tenant, t.TicketID}
			if cur, ok := win[k]; !ok || t.OpenedAt.Before(cur.OpenedAt) || (t.OpenedAt.Equal(cur.OpenedAt) && t.EventID < cur.EventID) {
				win[k] = t
			}
		}
		var tenant, id, customer, event []string
		var opened []time.Time
		var category []int16
		for _, k := range sortedKeys(win) {
			t := win[k]
			tenant, id, customer, event = append(tenant, t.Tenant), append(id, t.TicketID), append(customer, t.CustomerID), append(event, t.EventID)
			opened, category = append(opened, t.OpenedAt), append(category, t.Category)
		}
		batch.Queue(`
			INSERT INTO churn_tickets AS t (tenant_id, ticket_id, customer_id, opened_at, category, opened_event_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::smallint[], $6::text[])
			ON CONFLICT (tenant_id, ticket_id) DO UPDATE SET
				customer_id = excluded.customer_id, opened_at = excluded.opened_at,
				category = excluded.category, opened_event_id = excluded.opened_event_id
			WHERE t.opened_at IS NULL OR (excluded.opened_at, excluded.opened_event_id) < (t.opened_at, t.opened_event_id)`,
			tenant, id, customer, opened, category, event)
	}
	if len(b.Resolved) > 0 {
		win := map[[2]string]facts.TicketResolved{}
		for _, t := range b.Resolved {
			k := [2]string{t.Tenant, t.TicketID}
			if cur, ok := win[k]; !ok || t.ResolvedAt.Before(cur.ResolvedAt) {
				win[k] = t
			}
		}
		var tenant, id, customer []string
		var resolved []time.Time
		for _, k := range sortedKeys(win) {
			t := win[k]
			tenant, id, customer, resolved = append(tenant, t.Tenant), append(id, t.TicketID), append(customer, t.CustomerID), append(resolved, t.ResolvedAt)
		}
		// The customer of a ticket is the opening's when known.
		batch.Queue(`
			INSERT INTO churn_tickets AS t (tenant_id, ticket_id, customer_id, resolved_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
			ON CONFLICT (tenant_id, ticket_id) DO UPDATE SET resolved_at = least(t.resolved_at, excluded.resolved_at)`,
			tenant, id, customer, resolved)
	}
	if len(b.Answers) > 0 {
		var tenant, id, customer, survey []string
		var kind, sc []int16
		var at []time.Time
		for _, a := range b.Answers {
			tenant, id, customer, survey = append(tenant, a.Tenant), append(id, a.AnswerID), append(customer, a.CustomerID), append(survey, a.SurveyID)
			kind, sc, at = append(kind, a.Kind), append(sc, a.Score), append(at, a.AnsweredAt)
		}
		batch.Queue(`
			INSERT INTO churn_answers (tenant_id, answer_id, customer_id, survey_id, kind, score, answered_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::smallint[], $6::smallint[], $7::timestamptz[])
			ON CONFLICT DO NOTHING`, tenant, id, customer, survey, kind, sc, at)
	}
	if len(b.Renewals) > 0 {
		var tenant, id, customer []string
		var date []*time.Time
		var at []time.Time
		for _, r := range b.Renewals {
			tenant, id, customer = append(tenant, r.Tenant), append(id, r.EventID), append(customer, r.CustomerID)
			date, at = append(date, r.Date), append(at, r.UpdatedAt)
		}
		batch.Queue(`
			INSERT INTO churn_renewals (tenant_id, event_id, customer_id, renewal_date, updated_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::timestamptz[])
			ON CONFLICT DO NOTHING`, tenant, id, customer, date, at)
	}
	if len(customers) > 0 {
		tenants := map[string]bool{}
		var ts, ids []string
		for _, c := range customers {
			tenants[c.Tenant] = true
			ts, ids = append(ts, c.Tenant), append(ids, c.ID)
		}
		batch.Queue(`INSERT INTO churn_tenants (tenant_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, slices.Sorted(mapKeys(tenants)))
		batch.Queue(`
			INSERT INTO churn_scores (tenant_id, customer_id)
			SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2
			ON CONFLICT DO NOTHING`, ts, ids)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("apply facts: %w", err)
	}
	return nil
}

func orderBefore(a, b facts.Order) bool {
	return a.PlacedAt.Before(b.PlacedAt) || (a.PlacedAt.Equal(b.PlacedAt) && a.EventID < b.EventID)
}

func sortedKeys[V any](m map[[2]string]V) [][2]string {
	ks := make([][2]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	return ks
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Selector picks a tenant's customers: a list of ids, or the range of ids
// after After up to and including Through (to the end when Through is nil).
type Selector struct {
	IDs     []string
	Range   bool
	After   string
	Through *string
}

// IDs selects a list of customers.
func IDs(ids ...string) Selector { return Selector{IDs: ids} }

// Range selects the customers with ids in (after, through], or after after
// when through is nil.
func Range(after string, through *string) Selector {
	return Selector{Range: true, After: after, Through: through}
}

// where returns the condition on customer_id and its arguments, numbered
// from $n.
func (s Selector) where(n int) (string, []any) {
	if !s.Range {
		return fmt.Sprintf("customer_id = ANY($%d::text[])", n), []any{s.IDs}
	}
	if s.Through == nil {
		return fmt.Sprintf("customer_id > $%d", n), []any{s.After}
	}
	return fmt.Sprintf("customer_id > $%d AND customer_id <= $%d", n, n+1), []any{s.After, *s.Through}
}

func (s Selector) String() string {
	if !s.Range {
		return fmt.Sprintf("%d customers", len(s.IDs))
	}
	if s.Through == nil {
		return fmt.Sprintf("customers after %q", s.After)
	}
	return fmt.Sprintf("customers in (%q, %q]", s.After, *s.Through)
}

// LoadFeatures reads what is known about the selected customers as of asOf
// (facts that happened at or before it), all the score needs: not the mean
// order value (see MeanOrderValue), which a pass would read for nothing.
// Customers with no fact by then are absent from the result.
func LoadFeatures(ctx context.Context, q Querier, tenant string, sel Selector, asOf time.Time) (map[string]*score.Features, error) {
	cond, condArgs := sel.where(3)
	args := append([]any{tenant, asOf}, condArgs...)
	out := make(map[string]*score.Features, len(sel.IDs))
	var id string
	r := featureRows{asOf: asOf, key: []any{&id}, get: func() *score.Features {
		f := out[id]
		if f == nil {
			f = &score.Features{AsOf: asOf}
			out[id] = f
		}
		return f
	}}
	batch := &pgx.Batch{}
	batch.Queue(`
		SELECT customer_id, count(*)::int, count(DISTINCT (placed_at AT TIME ZONE 'UTC')::date)::int, min(placed_at), max(placed_at)
		FROM churn_orders
		WHERE tenant_id = $1 AND `+cond+` AND placed_at <= $2
		GROUP BY customer_id`, args...).Query(r.orders)
	// Tickets that can still count: opened in the last 90 days or open.
	batch.Queue(`
		SELECT customer_id, opened_at, category, resolved_at FROM churn_tickets
		WHERE tenant_id = $1 AND `+cond+` AND opened_at <= $2
		  AND (opened_at > $2 - interval '90 days' OR resolved_at IS NULL OR resolved_at > $2)
		ORDER BY customer_id, opened_at, ticket_id`, args...).Query(r.tickets)
	batch.Queue(`
		SELECT customer_id, kind, score, answered_at FROM churn_answers
		WHERE tenant_id = $1 AND `+cond+` AND answered_at <= $2
		ORDER BY customer_id, answered_at, answer_id`, args...).Query(r.answers)
	batch.Queue(`
		SELECT DISTINCT ON (customer_id) customer_id, renewal_date FROM churn_renewals
		WHERE tenant_id = $1 AND `+cond+` AND updated_at <= $2
		ORDER BY customer_id, updated_at DESC, event_id DESC`, args...).Query(r.renewals)
	if err := sendBatch(ctx, q, batch); err != nil {
		return nil, fmt.Errorf("load features of %s of %s: %w", sel, tenant, err)
	}
	return out, nil
}

// LoadFeaturesOf reads what LoadFeatures does for customers of any number
// of tenants, with one statement per table whatever their number: the
// features by tenant and customer id.
func LoadFeaturesOf(ctx context.Context, q Querier, customers []facts.Customer, asOf time.Time) (map[string]map[string]*score.Features, error) {
	out := map[string]map[string]*score.Features{}
	if tenant, ids, ok := oneTenant(customers); ok {
		// The usual batch: the one-tenant statements, which read a table
		// by one index scan instead of a probe per customer.
		fs, err := LoadFeatures(ctx, q, tenant, IDs(ids...), asOf)
		if len(fs) > 0 {
			out[tenant] = fs
		}
		return out, err
	}
	tenants, ids := customerColumns(customers)
	var tenant, id string
	r := featureRows{asOf: asOf, key: []any{&tenant, &id}, get: func() *score.Features {
		fs := out[tenant]
		if fs == nil {
			fs = map[string]*score.Features{}
			out[tenant] = fs
		}
		f := fs[id]
		if f == nil {
			f = &score.Features{AsOf: asOf}
			fs[id] = f
		}
		return f
	}}
	// One index probe per customer: the subqueries cannot be pulled up
	// into a join (an aggregate, OFFSET 0, LIMIT), which a table believed
	// small could have planned as a scan of every tenant's rows.
	batch := &pgx.Batch{}
	batch.Queue(`
		SELECT u.t, u.c, o.n, o.days, o.first, o.last FROM unnest($1::text[], $2::text[]) AS u(t, c)
		CROSS JOIN LATERAL (
			SELECT count(*)::int AS n, count(DISTINCT (placed_at AT TIME ZONE 'UTC')::date)::int AS days, min(placed_at) AS first, max(placed_at) AS last
			FROM churn_orders WHERE tenant_id = u.t AND customer_id = u.c AND placed_at <= $3) o
		WHERE o.n > 0`, tenants, ids, asOf).Query(r.orders)
	batch.Queue(`
		SELECT u.t, u.c, k.opened_at, k.category, k.resolved_at FROM unnest($1::text[], $2::text[]) AS u(t, c)
		CROSS JOIN LATERAL (
			SELECT opened_at, category, resolved_at, ticket_id FROM churn_tickets
			WHERE tenant_id = u.t AND customer_id = u.c AND opened_at <= $3
			  AND (opened_at > $3 - interval '90 days' OR resolved_at IS NULL OR resolved_at > $3)
			OFFSET 0) k
		ORDER BY 1, 2, k.opened_at, k.ticket_id`, tenants, ids, asOf).Query(r.tickets)
	batch.Queue(`
		SELECT u.t, u.c, a.kind, a.score, a.answered_at FROM unnest($1::text[], $2::text[]) AS u(t, c)
		CROSS JOIN LATERAL (
			SELECT kind, score, answered_at, answer_id FROM churn_answers
			WHERE tenant_id = u.t AND customer_id = u.c AND answered_at <= $3
			OFFSET 0) a
		ORDER BY 1, 2, a.answered_at, a.answer_id`, tenants, ids, asOf).Query(r.answers)
	batch.Queue(`
		SELECT u.t, u.c, r.renewal_date FROM unnest($1::text[], $2::text[]) AS u(t, c)
		CROSS JOIN LATERAL (
			SELECT renewal_date FROM churn_renewals
			WHERE tenant_id = u.t AND customer_id = u.c AND updated_at <= $3
			ORDER BY updated_at DESC, event_id DESC LIMIT 1) r`, tenants, ids, asOf).Query(r.renewals)
	if err := sendBatch(ctx, q, batch); err != nil {
		return nil, fmt.Errorf("load features of %d customers: %w", len(customers), err)
	}
	return out, nil
}

// featureRows reads the rows of the features queries into features: each
// row starts with the columns naming its customer (scanned into key), and
// get returns the features of the customer just scanned.
type featureRows struct {
	asOf time.Time
	key  []any
	get  func() *score.Features
}

func (r featureRows) scan(rows pgx.Rows, dest ...any) error {
	return rows.Scan(append(slices.Clip(r.key), dest...)...)
}

func (r featureRows) orders(rows pgx.Rows) error {
	for rows.Next() {
		var n, daysN int
		var first, last time.Time
		if err := r.scan(rows, &n, &daysN, &first, &last); err != nil {
			return err
		}
		f := r.get()
		f.Orders, f.PurchaseDays, f.FirstOrder, f.LastOrder = n, daysN, first, last
	}
	return rows.Err()
}

func (r featureRows) tickets(rows pgx.Rows) error {
	for rows.Next() {
		var t score.Ticket
		var cat int16
		var resolved *time.Time
		if err := r.scan(rows, &t.OpenedAt, &cat, &resolved); err != nil {
			return err
		}
		t.Category = score.TicketCategory(cat)
		if resolved != nil && !resolved.After(r.asOf) {
			t.ResolvedAt = *resolved
		}
		f := r.get()
		f.Tickets = append(f.Tickets, t)
	}
	return rows.Err()
}

func (r featureRows) answers(rows pgx.Rows) error {
	for rows.Next() {
		var kind, sc int16
		var at time.Time
		if err := r.scan(rows, &kind, &sc, &at); err != nil {
			return err
		}
		f := r.get()
		f.Answers = append(f.Answers, score.Answer{Kind: score.SurveyKind(kind), Score: int(sc), AnsweredAt: at})
	}
	return rows.Err()
}

func (r featureRows) renewals(rows pgx.Rows) error {
	for rows.Next() {
		var d *time.Time
		if err := r.scan(rows, &d); err != nil {
			return err
		}
		f := r.get()
		if d != nil {
			f.RenewalDate = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
		}
	}
	return rows.Err()
}

// MeanOrderValue is a customer's mean order value as of asOf, in the
// currency of most of their orders (the alphabetically first on a tie);
// zero without orders.
func MeanOrderValue(ctx context.Context, q Querier, tenant, id string, asOf time.Time) (score.Money, error) {
	var m score.Money
	var n int
	var sum float64
	err := q.QueryRow(ctx, `
		SELECT currency, count(*)::int, sum(amount_minor)::float8
		FROM churn_orders
		WHERE tenant_id = $1 AND customer_id = $2 AND placed_at <= $3
		GROUP BY currency
		ORDER BY count(*) DESC, currency LIMIT 1`, tenant, id, asOf).Scan(&m.Currency, &n, &sum)
	if errors.Is(err, pgx.ErrNoRows) {
		return score.Money{}, nil
	}
	if err != nil {
		return score.Money{}, fmt.Errorf("mean order value of %s: %w", id, err)
	}
	m.AmountMinor = int64(math.Round(sum / float64(n)))
	return m, nil
}

// batchSender is what pgx.Tx, *pgx.Conn and *pgxpool.Pool have in common
// for batches.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

func sendBatch(ctx context.Context, q Querier, b *pgx.Batch) error {
	s, ok := q.(batchSender)
	if !ok {
		return errors.New("querier cannot send batches")
	}
	return s.SendBatch(ctx, b).Close()
}

// Reason is a stored reason: code, points and evidence. Its sentence is
// rendered when it is read (Describe), so that it reads right as of then.
type Reason struct {
	Code         string `json:"code"`
	Contribution int    `json:"contribution"`
	score.Evidence
	// Description is the sentence of a reason written before evidence was
	// stored (migration 0002), shown as stored until a rescoring rewrites
	// the row.
	Description string `json:"description,omitzero"`
}

// Describe is the reason's sentence as of asOf.
func (r Reason) Describe(asOf time.Time) string {
	if r.Description != "" {
		return r.Description
	}
	return score.Reason{Code: r.Code, Contribution: r.Contribution, Evidence: r.Evidence}.Describe(asOf)
}

// Reasons are the stored form of a score's reasons.
func Reasons(rs []score.Reason) []Reason {
	out := make([]Reason, len(rs))
	for i, r := range rs {
		out[i] = Reason{Code: r.Code, Contribution: r.Contribution, Evidence: r.Evidence}
	}
	return out
}

// ScoreRow is a customer's stored score.
type ScoreRow struct {
	CustomerID string
	Score      int
	// Exact is the unrounded score when Score or Band last changed: a
	// rescoring that finds only a different fraction of a point leaves it.
	Exact float64
	Band  score.Band
	// Reasons are not read back by the locking reads, only their hash.
	Reasons     []Reason
	ReasonsHash int64
	// Published is the band last announced in a churn.risk_changed (or, for
	// a first score in LOW, taken as known): Band unless a change was held
	// back while the facts consumer was behind (column held_from, void once
	// a writer of an earlier release announced a change since: heldFrom).
	Published   score.Band
	BandChanges int
	// ComputedAt is when the row was last written.
	ComputedAt time.Time
}

// HashReasons is the stored fingerprint of a score's reasons: it changes
// when a code, a contribution or any evidence does, never with time alone.
// A pass hashes every customer's reasons and writes only the few that
// changed, so this encodes nothing and allocates nothing (xxHash of the
// fields' bytes; stable across processes, as stored values must be).
func HashReasons(rs []score.Reason) int64 {
	var buf [1024]byte
	b := buf[:0]
	for i := range rs {
		r, e := &rs[i], &rs[i].Evidence
		b = append(b, r.Code...)
		b = append(b, 0)
		b = binary.AppendVarint(b, int64(r.Contribution))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Expected))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Reference))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.HorizonWeeks))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.GapDays))
		b = binary.AppendVarint(b, int64(e.RepeatDays))
		b = binary.AppendVarint(b, int64(e.Tickets30))
		b = binary.AppendVarint(b, int64(e.Tickets90))
		b = binary.AppendVarint(b, int64(e.OpenTickets))
		b = binary.AppendVarint(b, int64(e.RenewalLead))
		b = append(b, boolByte(e.BeforeRenewal))
		b = binary.AppendVarint(b, e.FirstOrder.UnixNano())
		b = binary.AppendVarint(b, e.LastOrder.UnixNano())
		b = binary.AppendVarint(b, e.RenewalDate.UnixNano())
		b = appendSurvey(b, &e.NPS)
		b = appendSurvey(b, &e.CSAT)
	}
	return int64(xxhash.Sum64(b))
}

func appendSurvey(b []byte, s *score.SurveyEvidence) []byte {
	b = binary.AppendVarint(b, int64(s.Latest))
	b = binary.AppendVarint(b, int64(s.Answers))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.Mean))
	return binary.AppendVarint(b, s.At.UnixNano())
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

const (
	// heldFrom is held_from unless void: replicas of a release before it
	// (a rolling update) announce a band change against the stored band,
	// numbered band_changes + 1, and leave held_from as it was. held_changes
	// is band_changes when held_from was written (migration 0007), so a
	// band_changes since moved tells that the stored band was announced.
	heldFrom = `CASE WHEN held_changes = band_changes THEN held_from END`
	// isHeld selects the rows whose band change is held back; its first
	// term is the predicate of their partial index.
	isHeld       = `held_from IS NOT NULL AND held_changes = band_changes`
	scoreColumns = `customer_id, score, score_exact, band, reasons, reasons_hash, coalesce(` + heldFrom + `, band), band_changes, computed_at`
	// lockColumns leave the reasons out: writers compare their hash.
	lockColumns = `customer_id, score, score_exact, band, NULL::jsonb, reasons_hash, coalesce(` + heldFrom + `, band), band_changes, computed_at`
)

func scanScore(row pgx.CollectableRow) (ScoreRow, error) {
	var r ScoreRow
	err := scanScoreInto(row, &r)
	return r, err
}

// scanScoreInto scans the score columns into r, after the columns of
// first (if any).
func scanScoreInto(row pgx.CollectableRow, r *ScoreRow, first ...any) error {
	var sc, band, published int16
	var at *time.Time
	err := row.Scan(append(first, &r.CustomerID, &sc, &r.Exact, &band, &r.Reasons, &r.ReasonsHash, &published, &r.BandChanges, &at)...)
	r.Score, r.Band, r.Published = int(sc), score.Band(band), score.Band(published)
	if at != nil {
		r.ComputedAt = *at
	}
	return err
}

// LockScores locks the score rows of ids in tenant (in customer order, as
// every writer does, so writers never deadlock) and returns them.
func LockScores(ctx context.Context, tx pgx.Tx, tenant string, ids []string) ([]ScoreRow, error) {
	rows, err := tx.Query(ctx, `
		SELECT `+lockColumns+` FROM churn_scores
		WHERE tenant_id = $1 AND customer_id = ANY($2::text[])
		ORDER BY customer_id FOR UPDATE`, tenant, ids)
	if err != nil {
		return nil, fmt.Errorf("lock %d scores of %s: %w", len(ids), tenant, err)
	}
	out, err := pgx.CollectRows(rows, scanScore)
	if err != nil {
		return nil, fmt.Errorf("lock %d scores of %s: %w", len(ids), tenant, err)
	}
	return out, nil
}

// LockHeldScores locks up to limit score rows of tenant whose band change
// is held back (held_from set, not void), of customers after after, in
// customer order as every writer locks, and returns them. A row released by
// another writer meanwhile is skipped, so fewer than limit rows do not
// mean none are left: read until none is returned.
func LockHeldScores(ctx context.Context, tx pgx.Tx, tenant, after string, limit int) ([]ScoreRow, error) {
	rows, err := tx.Query(ctx, `
		SELECT `+lockColumns+` FROM churn_scores
		WHERE tenant_id = $1 AND `+isHeld+` AND customer_id > $2
		ORDER BY customer_id LIMIT $3 FOR UPDATE`, tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("lock held scores of %s: %w", tenant, err)
	}
	out, err := pgx.CollectRows(rows, scanScore)
	if err != nil {
		return nil, fmt.Errorf("lock held scores of %s: %w", tenant, err)
	}
	return out, nil
}

// HeldTenants lists the tenants with a band change held back.
func HeldTenants(ctx context.Context, q Querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT tenant_id FROM churn_scores WHERE `+isHeld+` ORDER BY tenant_id`)
	if err != nil {
		return nil, fmt.Errorf("list tenants with held band changes: %w", err)
	}
	ts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tenants with held band changes: %w", err)
	}
	return ts, nil
}

// TenantScores are score rows of one tenant.
type TenantScores struct {
	Tenant string
	Rows   []ScoreRow
}

// LockScoresOf locks the score rows of customers of any number of tenants
// with one statement, in (tenant, customer) order as every writer locks
// (LockScores is the one-tenant case), and returns them grouped by tenant,
// in that order.
func LockScoresOf(ctx context.Context, tx pgx.Tx, customers []facts.Customer) ([]TenantScores, error) {
	if tenant, ids, ok := oneTenant(customers); ok {
		rows, err := LockScores(ctx, tx, tenant, ids)
		if err != nil || len(rows) == 0 {
			return nil, err
		}
		return []TenantScores{{Tenant: tenant, Rows: rows}}, nil
	}
	tenants, ids := customerColumns(customers)
	rows, err := tx.Query(ctx, `
		SELECT tenant_id, `+lockColumns+` FROM churn_scores s
		JOIN unnest($1::text[], $2::text[]) AS u(t, c) ON s.tenant_id = u.t AND s.customer_id = u.c
		ORDER BY tenant_id, customer_id FOR UPDATE OF s`, tenants, ids)
	if err != nil {
		return nil, fmt.Errorf("lock %d scores: %w", len(customers), err)
	}
	type tenantRow struct {
		tenant string
		row    ScoreRow
	}
	locked, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tenantRow, error) {
		var r tenantRow
		err := scanScoreInto(row, &r.row, &r.tenant)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("lock %d scores: %w", len(customers), err)
	}
	var out []TenantScores
	for _, r := range locked {
		if len(out) == 0 || out[len(out)-1].Tenant != r.tenant {
			out = append(out, TenantScores{Tenant: r.tenant})
		}
		last := &out[len(out)-1]
		last.Rows = append(last.Rows, r.row)
	}
	return out, nil
}

// oneTenant returns the tenant and the ids of customers when they are all
// of one tenant.
func oneTenant(customers []facts.Customer) (tenant string, ids []string, ok bool) {
	if len(customers) == 0 {
		return "", nil, false
	}
	tenant = customers[0].Tenant
	ids = make([]string, len(customers))
	for i, c := range customers {
		if c.Tenant != tenant {
			return "", nil, false
		}
		ids[i] = c.ID
	}
	return tenant, ids, true
}

// customerColumns are customers as two parallel arrays.
func customerColumns(customers []facts.Customer) (tenants, ids []string) {
	tenants, ids = make([]string, len(customers)), make([]string, len(customers))
	for i, c := range customers {
		tenants[i], ids[i] = c.Tenant, c.ID
	}
	return tenants, ids
}

// ScoreRange returns the score rows of tenant's customers selected by a
// range selector, in customer order, without locking them (reasons left
// out, as by LockScores).
func ScoreRange(ctx context.Context, q Querier, tenant string, sel Selector) ([]ScoreRow, error) {
	cond, condArgs := sel.where(2)
	rows, err := q.Query(ctx, `
		SELECT `+lockColumns+` FROM churn_scores
		WHERE tenant_id = $1 AND `+cond+`
		ORDER BY customer_id`, append([]any{tenant}, condArgs...)...)
	if err != nil {
		return nil, fmt.Errorf("read scores of %s of %s: %w", sel, tenant, err)
	}
	out, err := pgx.CollectRows(rows, scanScore)
	if err != nil {
		return nil, fmt.Errorf("read scores of %s of %s: %w", sel, tenant, err)
	}
	return out, nil
}

// Boundaries splits tenant's customers into ranges of about size customers:
// it returns the last id of every full range, in order. The ranges are
// ("", b0], (b0, b1], ..., (bn, end).
func Boundaries(ctx context.Context, q Querier, tenant string, size int) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT customer_id FROM (
			SELECT customer_id, row_number() OVER (ORDER BY customer_id) AS n
			FROM churn_scores WHERE tenant_id = $1
		) s WHERE n % $2 = 0 ORDER BY customer_id`, tenant, size)
	if err != nil {
		return nil, fmt.Errorf("split customers of %s: %w", tenant, err)
	}
	bs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("split customers of %s: %w", tenant, err)
	}
	return bs, nil
}

// ReadScore returns a customer's stored score.
func ReadScore(ctx context.Context, q Querier, tenant, id string) (ScoreRow, bool, error) {
	rows, err := q.Query(ctx, `SELECT `+scoreColumns+` FROM churn_scores WHERE tenant_id = $1 AND customer_id = $2`, tenant, id)
	if err != nil {
		return ScoreRow{}, false, fmt.Errorf("read score of %s: %w", id, err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanScore)
	if errors.Is(err, pgx.ErrNoRows) {
		return ScoreRow{}, false, nil
	}
	if err != nil {
		return ScoreRow{}, false, fmt.Errorf("read score of %s: %w", id, err)
	}
	return r, true, nil
}

// WriteScores stores new scores of tenant's customers (rows locked by the
// caller) with one statement; ReasonsHash must be HashReasons of the
// reasons the row was computed with.
func WriteScores(ctx context.Context, tx pgx.Tx, tenant string, rs []ScoreRow) error {
	return WriteScoresOf(ctx, tx, []TenantScores{{Tenant: tenant, Rows: rs}})
}

// WriteScoresOf stores new scores of customers of any number of tenants
// (rows locked by the caller, as by LockScoresOf) with one statement;
// ReasonsHash must be HashReasons of the reasons the row was computed
// with. A row's held_from is written with held_changes, its band_changes
// (see heldFrom).
func WriteScoresOf(ctx context.Context, tx pgx.Tx, ts []TenantScores) error {
	var (
		w       scoreWrites
		tenants []string
	)
	for _, t := range ts {
		for _, r := range t.Rows {
			if err := w.add(r); err != nil {
				return err
			}
			tenants = append(tenants, t.Tenant)
		}
	}
	if len(tenants) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `
		UPDATE churn_scores s SET score = u.score, score_exact = u.exact, band = u.band, reasons = u.reasons::jsonb,
			reasons_hash = u.hash, held_from = nullif(u.published, u.band),
			held_changes = CASE WHEN u.published <> u.band THEN u.changes END, band_changes = u.changes, computed_at = u.at
		FROM unnest($1::text[], $2::text[], $3::smallint[], $4::float8[], $5::smallint[], $6::text[], $7::bigint[], $8::smallint[], $9::int[], $10::timestamptz[])
			AS u(tenant_id, customer_id, score, exact, band, reasons, hash, published, changes, at)
		WHERE s.tenant_id = u.tenant_id AND s.customer_id = u.customer_id`,
		tenants, w.ids, w.scores, w.exact, w.bands, w.reasons, w.hashes, w.published, w.changes, w.at); err != nil {
		return fmt.Errorf("write %d scores: %w", len(tenants), err)
	}
	return nil
}

// scoreWrites are score rows as statement parameters.
type scoreWrites struct {
	ids, reasons             []string
	scores, bands, published []int16
	exact                    []float64
	changes                  []int32
	hashes                   []int64
	at                       []time.Time
}

func (w *scoreWrites) add(r ScoreRow) error {
	rsn := r.Reasons
	if rsn == nil {
		rsn = []Reason{}
	}
	js, err := json.Marshal(rsn)
	if err != nil {
		return fmt.Errorf("encode reasons of %s: %w", r.CustomerID, err)
	}
	w.ids, w.reasons = append(w.ids, r.CustomerID), append(w.reasons, string(js))
	w.scores, w.bands = append(w.scores, int16(r.Score)), append(w.bands, int16(r.Band))
	w.published = append(w.published, int16(r.Published))
	w.exact, w.changes = append(w.exact, r.Exact), append(w.changes, int32(r.BandChanges))
	w.hashes, w.at = append(w.hashes, r.ReasonsHash), append(w.at, r.ComputedAt)
	return nil
}

// MarkRescored records that a complete rescoring pass of tenant started at
// at (kept when a later pass is already recorded).
func MarkRescored(ctx context.Context, q Querier, tenant string, at time.Time) error {
	if _, err := q.Exec(ctx, `UPDATE churn_tenants SET rescored_at = greatest(rescored_at, $2) WHERE tenant_id = $1`, tenant, at); err != nil {
		return fmt.Errorf("record the rescoring of %s: %w", tenant, err)
	}
	return nil
}

// RescoredAt is when the last complete rescoring pass of tenant started
// (zero before the first).
func RescoredAt(ctx context.Context, q Querier, tenant string) (time.Time, error) {
	var at *time.Time
	err := q.QueryRow(ctx, `SELECT rescored_at FROM churn_tenants WHERE tenant_id = $1`, tenant).Scan(&at)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, fmt.Errorf("read the last rescoring of %s: %w", tenant, err)
	}
	if at == nil {
		return time.Time{}, nil
	}
	return *at, nil
}

// Order is the order ListScores lists in.
type Order int

const (
	// ByScore is the ranking: score descending, then customer id
	// descending. A score moves with every event, so a listing paged in
	// this order can miss or repeat a customer whose score changed.
	ByScore Order = iota
	// ByCustomer is customer id ascending, which no score change moves: a
	// listing paged in it holds each customer at most once.
	ByCustomer
)

// Cursor is a position in a listing: the last row listed (Exact is not
// read ByCustomer).
type Cursor struct {
	Exact      float64
	CustomerID string
}

// ListScores returns up to limit scored customers of tenant after cursor
// (nil: from the start) in order, optionally of one band, and RescoredAt,
// both read from one snapshot: a pass commits the rows it changes before
// it records its start, and the two read under read committed could pair
// a row from before the pass with the pass's start, as if the pass had
// found the old score still right.
func ListScores(ctx context.Context, pool *pgxpool.Pool, tenant string, band score.Band, order Order, limit int, after *Cursor) (rs []ScoreRow, rescored time.Time, err error) {
	err = pg.InSnapshot(ctx, pool, func(tx pgx.Tx) error {
		if rs, err = listScores(ctx, tx, tenant, band, order, limit, after); err != nil {
			return err
		}
		rescored, err = RescoredAt(ctx, tx, tenant)
		return err
	})
	return rs, rescored, err
}

func listScores(ctx context.Context, q Querier, tenant string, band score.Band, order Order, limit int, after *Cursor) ([]ScoreRow, error) {
	args := []any{tenant, limit}
	where := `tenant_id = $1 AND band <> 0`
	if band != score.BandUnspecified {
		args = append(args, int16(band))
		where += fmt.Sprintf(" AND band = $%d", len(args))
	}
	orderBy := `score_exact DESC, customer_id DESC`
	switch {
	case order == ByCustomer:
		orderBy = `customer_id`
		if after != nil {
			args = append(args, after.CustomerID)
			where += fmt.Sprintf(" AND customer_id > $%d", len(args))
		}
	case after != nil:
		args = append(args, after.Exact, after.CustomerID)
		where += fmt.Sprintf(" AND (score_exact, customer_id) < ($%d, $%d)", len(args)-1, len(args))
	}
	rows, err := q.Query(ctx, `SELECT `+scoreColumns+` FROM churn_scores WHERE `+where+`
		ORDER BY `+orderBy+` LIMIT $2`, args...)
	if err != nil {
		return nil, fmt.Errorf("list scores of %s: %w", tenant, err)
	}
	out, err := pgx.CollectRows(rows, scanScore)
	if err != nil {
		return nil, fmt.Errorf("list scores of %s: %w", tenant, err)
	}
	return out, nil
}

// History is what a fit reads of a tenant: the BG/NBD histories of its
// customers, grouped, and the size of the data they came from.
type History struct {
	Groups []model.Group
	// TypicalGapDays is the median gap between purchase days over customers
	// with repeat purchases (0 when none).
	TypicalGapDays float64
	Size
}

// Size is how much purchase data a tenant has: orders, and the customers
// who placed them.
type Size struct{ Orders, Customers int64 }

// Histories returns the BG/NBD histories of tenant's customers as of asOf,
// grouped (customers with equal histories share a group), computed in the
// database: purchase days are UTC calendar days of orders placed by asOf,
// T runs to asOf's UTC day.
func Histories(ctx context.Context, q Querier, tenant string, asOf time.Time) (History, error) {
	// One ordered pass per customer (count(DISTINCT) makes Postgres group
	// by sorting, which the (tenant, customer, placed_at) index feeds): a
	// DISTINCT of (customer, day) first would hash millions of groups.
	rows, err := q.Query(ctx, `
		WITH h AS (
			SELECT count(DISTINCT (placed_at AT TIME ZONE 'UTC')::date) - 1 AS x,
			       (max(placed_at) AT TIME ZONE 'UTC')::date - (min(placed_at) AT TIME ZONE 'UTC')::date AS tx,
			       ($2 AT TIME ZONE 'UTC')::date - (min(placed_at) AT TIME ZONE 'UTC')::date AS t,
			       count(*) AS orders
			FROM churn_orders WHERE tenant_id = $1 AND placed_at <= $2
			GROUP BY customer_id
		)
		SELECT x::int, tx::int, t::int, count(*)::int, sum(orders)::bigint FROM h GROUP BY x, tx, t ORDER BY x, tx, t`, tenant, asOf)
	if err != nil {
		return History{}, fmt.Errorf("histories of %s: %w", tenant, err)
	}
	type hist struct {
		x, tx, t, n int
		orders      int64
	}
	hs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hist, error) {
		var h hist
		err := r.Scan(&h.x, &h.tx, &h.t, &h.n, &h.orders)
		return h, err
	})
	if err != nil {
		return History{}, fmt.Errorf("histories of %s: %w", tenant, err)
	}
	out := History{Groups: make([]model.Group, len(hs))}
	type gap struct {
		days float64
		n    int
	}
	var gaps []gap
	total := 0
	for i, h := range hs {
		out.Groups[i] = model.Group{Summary: model.Summary{X: h.x, Tx: float64(h.tx) / 7, T: float64(h.t) / 7}, Count: h.n}
		out.Orders += h.orders
		out.Customers += int64(h.n)
		if h.x > 0 {
			gaps = append(gaps, gap{float64(h.tx) / float64(h.x), h.n})
			total += h.n
		}
	}
	slices.SortFunc(gaps, func(a, b gap) int { return cmp.Compare(a.days, b.days) })
	seen := 0
	for _, g := range gaps {
		seen += g.n
		if 2*seen >= total {
			out.TypicalGapDays = g.days
			break
		}
	}
	return out, nil
}

// DataSize counts the orders of tenant placed by asOf and the customers
// who placed them, as Histories does, without building the histories: one
// read of the (tenant, customer, placed_at) index, grouped in its order.
func DataSize(ctx context.Context, q Querier, tenant string, asOf time.Time) (Size, error) {
	var s Size
	if err := q.QueryRow(ctx, `
		SELECT count(*), coalesce(sum(n), 0)::bigint FROM (
			SELECT count(*) AS n FROM churn_orders WHERE tenant_id = $1 AND placed_at <= $2 GROUP BY customer_id
		) c`, tenant, asOf).Scan(&s.Customers, &s.Orders); err != nil {
		return Size{}, fmt.Errorf("data size of %s: %w", tenant, err)
	}
	return s, nil
}

// Model is a stored fit.
type Model struct {
	Params         model.Params
	LogLikelihood  float64
	Customers      int
	Converged      bool
	TypicalGapDays float64
	AsOf           time.Time
	Pinned         bool
	FittedAt       time.Time
	// Orders is how many orders the fit read (0 for fits stored before it
	// was recorded); with Customers, what the model was fitted on.
	Orders int64
}

// SaveModel makes m the tenant's current model.
//
// A fit replaces only an older one (fits run for seconds, and a manual
// refit may start after an automatic one and end before it); an automatic
// fit (automatic) never replaces a pinned model, whenever the pin came.
// stored reports whether m replaced the stored model.
func SaveModel(ctx context.Context, q Querier, tenant string, m Model, automatic bool) (stored bool, err error) {
	tag, err := q.Exec(ctx, `
		INSERT INTO churn_models (tenant_id, r, alpha, a, b, log_likelihood, customers, converged, typical_gap_days, as_of, pinned, fitted_at, orders)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (tenant_id) DO UPDATE SET r = excluded.r, alpha = excluded.alpha, a = excluded.a, b = excluded.b,
			log_likelihood = excluded.log_likelihood, customers = excluded.customers, converged = excluded.converged,
			typical_gap_days = excluded.typical_gap_days, as_of = excluded.as_of, pinned = excluded.pinned, fitted_at = excluded.fitted_at,
			orders = excluded.orders
		WHERE churn_models.fitted_at <= excluded.fitted_at AND NOT ($14 AND churn_models.pinned)`,
		tenant, m.Params.R, m.Params.Alpha, m.Params.A, m.Params.B, m.LogLikelihood, m.Customers, m.Converged,
		m.TypicalGapDays, m.AsOf, m.Pinned, m.FittedAt, m.Orders, automatic)
	if err != nil {
		return false, fmt.Errorf("save model of %s: %w", tenant, err)
	}
	return tag.RowsAffected() == 1, nil
}

const modelColumns = `r, alpha, a, b, log_likelihood, customers, converged, typical_gap_days, as_of, pinned, fitted_at, orders`

// scanner is a row or rows.
type scanner interface{ Scan(dest ...any) error }

// scanModel scans modelColumns into m, after the columns of first.
func scanModel(row scanner, m *Model, first ...any) error {
	return row.Scan(append(first, &m.Params.R, &m.Params.Alpha, &m.Params.A, &m.Params.B, &m.LogLikelihood, &m.Customers, &m.Converged,
		&m.TypicalGapDays, &m.AsOf, &m.Pinned, &m.FittedAt, &m.Orders)...)
}

// LoadModel returns the tenant's current model; ok is false before the
// first fit.
func LoadModel(ctx context.Context, q Querier, tenant string) (m Model, ok bool, err error) {
	err = scanModel(q.QueryRow(ctx, `SELECT `+modelColumns+` FROM churn_models WHERE tenant_id = $1`, tenant), &m)
	if errors.Is(err, pgx.ErrNoRows) {
		return Model{}, false, nil
	}
	if err != nil {
		return Model{}, false, fmt.Errorf("load model of %s: %w", tenant, err)
	}
	return m, true, nil
}

// TenantWeights are a tenant's weights as stored.
type TenantWeights struct {
	score.Weights
	// Default is true when the tenant never set any: Weights are the
	// defaults.
	Default   bool
	UpdatedAt time.Time
}

// LoadWeights returns the tenant's weights, the defaults without a row.
func LoadWeights(ctx context.Context, q Querier, tenant string) (TenantWeights, error) {
	return loadWeights(ctx, q, tenant, "")
}

const weightsColumns = `purchase_outlook, overdue, support_tickets, price_complaints, sentiment, medium_at, high_at, hysteresis, updated_at`

// scanWeights scans weightsColumns into w, after the columns of first.
func scanWeights(row scanner, w *TenantWeights, first ...any) error {
	return row.Scan(append(first, &w.PurchaseOutlook, &w.Overdue, &w.SupportTickets, &w.PriceComplaints, &w.Sentiment,
		&w.MediumAt, &w.HighAt, &w.Hysteresis, &w.UpdatedAt)...)
}

func loadWeights(ctx context.Context, q Querier, tenant, lock string) (TenantWeights, error) {
	var w TenantWeights
	err := scanWeights(q.QueryRow(ctx, `SELECT `+weightsColumns+` FROM churn_weights WHERE tenant_id = $1 `+lock, tenant), &w)
	if errors.Is(err, pgx.ErrNoRows) {
		return TenantWeights{Weights: score.DefaultWeights(), Default: true}, nil
	}
	if err != nil {
		return TenantWeights{}, fmt.Errorf("load weights of %s: %w", tenant, err)
	}
	if err := w.Validate(); err != nil {
		return TenantWeights{}, fmt.Errorf("weights of %s: %w", tenant, err)
	}
	return w, nil
}

// LoadModelsAndWeights reads the current models and the weights of
// tenants in one round trip: models has the tenants with a fit (as
// LoadModel), weights every tenant (as LoadWeights: the defaults without a
// row).
func LoadModelsAndWeights(ctx context.Context, q Querier, tenants []string) (models map[string]Model, weights map[string]TenantWeights, err error) {
	models, weights = make(map[string]Model, len(tenants)), make(map[string]TenantWeights, len(tenants))
	batch := &pgx.Batch{}
	batch.Queue(`SELECT tenant_id, `+modelColumns+` FROM churn_models WHERE tenant_id = ANY($1::text[])`, tenants).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var tenant string
			var m Model
			if err := scanModel(rows, &m, &tenant); err != nil {
				return err
			}
			models[tenant] = m
		}
		return rows.Err()
	})
	batch.Queue(`SELECT tenant_id, `+weightsColumns+` FROM churn_weights WHERE tenant_id = ANY($1::text[])`, tenants).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var tenant string
			var w TenantWeights
			if err := scanWeights(rows, &w, &tenant); err != nil {
				return err
			}
			if err := w.Validate(); err != nil {
				return fmt.Errorf("weights of %s: %w", tenant, err)
			}
			weights[tenant] = w
		}
		return rows.Err()
	})
	if err := sendBatch(ctx, q, batch); err != nil {
		return nil, nil, fmt.Errorf("load models and weights of %d tenants: %w", len(tenants), err)
	}
	for _, t := range tenants {
		if _, ok := weights[t]; !ok {
			weights[t] = TenantWeights{Weights: score.DefaultWeights(), Default: true}
		}
	}
	return models, weights, nil
}

// SaveWeights stores the tenant's weights.
func SaveWeights(ctx context.Context, q Querier, tenant string, w score.Weights) error {
	if err := w.Validate(); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `
		INSERT INTO churn_weights (tenant_id, purchase_outlook, overdue, support_tickets, price_complaints, sentiment, medium_at, high_at, hysteresis)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (tenant_id) DO UPDATE SET purchase_outlook = excluded.purchase_outlook, overdue = excluded.overdue,
			support_tickets = excluded.support_tickets, price_complaints = excluded.price_complaints, sentiment = excluded.sentiment,
			medium_at = excluded.medium_at, high_at = excluded.high_at, hysteresis = excluded.hysteresis, updated_at = now()`,
		tenant, w.PurchaseOutlook, w.Overdue, w.SupportTickets, w.PriceComplaints, w.Sentiment, w.MediumAt, w.HighAt, w.Hysteresis); err != nil {
		return fmt.Errorf("save weights of %s: %w", tenant, err)
	}
	return nil
}

// UpdateWeights changes the tenant's weights in one transaction: update
// gets the current ones (the defaults when never set) to change. Nothing is
// stored when update fails or leaves them invalid (a score.FieldErrors).
// Concurrent updates are serialised, so none is lost.
func UpdateWeights(ctx context.Context, pool *pgxpool.Pool, tenant string, update func(*score.Weights) error) (TenantWeights, error) {
	var out TenantWeights
	err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		// A row to lock even for a tenant that never set weights: two
		// first-time updates would otherwise both start from the defaults.
		d := score.DefaultWeights()
		if _, err := tx.Exec(ctx, `
			INSERT INTO churn_weights (tenant_id, purchase_outlook, overdue, support_tickets, price_complaints, sentiment, medium_at, high_at, hysteresis)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
			tenant, d.PurchaseOutlook, d.Overdue, d.SupportTickets, d.PriceComplaints, d.Sentiment, d.MediumAt, d.HighAt, d.Hysteresis); err != nil {
			return fmt.Errorf("update weights of %s: %w", tenant, err)
		}
		cur, err := loadWeights(ctx, tx, tenant, "FOR UPDATE")
		if err != nil {
			return err
		}
		w := cur.Weights
		if err := update(&w); err != nil {
			return err
		}
		if err := w.Validate(); err != nil {
			return err
		}
		if err := SaveWeights(ctx, tx, tenant, w); err != nil {
			return err
		}
		out, err = loadWeights(ctx, tx, tenant, "")
		return err
	})
	return out, err
}

// Tenants lists every tenant with facts.
func Tenants(ctx context.Context, q Querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT tenant_id FROM churn_tenants ORDER BY tenant_id`)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	ts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return ts, nil
}
