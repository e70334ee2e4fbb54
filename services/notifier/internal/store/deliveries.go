package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/pg"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/policy"
)

// Delivery statuses.
const (
	StatusQueued     = "queued"
	StatusDeferred   = "deferred"
	StatusSending    = "sending"
	StatusSent       = "sent"
	StatusFailed     = "failed"
	StatusSuppressed = "suppressed"
)

// Delivery is one request's row.
type Delivery struct {
	Tenant, RequestID, CustomerID string
	Channel                       notifierv1.Channel
	Category                      notifierv1.Category
	Priority                      notifierv1.Priority
	Rank                          int32 // higher takes a free cap slot first; 0: unranked
	TemplateKey                   string
	TemplateVersion               int32
	CampaignID                    string
	Request                       *notifierv1.NotificationRequested
	Status                        string
	DueAt                         *time.Time
	ExpiresAt                     time.Time
	Attempts, Seq                 int32
	Outcome                       notifierv1.Outcome
	ReasonCode, Reason            string
	ProviderID, Locale            string
	RequestedAt                   time.Time
	CapAt                         *time.Time
	CreatedAt, UpdatedAt          time.Time
	// PrevStatus is the status before ClaimSend (sending: a reconcile).
	PrevStatus string
}

const deliveryCols = `d.tenant, d.request_id, d.customer_id, d.channel, d.category, d.priority, d.rank, d.template_key, d.template_version,
	d.campaign_id, d.request, d.status, d.due_at, d.expires_at, d.attempts, d.seq, d.outcome, d.reason_code, d.reason,
	d.provider_message_id, d.locale, d.requested_at, d.cap_at, d.created_at, d.updated_at`

func scanDelivery(row pgx.Row, extra ...any) (Delivery, error) {
	var d Delivery
	var ch, cat, pri, out int16
	var req []byte
	dest := []any{&d.Tenant, &d.RequestID, &d.CustomerID, &ch, &cat, &pri, &d.Rank, &d.TemplateKey, &d.TemplateVersion,
		&d.CampaignID, &req, &d.Status, &d.DueAt, &d.ExpiresAt, &d.Attempts, &d.Seq, &out, &d.ReasonCode, &d.Reason,
		&d.ProviderID, &d.Locale, &d.RequestedAt, &d.CapAt, &d.CreatedAt, &d.UpdatedAt}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return d, err
	}
	d.Channel, d.Category, d.Priority, d.Outcome = notifierv1.Channel(ch), notifierv1.Category(cat), notifierv1.Priority(pri), notifierv1.Outcome(out)
	d.Request = &notifierv1.NotificationRequested{}
	if err := proto.Unmarshal(req, d.Request); err != nil {
		return d, fmt.Errorf("decode stored request %s: %w", d.RequestID, err)
	}
	return d, nil
}

// InsertDeliveries records new requests; it returns the ones that were not
// there yet (the others are duplicates of a request id already handled).
func InsertDeliveries(ctx context.Context, tx pgx.Tx, ds []Delivery, now time.Time) (map[Key]bool, error) {
	n := len(ds)
	var (
		tenants, ids, customers, keys, campaigns = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		chs, cats, pris                          = make([]int16, n), make([]int16, n), make([]int16, n)
		ranks                                    = make([]int32, n)
		reqs                                     = make([][]byte, n)
		expires, requested                       = make([]time.Time, n), make([]time.Time, n)
	)
	for i, d := range ds {
		b, err := proto.Marshal(d.Request)
		if err != nil {
			return nil, fmt.Errorf("encode request %s: %w", d.RequestID, err)
		}
		tenants[i], ids[i], customers[i], keys[i], campaigns[i] = d.Tenant, d.RequestID, d.CustomerID, d.TemplateKey, d.CampaignID
		chs[i], cats[i], pris[i], ranks[i] = int16(d.Channel), int16(d.Category), int16(d.Priority), d.Rank
		reqs[i], expires[i], requested[i] = b, d.ExpiresAt, d.RequestedAt
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO deliveries (tenant, request_id, customer_id, channel, category, priority, template_key, campaign_id,
			request, expires_at, requested_at, rank, status, created_at, updated_at)
		SELECT u.*, 'pending', $13, $13
		FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::smallint[], $6::smallint[], $7::text[], $8::text[],
		            $9::bytea[], $10::timestamptz[], $11::timestamptz[], $12::int[]) AS u
		ON CONFLICT (tenant, request_id) DO NOTHING
		RETURNING tenant, request_id`,
		tenants, ids, customers, chs, cats, pris, keys, campaigns, reqs, expires, requested, ranks, now)
	if err != nil {
		return nil, fmt.Errorf("record %d requests: %w", n, err)
	}
	out := map[Key]bool{}
	for rows.Next() {
		var k Key
		if err := rows.Scan(&k.Tenant, &k.Customer); err != nil {
			return nil, err
		}
		out[k] = true
	}
	return out, rows.Err()
}

// ClaimDueCustomers takes, for a timer pass in tx, the customers of the
// first limit deferred deliveries that are due (earliest due first) whose
// policy lock (LockCustomers) it gets without waiting; their due
// deliveries are then LockDueDeferred's.
//
// The pass claims customers, not rows: a row claimed first and its
// customer locked after, as passes did, let two passes each hold some of
// a customer's due requests, and whichever decided first gave the cap's
// free slot to its own, whatever the other's rank. Customers another
// transaction is deciding are left to it. The rows are looked at with FOR
// UPDATE SKIP LOCKED so that concurrent passes (replicas) find different
// customers, the ones other deciders hold being locked, but inside a
// savepoint rolled back at once: a row lock kept would make a decider
// that holds the customer's lock wait for this pass, which may wait for
// it in turn.
func ClaimDueCustomers(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]Key, error) {
	look, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("find customers with due deferred deliveries: %w", err)
	}
	rows, err := look.Query(ctx, `SELECT DISTINCT tenant, customer_id FROM (
			SELECT tenant, customer_id FROM deliveries
			WHERE status = 'deferred' AND due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) AS due`, now, limit)
	var seen []Key
	if err == nil {
		seen, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Key])
	}
	if rerr := look.Rollback(ctx); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("find customers with due deferred deliveries: %w", err)
	}
	if len(seen) == 0 {
		return nil, nil
	}
	ts, cs := split(seen)
	rows, err = tx.Query(ctx, `
		SELECT t, c FROM unnest($1::text[], $2::text[]) AS u(t, c)
		WHERE pg_try_advisory_xact_lock(`+customerLockKey+`)`, ts, cs)
	if err != nil {
		return nil, fmt.Errorf("lock customers with due deferred deliveries: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Key])
	if err != nil {
		return nil, fmt.Errorf("lock customers with due deferred deliveries: %w", err)
	}
	return keys, nil
}

// LockDueDeferred locks and returns the deferred deliveries of keys that
// are due, to be decided in tx with whatever else of those customers is
// being decided. tx must hold the customers' locks (LockCustomers, or
// ClaimDueCustomers for the customers it returns): every transaction that
// locks a deferred row holds its customer's lock, or holds the row only
// for ClaimDueCustomers' look, so waiting here for a row cannot close a
// cycle.
func LockDueDeferred(ctx context.Context, tx pgx.Tx, keys []Key, now time.Time) ([]Delivery, error) {
	ts, cs := split(keys)
	rows, err := tx.Query(ctx, `SELECT `+deliveryCols+` FROM deliveries d
		WHERE (d.tenant, d.customer_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND d.status = 'deferred' AND d.due_at <= $3
		FOR UPDATE`, ts, cs, now)
	if err != nil {
		return nil, fmt.Errorf("lock due deferred deliveries: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) { return scanDelivery(r) })
}

// Save writes a delivery's state.
func Save(ctx context.Context, q Querier, d Delivery, now time.Time) error {
	return SaveAll(ctx, q, []Delivery{d}, now)
}

// SaveAll writes the state of deliveries in one statement: a consumer
// batch's decisions cost one round trip, not one per request.
func SaveAll(ctx context.Context, q Querier, ds []Delivery, now time.Time) error {
	if len(ds) == 0 {
		return nil
	}
	n := len(ds)
	var (
		tenants, ids, statuses, codes, reasons, providers, locales = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		dues, caps                                                 = make([]*time.Time, n), make([]*time.Time, n)
		attempts, seqs, versions                                   = make([]int32, n), make([]int32, n), make([]int32, n)
		outcomes                                                   = make([]int16, n)
	)
	for i, d := range ds {
		tenants[i], ids[i], statuses[i], codes[i], reasons[i], providers[i], locales[i] = d.Tenant, d.RequestID, d.Status, d.ReasonCode, d.Reason, d.ProviderID, d.Locale
		dues[i], caps[i], attempts[i], seqs[i], versions[i], outcomes[i] = d.DueAt, d.CapAt, d.Attempts, d.Seq, d.TemplateVersion, int16(d.Outcome)
	}
	_, err := q.Exec(ctx, `
		UPDATE deliveries d SET status = u.status, due_at = u.due_at, attempts = u.attempts, seq = u.seq, outcome = u.outcome,
			reason_code = u.code, reason = u.reason, provider_message_id = u.provider, locale = u.locale, cap_at = u.cap_at,
			template_version = u.version, lease_until = NULL, updated_at = $14
		FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::int[], $7::smallint[], $8::text[],
		            $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::int[])
		     AS u(tenant, request_id, status, due_at, attempts, seq, outcome, code, reason, provider, locale, cap_at, version)
		WHERE d.tenant = u.tenant AND d.request_id = u.request_id`,
		tenants, ids, statuses, dues, attempts, seqs, outcomes, codes, reasons, providers, locales, caps, versions, now)
	if err != nil {
		return fmt.Errorf("save %d deliveries (the first %s): %w", n, ds[0].RequestID, err)
	}
	return nil
}

// Trail is steps to append to one delivery's decision trail.
type Trail struct {
	Tenant, RequestID string
	Steps             []policy.Step
}

// AddDecisions appends steps to a delivery's decision trail.
func AddDecisions(ctx context.Context, q Querier, tenant, requestID string, steps []policy.Step, at time.Time) error {
	return AddTrails(ctx, q, []Trail{{Tenant: tenant, RequestID: requestID, Steps: steps}}, at)
}

// AddTrails appends to the decision trails of deliveries in one
// statement, numbering each delivery's steps after those it has.
func AddTrails(ctx context.Context, q Querier, trails []Trail, at time.Time) error {
	var tenants, ids, stages, verdicts, codes, reasons []string
	var ords []int32
	for _, t := range trails {
		for i, s := range t.Steps {
			tenants, ids, ords = append(tenants, t.Tenant), append(ids, t.RequestID), append(ords, int32(i+1))
			stages, verdicts, codes, reasons = append(stages, s.Stage), append(verdicts, s.Verdict), append(codes, s.Code), append(reasons, s.Reason)
		}
	}
	if len(tenants) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, `
		INSERT INTO delivery_decisions (tenant, request_id, step, stage, verdict, reason_code, reason, decided_at)
		SELECT u.tenant, u.request_id,
		       (SELECT coalesce(max(step), 0) FROM delivery_decisions x WHERE x.tenant = u.tenant AND x.request_id = u.request_id) + u.o,
		       u.stage, u.verdict, u.code, u.reason, $8
		FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[])
		     AS u(tenant, request_id, o, stage, verdict, code, reason)`,
		tenants, ids, ords, stages, verdicts, codes, reasons, at)
	if err != nil {
		return fmt.Errorf("record the decisions of %d deliveries (the first %s): %w", len(trails), trails[0].RequestID, err)
	}
	return nil
}

// ClaimSend marks up to limit deliveries as being sent (attempt counted,
// lease set) and commits before anything is sent: queued ones that are due,
// and sending ones whose lease ran out (an attempt interrupted by a crash,
// reconciled by sending again with the same idempotency key): without
// takeOver only those whose lease ran out more than a lease ago.
func ClaimSend(ctx context.Context, q Querier, now time.Time, lease time.Duration, limit int, takeOver bool) ([]Delivery, error) {
	rows, err := q.Query(ctx, `
		WITH c AS (
			SELECT tenant, request_id, status AS prev FROM deliveries
			WHERE (status = 'queued' AND due_at <= $1) OR (status = 'sending' AND lease_until < CASE WHEN $4 THEN $1 ELSE $1 - ($2 - $1) END)
			ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
		UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1, lease_until = $2, updated_at = $1
		FROM c WHERE d.tenant = c.tenant AND d.request_id = c.request_id
		RETURNING `+deliveryCols+`, c.prev`, now, now.Add(lease), limit, takeOver)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries to send: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var prev string
		d, err := scanDelivery(r, &prev)
		d.PrevStatus = prev
		return d, err
	})
}

// LockSending re-reads a delivery being sent, locked, to finish it; ok is
// false when it is no longer this attempt's (a lease that ran out and was
// claimed again).
func LockSending(ctx context.Context, tx pgx.Tx, tenant, requestID string, attempts int32) (Delivery, bool, error) {
	d, err := scanDelivery(tx.QueryRow(ctx, `SELECT `+deliveryCols+` FROM deliveries d WHERE tenant = $1 AND request_id = $2 FOR UPDATE`, tenant, requestID))
	if err != nil {
		return d, false, fmt.Errorf("lock delivery %s: %w", requestID, err)
	}
	return d, d.Status == StatusSending && d.Attempts == attempts, nil
}

// Decision is one stored step of a trail.
type Decision struct {
	Step                               int32
	Stage, Verdict, ReasonCode, Reason string
	At                                 time.Time
}

// GetDelivery returns a delivery and its decision trail, both read from
// one snapshot: an attempt saves its status and its step in one
// transaction, and two statements read under read committed could show a
// delivery still sending with the step that already sent it back to the
// queue.
func GetDelivery(ctx context.Context, pool *pgxpool.Pool, tenant, requestID string) (d Delivery, ds []Decision, err error) {
	err = pg.InSnapshot(ctx, pool, func(tx pgx.Tx) error {
		d, err = scanDelivery(tx.QueryRow(ctx, `SELECT `+deliveryCols+` FROM deliveries d WHERE tenant = $1 AND request_id = $2 AND status <> 'pending'`, tenant, requestID))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("get delivery %s: %w", requestID, err)
		}
		rows, err := tx.Query(ctx, `SELECT step, stage, verdict, reason_code, reason, decided_at FROM delivery_decisions
			WHERE tenant = $1 AND request_id = $2 ORDER BY step`, tenant, requestID)
		if err != nil {
			return fmt.Errorf("get decisions of %s: %w", requestID, err)
		}
		ds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Decision, error) {
			var x Decision
			err := r.Scan(&x.Step, &x.Stage, &x.Verdict, &x.ReasonCode, &x.Reason, &x.At)
			return x, err
		})
		return err
	})
	return d, ds, err
}

// ListFilter selects deliveries of one customer or one campaign.
type ListFilter struct {
	Tenant, Customer, Campaign string
	// After is the (created_at, request_id) of the last row of the previous
	// page.
	AfterAt *time.Time
	AfterID string
	Limit   int
}

// ListDeliveries returns deliveries newest first.
func ListDeliveries(ctx context.Context, q Querier, f ListFilter) ([]Delivery, error) {
	where := `d.tenant = $1 AND d.status <> 'pending'`
	args := []any{f.Tenant, f.Limit}
	if f.Customer != "" {
		args = append(args, f.Customer)
		where += fmt.Sprintf(" AND d.customer_id = $%d", len(args))
	}
	if f.Campaign != "" {
		args = append(args, f.Campaign)
		where += fmt.Sprintf(" AND d.campaign_id = $%d", len(args))
	}
	if f.AfterAt != nil {
		args = append(args, *f.AfterAt, f.AfterID)
		where += fmt.Sprintf(" AND (d.created_at, d.request_id) < ($%d, $%d)", len(args)-1, len(args))
	}
	rows, err := q.Query(ctx, `SELECT `+deliveryCols+` FROM deliveries d WHERE `+where+` ORDER BY d.created_at DESC, d.request_id DESC LIMIT $2`, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) { return scanDelivery(r) })
}

// Count is how many of a tenant's deliveries have a status and reason.
type Count struct {
	Status, ReasonCode string
	N                  int
}

// Counts are a tenant's deliveries by status and reason, most first.
func Counts(ctx context.Context, q Querier, tenant string) ([]Count, error) {
	rows, err := q.Query(ctx, `SELECT status, reason_code, count(*) FROM deliveries WHERE tenant = $1
		GROUP BY status, reason_code ORDER BY count(*) DESC, status, reason_code`, tenant)
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	var out []Count
	for rows.Next() {
		var c Count
		if err := rows.Scan(&c.Status, &c.ReasonCode, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
