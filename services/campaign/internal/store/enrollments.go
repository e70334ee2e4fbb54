package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/services/campaign/internal/domain"
)

// Entrant is a customer about to enter a tenant's campaign.
type Entrant struct {
	Tenant     string
	CampaignID string
	CustomerID string
	Key        string
	Anchor     time.Time
	Holdout    bool // the assignment if this is the customer's first entry
	Vars       Vars
	TimeZone   string // the customer's, for local-time waits ("": UTC)
}

// Admission is the entrants of one campaign whose entry policy has a gap
// (once per Gap), any number per customer.
type Admission struct {
	Gap      time.Duration
	Entrants []Entrant
}

// MemberKey names a customer of a tenant's campaign.
type MemberKey struct{ Tenant, CampaignID, CustomerID string }

func (e Entrant) member() MemberKey { return MemberKey{e.Tenant, e.CampaignID, e.CustomerID} }

// admitting is one customer's entrants of one campaign in a batch,
// oldest first.
type admitting struct {
	key MemberKey
	gap time.Duration
	es  []Entrant
}

// Admit applies the gaps of a batch's campaigns, of any tenants, and
// returns the entrants admitted, with their persisted holdout group. An
// entrant enters when its anchor is at least the gap away from each of
// the customer's entries in the campaign, earlier or later, and from
// each entrant of the batch admitted before it: a customer's entrants are
// taken oldest first, so a batch admits what the same events applied one
// by one in time order would. A customer's member row keeps the group
// and the last entry.
//
// A customer with one entrant (nearly every one, in a stream in order)
// passes the member row's conditional upsert: atomic, so concurrent or
// duplicate triggers cannot both pass; an entrant older than the last
// entry has the customer's enrollments' anchors in the campaign probed,
// in the same statement. Customers with several entrants have their
// member rows locked and the anchors of their entries within the gap of
// their entrants read first (one more round trip, only for batches that
// hold such customers), are admitted in Go, and their member rows are
// updated only if unchanged since the read (a row another transaction
// created meanwhile admits none of them).
// One round trip besides, whatever the gaps. (Policies without a gap need
// no member row: the enrollment's unique key decides.)
func Admit(ctx context.Context, tx pgx.Tx, as []Admission) ([]Entrant, error) {
	groups := map[MemberKey]*admitting{}
	var order []*admitting
	n := 0
	for _, a := range as {
		for _, e := range a.Entrants {
			g := groups[e.member()]
			if g == nil {
				g = &admitting{key: e.member(), gap: a.Gap}
				groups[g.key] = g
				order = append(order, g)
			}
			g.es = append(g.es, e)
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	single := map[MemberKey]Entrant{}
	gapped := map[time.Duration][]Entrant{}
	var gaps []time.Duration
	var several []*admitting
	for _, g := range order {
		if len(g.es) > 1 {
			slices.SortStableFunc(g.es, func(a, b Entrant) int { return a.Anchor.Compare(b.Anchor) })
			several = append(several, g)
			continue
		}
		e := g.es[0]
		single[g.key] = e
		if _, ok := gapped[g.gap]; !ok {
			gaps = append(gaps, g.gap)
		}
		gapped[g.gap] = append(gapped[g.gap], e)
	}
	batch := &pgx.Batch{}
	for _, gap := range gaps {
		tenants, camps, custs, holds, ats := entrantArrays(gapped[gap])
		// The second arm is an entrant older than the last entry (out of
		// order): it enters if no entry of the customer's in the campaign
		// is anchored within the gap of it (the primary key's prefix).
		batch.Queue(`
			INSERT INTO campaign_members AS m (tenant, campaign_id, customer_id, holdout, last_entered_at, entries)
			SELECT *, 1 FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::timestamptz[])
			ON CONFLICT (tenant, campaign_id, customer_id) DO UPDATE
				SET last_entered_at = greatest(m.last_entered_at, excluded.last_entered_at), entries = m.entries + 1
				WHERE excluded.last_entered_at >= m.last_entered_at + make_interval(secs => $6::bigint)
					OR (excluded.last_entered_at <= m.last_entered_at - make_interval(secs => $6::bigint)
						AND NOT EXISTS (SELECT FROM enrollments e
							WHERE e.tenant = m.tenant AND e.campaign_id = m.campaign_id AND e.customer_id = m.customer_id
								AND e.anchor_at > excluded.last_entered_at - make_interval(secs => $6::bigint)
								AND e.anchor_at < excluded.last_entered_at + make_interval(secs => $6::bigint)))
			RETURNING tenant, campaign_id, customer_id, holdout`, tenants, camps, custs, holds, ats, int64(gap/time.Second))
	}
	var out []Entrant
	chained := map[MemberKey][]Entrant{}
	if len(several) > 0 {
		var err error
		if chained, err = admitSeveral(ctx, tx, several, batch); err != nil {
			return nil, err
		}
	}
	br := tx.SendBatch(ctx, batch)
	for range batch.Len() {
		rows, err := br.Query()
		if err == nil {
			out, err = collectAdmitted(rows, single, chained, out)
		}
		if err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("admit %d entrants: %w", n, err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("admit %d entrants: %w", n, err)
	}
	return out, nil
}

// admitSeveral decides the entrants of customers with several in the
// batch: it locks their member rows (in key order) and reads the anchors
// of their entries in the campaigns that are within the gap of one of
// their entrants, admits each entrant, oldest first, that is at least the
// gap from every entry and every entrant admitted before it, and queues on
// batch the member rows' writes, whose RETURNING rows name the customers
// whose admitted entrants (the result) enter.
func admitSeveral(ctx context.Context, tx pgx.Tx, gs []*admitting, batch *pgx.Batch) (map[MemberKey][]Entrant, error) {
	slices.SortFunc(gs, func(a, b *admitting) int {
		return cmp.Or(cmp.Compare(a.key.Tenant, b.key.Tenant), cmp.Compare(a.key.CampaignID, b.key.CampaignID), cmp.Compare(a.key.CustomerID, b.key.CustomerID))
	})
	n := len(gs)
	tenants, camps, custs := make([]string, n), make([]string, n), make([]string, n)
	los, his := make([]time.Time, n), make([]time.Time, n)
	for i, g := range gs {
		tenants[i], camps[i], custs[i] = g.key.Tenant, g.key.CampaignID, g.key.CustomerID
		// Only an entry closer than the gap to one of the entrants (sorted
		// oldest first) can keep one out: a long-lived customer's others
		// are left in the database (the primary key's prefix finds the
		// customer's entries, the range filters them; an index on the
		// anchor would cost every enrollment insert a write).
		los[i], his[i] = g.es[0].Anchor.Add(-g.gap), g.es[len(g.es)-1].Anchor.Add(g.gap)
	}
	last := map[MemberKey]time.Time{}
	anchors := map[MemberKey][]time.Time{}
	read := &pgx.Batch{}
	read.Queue(`
		SELECT m.tenant, m.campaign_id, m.customer_id, m.last_entered_at
		FROM unnest($1::text[], $2::text[], $3::text[]) AS u(tenant, campaign_id, customer_id)
		JOIN campaign_members m ON m.tenant = u.tenant AND m.campaign_id = u.campaign_id AND m.customer_id = u.customer_id
		ORDER BY m.tenant, m.campaign_id, m.customer_id FOR UPDATE OF m`, tenants, camps, custs).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k MemberKey
			var at time.Time
			if err := rows.Scan(&k.Tenant, &k.CampaignID, &k.CustomerID, &at); err != nil {
				return err
			}
			last[k] = at
		}
		return rows.Err()
	})
	// The bounds are inclusive: sent to the microsecond the column keeps
	// (rounded down), an open upper bound could miss an entry just inside
	// the gap. One at a bound is far enough, and farFromAll says so.
	read.Queue(`
		SELECT e.tenant, e.campaign_id, e.customer_id, e.anchor_at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) AS u(tenant, campaign_id, customer_id, lo, hi)
		JOIN enrollments e ON e.tenant = u.tenant AND e.campaign_id = u.campaign_id AND e.customer_id = u.customer_id
			AND e.anchor_at BETWEEN u.lo AND u.hi`,
		tenants, camps, custs, los, his).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k MemberKey
			var at time.Time
			if err := rows.Scan(&k.Tenant, &k.CampaignID, &k.CustomerID, &at); err != nil {
				return err
			}
			anchors[k] = append(anchors[k], at)
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, read).Close(); err != nil {
		return nil, fmt.Errorf("read the entries of %d members: %w", n, err)
	}
	out := map[MemberKey][]Entrant{}
	var upd, ins []Entrant
	var seen []time.Time
	var counts, insCounts []int32
	for _, g := range gs {
		taken := anchors[g.key]
		l, exists := last[g.key]
		if exists {
			taken = append(taken, l)
		}
		var admitted []Entrant
		for _, e := range g.es {
			if farFromAll(e.Anchor, taken, g.gap) {
				admitted = append(admitted, e)
				taken = append(taken, e.Anchor)
			}
		}
		if len(admitted) == 0 {
			continue
		}
		out[g.key] = admitted
		newest := admitted[0]
		for _, e := range admitted {
			if e.Anchor.After(newest.Anchor) {
				newest = e
			}
		}
		if exists {
			upd, seen, counts = append(upd, newest), append(seen, l), append(counts, int32(len(admitted)))
		} else {
			ins, insCounts = append(ins, newest), append(insCounts, int32(len(admitted)))
		}
	}
	if len(upd) > 0 {
		t, c, u, _, ats := entrantArrays(upd)
		batch.Queue(`
			UPDATE campaign_members m SET last_entered_at = greatest(m.last_entered_at, u.at), entries = m.entries + u.n
			FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::timestamptz[]) AS u(tenant, campaign_id, customer_id, at, n, seen)
			WHERE m.tenant = u.tenant AND m.campaign_id = u.campaign_id AND m.customer_id = u.customer_id AND m.last_entered_at = u.seen
			RETURNING m.tenant, m.campaign_id, m.customer_id, m.holdout`, t, c, u, ats, counts, seen)
	}
	if len(ins) > 0 {
		t, c, u, h, ats := entrantArrays(ins)
		batch.Queue(`
			INSERT INTO campaign_members (tenant, campaign_id, customer_id, holdout, last_entered_at, entries)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::timestamptz[], $6::int[])
			ON CONFLICT DO NOTHING
			RETURNING tenant, campaign_id, customer_id, holdout`, t, c, u, h, ats, insCounts)
	}
	return out, nil
}

// farFromAll: at is at least gap from each of taken.
func farFromAll(at time.Time, taken []time.Time, gap time.Duration) bool {
	for _, t := range taken {
		d := at.Sub(t)
		if d < 0 {
			d = -d
		}
		if d < gap {
			return false
		}
	}
	return true
}

// HoldoutGroups returns the holdout group the customers' earlier
// enrollments in the campaigns hold (absent: none yet), for entries the
// enrollment key decides.
func HoldoutGroups(ctx context.Context, tx pgx.Tx, es []Entrant) (map[MemberKey]bool, error) {
	out := map[MemberKey]bool{}
	if len(es) == 0 {
		return out, nil
	}
	tenants, camps, custs, _, _ := entrantArrays(es)
	rows, err := tx.Query(ctx, `
		SELECT u.tenant, u.campaign_id, u.customer_id, g.holdout
		FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[], $3::text[]) AS u(tenant, campaign_id, customer_id)) u
		CROSS JOIN LATERAL (SELECT e.holdout FROM enrollments e
			WHERE e.tenant = u.tenant AND e.campaign_id = u.campaign_id AND e.customer_id = u.customer_id LIMIT 1) g`,
		tenants, camps, custs)
	if err != nil {
		return nil, fmt.Errorf("load holdout groups: %w", err)
	}
	for rows.Next() {
		var k MemberKey
		var h bool
		if err := rows.Scan(&k.Tenant, &k.CampaignID, &k.CustomerID, &h); err != nil {
			return nil, fmt.Errorf("load holdout groups: %w", err)
		}
		out[k] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load holdout groups: %w", err)
	}
	return out, nil
}

func entrantArrays(es []Entrant) (tenants, camps, custs []string, holds []bool, ats []time.Time) {
	n := len(es)
	tenants, camps, custs, holds, ats = make([]string, n), make([]string, n), make([]string, n), make([]bool, n), make([]time.Time, n)
	for i, e := range es {
		tenants[i], camps[i], custs[i], holds[i], ats[i] = e.Tenant, e.CampaignID, e.CustomerID, e.Holdout, e.Anchor
	}
	return tenants, camps, custs, holds, ats
}

// collectAdmitted appends the entrants of the admitted (tenant, campaign,
// customer, holdout) rows to out with their persisted holdout group: the
// one entrant of single, or the entrants admitSeveral admitted.
func collectAdmitted(rows pgx.Rows, single map[MemberKey]Entrant, several map[MemberKey][]Entrant, out []Entrant) ([]Entrant, error) {
	defer rows.Close()
	for rows.Next() {
		var k MemberKey
		var h bool
		if err := rows.Scan(&k.Tenant, &k.CampaignID, &k.CustomerID, &h); err != nil {
			return out, err
		}
		if e, ok := single[k]; ok {
			e.Holdout = h
			out = append(out, e)
			continue
		}
		for _, e := range several[k] {
			e.Holdout = h
			out = append(out, e)
		}
	}
	return out, rows.Err()
}

// conversionAt is the moment enrollment e reached its goal (NULL: not
// yet). An order.placed goal is read from the orders (the customer's first
// order after the anchor within the attribution window, so the order facts
// arrive in); any other goal was recorded in converted_at when it arrived
// (MarkGoals).
const conversionAt = `CASE WHEN e.goal_event = 'order.placed' THEN (
		SELECT min(o.placed_at) FROM campaign_orders o
		WHERE o.tenant = e.tenant AND o.customer_id = e.customer_id AND o.placed_at > e.anchor_at AND o.placed_at <= e.attribution_until)
	ELSE e.converted_at END`

// conversion joins each enrollment e to conv.at, its conversionAt. The
// planner inlines it where conv.at is used, so a read that returns few of
// many candidate rows (LockDue: a LIMIT over the due index) evaluates it
// only for those.
const conversion = `CROSS JOIN LATERAL (SELECT ` + conversionAt + ` AS at) conv`

// conversionOnce is conversion evaluated once per enrollment however many
// times conv.at is used: for reads over all of a campaign's enrollments
// (the report, where inlined it ran three times per enrollment).
const conversionOnce = `CROSS JOIN LATERAL (SELECT ` + conversionAt + ` AS at OFFSET 0) conv`

// settledStatus is an enrollment's status as reads show it (with
// conversion joined). A goal that ends an enrollment is not written into
// it: the row says ACTIVE until its timer fires and settles it, and reads
// show it converted from the moment of the goal.
const settledStatus = `CASE WHEN e.status = 'ACTIVE' AND e.stop_on_goal AND conv.at IS NOT NULL THEN 'CONVERTED' ELSE e.status END`

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

// EntryKey identifies an enrollment: its campaign, customer and entry key.
type EntryKey struct{ Tenant, CampaignID, CustomerID, Key string }

// EntryKey is e's key.
func (e Enrollment) EntryKey() EntryKey {
	return EntryKey{Tenant: e.Tenant, CampaignID: e.CampaignID, CustomerID: e.CustomerID, Key: e.Key}
}

// Ref is the id shops see for e (domain.EnrollmentRef); ID stays
// internal.
func (e Enrollment) Ref() string {
	return domain.EnrollmentRef(e.Tenant, e.CampaignID, e.CustomerID, e.Key)
}

// keyArrays are the columns of keys, for unnest.
func keyArrays(keys []EntryKey) (tenants, camps, custs, entries []string) {
	n := len(keys)
	tenants, camps, custs, entries = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, k := range keys {
		tenants[i], camps[i], custs[i], entries[i] = k.Tenant, k.CampaignID, k.CustomerID, k.Key
	}
	return tenants, camps, custs, entries
}

// enrollmentColumns are the columns InsertEnrollments copies.
var enrollmentColumns = []string{"id", "tenant", "campaign_id", "version", "customer_id", "entry_key", "holdout", "anchor_at", "entered_at",
	"attribution_until", "goal_event", "stop_on_goal", "vars", "status", "step", "due_at", "armed", "steps_done", "coupon_code"}

// InsertEnrollments creates enrollments in the state given (after their
// first steps); one whose (campaign, customer, key) exists already, or
// comes twice, is skipped. It returns those created, with ids.
//
// The rows go in with COPY, about half the cost of an INSERT ... ON
// CONFLICT DO NOTHING of as many wide rows, so the keys that exist are read
// first, in the round trip that draws the ids. A key another transaction
// inserts in between (a replica applying a duplicate of the event at the
// same moment; within a process the facts batches of one customer are
// sequenced) fails the COPY on the primary key, and the batch is retried,
// when the read finds it.
func InsertEnrollments(ctx context.Context, tx pgx.Tx, es []Enrollment) ([]Enrollment, error) {
	if len(es) == 0 {
		return nil, nil
	}
	keys := make([]EntryKey, len(es))
	for i, e := range es {
		keys[i] = e.EntryKey()
	}
	tenants, camps, custs, entries := keyArrays(keys)
	exists := make(map[EntryKey]bool, len(es))
	var ids []int64
	batch := &pgx.Batch{}
	batch.Queue(`
		SELECT u.tenant, u.campaign_id, u.customer_id, u.entry_key
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(tenant, campaign_id, customer_id, entry_key)
		CROSS JOIN LATERAL (SELECT 1 FROM enrollments e WHERE e.tenant = u.tenant AND e.campaign_id = u.campaign_id
			AND e.customer_id = u.customer_id AND e.entry_key = u.entry_key LIMIT 1) x`,
		tenants, camps, custs, entries).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k EntryKey
			if err := rows.Scan(&k.Tenant, &k.CampaignID, &k.CustomerID, &k.Key); err != nil {
				return err
			}
			exists[k] = true
		}
		return rows.Err()
	})
	batch.Queue(`SELECT nextval('enrollments_id_seq') FROM generate_series(1, $1)`, len(es)).Query(func(rows pgx.Rows) error {
		var err error
		ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("insert %d enrollments: %w", len(es), err)
	}
	out := make([]Enrollment, 0, len(es))
	rows := make([][]any, 0, len(es))
	for i, e := range es {
		if exists[keys[i]] {
			continue
		}
		exists[keys[i]] = true // a key twice in the batch: the first
		e.ID = ids[i]
		out = append(out, e)
		steps := e.StepsDone
		if steps == nil {
			steps = []string{}
		}
		rows = append(rows, []any{e.ID, e.Tenant, e.CampaignID, e.Version, e.CustomerID, e.Key, e.Holdout, e.Anchor, e.EnteredAt,
			e.AttributionUntil, e.GoalEvent, e.StopOnGoal, encodeVars(e.Vars), e.Status, int32(e.Step), e.Due, e.Armed, steps, e.CouponCode})
	}
	if len(rows) == 0 {
		return nil, nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"enrollments"}, enrollmentColumns, pgx.CopyFromRows(rows)); err != nil {
		return nil, fmt.Errorf("insert %d enrollments: %w", len(rows), err)
	}
	return out, nil
}

// LockDue locks up to limit active enrollments of active campaigns whose
// timer is due at now, skipping those another scheduler holds, so several
// replicas fire each timer once.
func LockDue(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]Enrollment, error) {
	// The campaign's state is a correlated subquery, not a join: the
	// planner cannot start from the campaigns then, and walks the timer
	// index in due order, stopping at the limit. As a join, with hundreds
	// of campaigns (one per shop) it drove from each campaign to every due
	// timer: 155 ms a pass for 20k due timers over 500 shops. The
	// subquery's per-row cost can push the estimate of a pass over many
	// due rows past jit_above_cost, and compiling took 70-95 ms of an
	// idle tick that runs in under a millisecond: no JIT for the pass.
	if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
		return nil, fmt.Errorf("lock due enrollments: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT e.id, e.tenant, e.campaign_id, e.version, e.customer_id, e.entry_key, e.holdout, e.anchor_at, e.stop_on_goal,
			e.status, e.step, e.due_at, e.armed, conv.at, e.steps_done, e.vars, e.coupon_code
		FROM enrollments e
		`+conversion+`
		WHERE e.status = 'ACTIVE' AND NOT e.held AND e.due_at <= $1
			AND (SELECT c.state FROM campaigns c WHERE c.tenant = e.tenant AND c.id = e.campaign_id) = 1
		ORDER BY e.due_at
		LIMIT $2
		FOR UPDATE OF e SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("lock due enrollments: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Enrollment, error) {
		var e Enrollment
		var vars []byte
		err := row.Scan(&e.ID, &e.Tenant, &e.CampaignID, &e.Version, &e.CustomerID, &e.Key, &e.Holdout, &e.Anchor, &e.StopOnGoal,
			&e.Status, &e.Step, &e.Due, &e.Armed, &e.ConvertedAt, &e.StepsDone, &vars, &e.CouponCode)
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
	keys := make([]EntryKey, n)
	steps := make([]int32, n)
	statuses, coupons, done := make([]string, n), make([]string, n), make([]string, n)
	dues := make([]*time.Time, n)
	armed := make([]bool, n)
	for i, e := range es {
		keys[i], steps[i], statuses[i], coupons[i], dues[i], armed[i] = e.EntryKey(), int32(e.Step), e.Status, e.CouponCode, e.Due, e.Armed
		done[i] = strings.Join(e.StepsDone, ",")
	}
	tenants, camps, custs, entries := keyArrays(keys)
	_, err := tx.Exec(ctx, `
		UPDATE enrollments e SET step = u.step, status = u.status, due_at = u.due_at, armed = u.armed, coupon_code = u.coupon_code,
			steps_done = e.steps_done || string_to_array(u.done, ',')
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::timestamptz[], $8::bool[], $9::text[], $10::text[])
			AS u(tenant, campaign_id, customer_id, entry_key, step, status, due_at, armed, coupon_code, done)
		WHERE e.tenant = u.tenant AND e.campaign_id = u.campaign_id AND e.customer_id = u.customer_id AND e.entry_key = u.entry_key`,
		tenants, camps, custs, entries, steps, statuses, dues, armed, coupons, done)
	if err != nil {
		return fmt.Errorf("save progress of %d enrollments: %w", n, err)
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

// CouponIssue is a coupon about to be issued to an enrollment's customer.
type CouponIssue struct {
	Tenant, CampaignID, CustomerID string
	EnrollmentID                   int64
	Coupon
}

// IssueCoupons stores the coupons, of any tenants, in one statement and
// returns, per issue (by index), the coupon the customer holds: the one
// given, or the campaign's coupon the customer already held (one per
// customer, including one issued earlier in the same call). An issue
// missing from the result drew a code already taken (a collision,
// vanishingly rare): the caller draws another.
func IssueCoupons(ctx context.Context, tx pgx.Tx, cs []CouponIssue, now time.Time) (map[int]Coupon, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	n := len(cs)
	tenants, codes, camps, custs, curs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	enrs, amounts, pcts, exps := make([]int64, n), make([]int64, n), make([]int32, n), make([]time.Time, n)
	for i, c := range cs {
		tenants[i], codes[i], camps[i], custs[i], curs[i] = c.Tenant, c.Code, c.CampaignID, c.CustomerID, c.Currency
		enrs[i], amounts[i], pcts[i], exps[i] = c.EnrollmentID, c.AmountMinor, c.PercentOff, c.ExpiresAt
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO coupons (tenant, code, campaign_id, customer_id, enrollment_id, percent_off, amount_minor, currency, issued_at, expires_at)
		SELECT u.tenant, u.code, u.campaign_id, u.customer_id, u.enrollment_id, u.percent_off, u.amount_minor, u.currency, $10, u.expires_at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::int[], $7::bigint[], $8::text[], $9::timestamptz[])
			AS u(tenant, code, campaign_id, customer_id, enrollment_id, percent_off, amount_minor, currency, expires_at)
		ON CONFLICT DO NOTHING
		RETURNING tenant, code`, tenants, codes, camps, custs, enrs, pcts, amounts, curs, exps, now)
	if err != nil {
		return nil, fmt.Errorf("issue %d coupons: %w", n, err)
	}
	isIssued := make(map[CouponKey]bool, n)
	for rows.Next() {
		var k CouponKey
		if err := rows.Scan(&k.Tenant, &k.Code); err != nil {
			rows.Close()
			return nil, fmt.Errorf("issue %d coupons: %w", n, err)
		}
		isIssued[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("issue %d coupons: %w", n, err)
	}
	out := make(map[int]Coupon, n)
	var other []int
	for i, c := range cs {
		if k := (CouponKey{c.Tenant, c.Code}); isIssued[k] {
			out[i] = c.Coupon
			isIssued[k] = false // a code drawn twice in the call is issued once
		} else {
			other = append(other, i)
		}
	}
	if len(other) == 0 {
		return out, nil
	}
	// Those not issued: the customer's coupon of the campaign if there is
	// one, else their code was taken.
	ot, oc, ou := make([]string, len(other)), make([]string, len(other)), make([]string, len(other))
	for j, i := range other {
		ot[j], oc[j], ou[j] = cs[i].Tenant, cs[i].CampaignID, cs[i].CustomerID
	}
	rows, err = tx.Query(ctx, `
		SELECT c.tenant, c.campaign_id, c.customer_id, c.code, c.percent_off, c.amount_minor, c.currency, c.expires_at
		FROM unnest($1::text[], $2::text[], $3::text[]) AS u(tenant, campaign_id, customer_id)
		JOIN coupons c ON c.tenant = u.tenant AND c.campaign_id = u.campaign_id AND c.customer_id = u.customer_id`, ot, oc, ou)
	if err != nil {
		return nil, fmt.Errorf("load held coupons: %w", err)
	}
	held := map[MemberKey]Coupon{}
	for rows.Next() {
		var k MemberKey
		var c Coupon
		if err := rows.Scan(&k.Tenant, &k.CampaignID, &k.CustomerID, &c.Code, &c.PercentOff, &c.AmountMinor, &c.Currency, &c.ExpiresAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load held coupons: %w", err)
		}
		held[k] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load held coupons: %w", err)
	}
	for _, i := range other {
		if c, ok := held[MemberKey{cs[i].Tenant, cs[i].CampaignID, cs[i].CustomerID}]; ok {
			out[i] = c
		}
	}
	return out, nil
}

// EnrollmentFilter selects a page of a customer's enrollments.
type EnrollmentFilter struct {
	Tenant, Customer string
	// Campaign, when set, keeps only that campaign's enrollments.
	Campaign string
	// AfterAt, AfterCampaign and AfterKey name the last enrollment of the
	// previous page: its entered_at, campaign and entry key (with Tenant
	// and Customer its primary key); nil AfterAt starts at the newest.
	AfterAt                 *time.Time
	AfterCampaign, AfterKey string
	Limit                   int
}

// CustomerEnrollments lists a page of a customer's enrollments, newest
// first: by entered_at, then id, a total order that no write changes
// (entered_at is never updated), so paging by the last row's key neither
// repeats nor skips an enrollment while others are added. The previous
// page's last enrollment is named by its key and its id read here, as the
// id is not shown to shops (decision 0048).
func CustomerEnrollments(ctx context.Context, q Querier, f EnrollmentFilter) ([]Enrollment, error) {
	where := `e.tenant = $1 AND e.customer_id = $2 AND e.campaign_id IN (SELECT id FROM campaigns WHERE tenant = $1)`
	args := []any{f.Tenant, f.Customer, f.Limit}
	if f.Campaign != "" {
		args = append(args, f.Campaign)
		where += fmt.Sprintf(" AND e.campaign_id = $%d", len(args))
	}
	if f.AfterAt != nil {
		args = append(args, *f.AfterAt, f.AfterCampaign, f.AfterKey)
		n := len(args)
		where += fmt.Sprintf(` AND (e.entered_at, e.id) < ($%d, (SELECT a.id FROM enrollments a
			WHERE a.tenant = $1 AND a.campaign_id = $%d AND a.customer_id = $2 AND a.entry_key = $%d))`, n-2, n-1, n)
	}
	// The page is cut in a subquery before the conversion is joined: a
	// customer may have tens of thousands of enrollments (a guest checkout
	// account under a once-per-order campaign), and the conversion, a look
	// into the orders per enrollment, is then computed for the page only.
	rows, err := q.Query(ctx, `
		SELECT e.id, e.tenant, e.campaign_id, e.version, e.customer_id, e.entry_key, e.holdout, e.anchor_at, e.entered_at, `+settledStatus+`, e.step,
			CASE WHEN `+settledStatus+` = 'ACTIVE' THEN e.due_at END, conv.at, e.steps_done, e.coupon_code
		FROM (SELECT * FROM enrollments e WHERE `+where+` ORDER BY e.entered_at DESC, e.id DESC LIMIT $3) e `+conversion+`
		ORDER BY e.entered_at DESC, e.id DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("list enrollments of %s: %w", f.Customer, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Enrollment, error) {
		var e Enrollment
		err := row.Scan(&e.ID, &e.Tenant, &e.CampaignID, &e.Version, &e.CustomerID, &e.Key, &e.Holdout, &e.Anchor, &e.EnteredAt,
			&e.Status, &e.Step, &e.Due, &e.ConvertedAt, &e.StepsDone, &e.CouponCode)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list enrollments of %s: %w", f.Customer, err)
	}
	return out, nil
}

// Blocked returns which of the customers the entry policy keeps out of
// the campaign at now (for the audience preview): with a gap, those who
// entered less than gap ago; once ever, those who entered.
func Blocked(ctx context.Context, q Querier, tenant, campaign string, gap time.Duration, customers []string, now time.Time) (map[string]bool, error) {
	var (
		rows pgx.Rows
		err  error
	)
	switch {
	case gap < 0:
		rows, err = q.Query(ctx, `
			SELECT customer_id FROM enrollments WHERE tenant = $1 AND campaign_id = $2 AND customer_id = ANY($3) AND entry_key = 'once'`,
			tenant, campaign, customers)
	case gap > 0:
		rows, err = q.Query(ctx, `
			SELECT customer_id FROM campaign_members
			WHERE tenant = $1 AND campaign_id = $2 AND customer_id = ANY($3) AND $5::timestamptz < last_entered_at + make_interval(secs => $4::bigint)`,
			tenant, campaign, customers, int64(gap/time.Second), now)
	default:
		return map[string]bool{}, nil
	}
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

// CouponKey names a tenant's coupon.
type CouponKey struct{ Tenant, Code string }

// LoadCoupons returns issued coupons, of any tenants, by their codes.
func LoadCoupons(ctx context.Context, q Querier, keys []CouponKey) (map[CouponKey]Coupon, error) {
	out := make(map[CouponKey]Coupon, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	tenants, codes := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		tenants[i], codes[i] = k.Tenant, k.Code
	}
	rows, err := q.Query(ctx, `
		SELECT c.tenant, c.code, c.percent_off, c.amount_minor, c.currency, c.expires_at
		FROM unnest($1::text[], $2::text[]) AS u(tenant, code)
		JOIN coupons c ON c.tenant = u.tenant AND c.code = u.code`, tenants, codes)
	if err != nil {
		return nil, fmt.Errorf("load coupons: %w", err)
	}
	for rows.Next() {
		var t string
		var c Coupon
		if err := rows.Scan(&t, &c.Code, &c.PercentOff, &c.AmountMinor, &c.Currency, &c.ExpiresAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load coupons: %w", err)
		}
		out[CouponKey{t, c.Code}] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load coupons: %w", err)
	}
	return out, nil
}

// SetCoupons records the coupons enrollments hold when it is not the code
// they were inserted with.
func SetCoupons(ctx context.Context, tx pgx.Tx, codes map[EntryKey]string) error {
	if len(codes) == 0 {
		return nil
	}
	keys, cs := make([]EntryKey, 0, len(codes)), make([]string, 0, len(codes))
	for k, c := range codes {
		keys, cs = append(keys, k), append(cs, c)
	}
	tenants, camps, custs, entries := keyArrays(keys)
	if _, err := tx.Exec(ctx, `
		UPDATE enrollments e SET coupon_code = u.code
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(tenant, campaign_id, customer_id, entry_key, code)
		WHERE e.tenant = u.tenant AND e.campaign_id = u.campaign_id AND e.customer_id = u.customer_id AND e.entry_key = u.entry_key`,
		tenants, camps, custs, entries, cs); err != nil {
		return fmt.Errorf("record coupons of %d enrollments: %w", len(keys), err)
	}
	return nil
}
