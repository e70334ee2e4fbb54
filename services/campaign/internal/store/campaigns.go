package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/campaignfile"
)

// Row is a campaign's stored state and its definition at Version.
type Row struct {
	ID       string
	Version  int32
	State    campaignv1.CampaignState
	Playbook string
	Created  time.Time
	Updated  time.Time
	Spec     []byte
}

// Campaign is the row as the API shows it.
func (r Row) Campaign() (*campaignv1.Campaign, error) {
	c := &campaignv1.Campaign{}
	if err := proto.Unmarshal(r.Spec, c); err != nil {
		return nil, fmt.Errorf("decode campaign %s v%d: %w", r.ID, r.Version, err)
	}
	c.Version, c.State, c.Playbook = r.Version, r.State, r.Playbook
	c.CreatedAt, c.UpdatedAt = timestamppb.New(r.Created), timestamppb.New(r.Updated)
	return c, nil
}

// specBytes is the stored form: the definition without its output-only
// fields, nor its state, which the campaign's row holds (a file may give
// it, to create the campaign in).
func specBytes(c *campaignv1.Campaign) ([]byte, error) {
	s := proto.Clone(c).(*campaignv1.Campaign)
	campaignfile.ClearOutputOnly(s)
	s.State = campaignv1.CampaignState_CAMPAIGN_STATE_UNSPECIFIED
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode campaign %s: %w", c.GetId(), err)
	}
	return b, nil
}

func scheduleOf(every time.Duration) *time.Duration {
	if every <= 0 {
		return nil
	}
	return &every
}

// InsertCampaign stores a new campaign at version 1; schedule is the
// period of a scheduled trigger (0: none), first evaluated at once.
func InsertCampaign(ctx context.Context, tx pgx.Tx, tenant string, c *campaignv1.Campaign, state campaignv1.CampaignState, playbook string, schedule time.Duration, now time.Time) (Row, error) {
	spec, err := specBytes(c)
	if err != nil {
		return Row{}, err
	}
	// As stored (pgx sends microseconds), so the answer equals a later read.
	now = now.Truncate(time.Microsecond)
	_, err = tx.Exec(ctx, `
		INSERT INTO campaigns (tenant, id, version, state, playbook, schedule_every, next_audience_at, created_at, updated_at)
		VALUES ($1, $2, 1, $3, $4, $5, $6, $6, $6)`, tenant, c.GetId(), int16(state), playbook, scheduleOf(schedule), now)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return Row{}, fmt.Errorf("campaign %q: %w", c.GetId(), ErrExists)
	}
	if err != nil {
		return Row{}, fmt.Errorf("insert campaign %s: %w", c.GetId(), err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO campaign_versions (tenant, campaign_id, version, spec, created_at) VALUES ($1, $2, 1, $3, $4)`,
		tenant, c.GetId(), spec, now); err != nil {
		return Row{}, fmt.Errorf("insert campaign %s v1: %w", c.GetId(), err)
	}
	return Row{ID: c.GetId(), Version: 1, State: state, Playbook: playbook, Created: now, Updated: now, Spec: spec}, nil
}

// UpdateCampaign stores the definition update gives for the campaign's
// current row (locked until tx ends) as its next version, unless it
// equals the current version: then it stores nothing and reports changed
// false, so that applying the same file twice leaves one version. An error
// of update is returned as is; an archived campaign cannot change
// (ErrArchived, once update accepted it). schedule is the period of a
// scheduled trigger (0: none).
func UpdateCampaign(ctx context.Context, tx pgx.Tx, tenant, id string, now time.Time,
	update func(current Row) (c *campaignv1.Campaign, schedule time.Duration, err error)) (r Row, changed bool, err error) {
	r, err = lockCampaign(ctx, tx, tenant, id)
	if err != nil {
		return Row{}, false, err
	}
	c, schedule, err := update(r)
	if err != nil {
		return Row{}, false, err
	}
	if r.State == campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED {
		return Row{}, false, fmt.Errorf("campaign %q: %w", id, ErrArchived)
	}
	spec, err := specBytes(c)
	if err != nil {
		return Row{}, false, err
	}
	var current []byte
	if err := tx.QueryRow(ctx, `SELECT spec FROM campaign_versions WHERE tenant = $1 AND campaign_id = $2 AND version = $3`,
		tenant, id, r.Version).Scan(&current); err != nil {
		return Row{}, false, fmt.Errorf("load campaign %s v%d: %w", id, r.Version, err)
	}
	if sameSpec(current, spec) {
		r.Spec = current
		return r, false, nil
	}
	r.Version++
	r.Spec = spec
	if _, err := tx.Exec(ctx, `INSERT INTO campaign_versions (tenant, campaign_id, version, spec, created_at) VALUES ($1, $2, $3, $4, $5)`,
		tenant, id, r.Version, spec, now); err != nil {
		return Row{}, false, fmt.Errorf("insert campaign %s v%d: %w", id, r.Version, err)
	}
	// updated_at as stored (to the microsecond), as a later read shows it.
	if err := tx.QueryRow(ctx, `
		UPDATE campaigns SET version = $3, updated_at = $4, schedule_every = $5,
			next_audience_at = CASE WHEN $5::interval IS NULL THEN NULL ELSE coalesce(least(next_audience_at, $4::timestamptz + $5::interval), $4::timestamptz) END
		WHERE tenant = $1 AND id = $2
		RETURNING updated_at`, tenant, id, r.Version, now, scheduleOf(schedule)).Scan(&r.Updated); err != nil {
		return Row{}, false, fmt.Errorf("update campaign %s: %w", id, err)
	}
	return r, true, nil
}

// sameSpec reports whether two stored definitions say the same: equal as
// messages, so that bytes written by an older encoder still compare.
func sameSpec(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ma, mb := &campaignv1.Campaign{}, &campaignv1.Campaign{}
	return proto.Unmarshal(a, ma) == nil && proto.Unmarshal(b, mb) == nil && proto.Equal(ma, mb)
}

// ErrArchived: the campaign is archived and cannot change.
var ErrArchived = errors.New("is archived, and an archived campaign never changes (save it under a new id)")

// lockCampaign returns a campaign's row (without its definition), locked
// until tx ends.
func lockCampaign(ctx context.Context, tx pgx.Tx, tenant, id string) (Row, error) {
	r := Row{ID: id}
	var state int16
	err := tx.QueryRow(ctx, `SELECT version, state, playbook, created_at, updated_at FROM campaigns WHERE tenant = $1 AND id = $2 FOR UPDATE`,
		tenant, id).Scan(&r.Version, &state, &r.Playbook, &r.Created, &r.Updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("campaign %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("load campaign %s: %w", id, err)
	}
	r.State = campaignv1.CampaignState(state)
	return r, nil
}

// SetState moves a campaign to state and returns it. Archiving ends its
// running enrollments.
func SetState(ctx context.Context, tx pgx.Tx, tenant, id string, state campaignv1.CampaignState, now time.Time) (Row, error) {
	r, err := lockCampaign(ctx, tx, tenant, id)
	if err != nil {
		return r, err
	}
	if r.State == campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED && state != r.State {
		return r, fmt.Errorf("campaign %q: %w", id, ErrArchived)
	}
	if _, err := tx.Exec(ctx, `UPDATE campaigns SET state = $3, updated_at = $4 WHERE tenant = $1 AND id = $2`, tenant, id, int16(state), now); err != nil {
		return r, fmt.Errorf("set state of campaign %s: %w", id, err)
	}
	// A paused campaign's running enrollments are held at their next step,
	// out of the timer index (their timers wait); resuming releases them.
	// Each statement locks the rows in key order first, as the facts
	// consumer's goals do (enrollmentsInKeyOrder): updated in the order of
	// the scan (physical, or of the timer index) they deadlocked with it.
	switch state {
	case campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED:
		if _, err := tx.Exec(ctx, `
			UPDATE enrollments e SET held = true
			FROM (SELECT l.customer_id, l.entry_key FROM enrollments l
				WHERE l.tenant = $1 AND l.campaign_id = $2 AND l.status = 'ACTIVE' AND NOT l.held `+enrollmentsInKeyOrder+`) g
			WHERE e.tenant = $1 AND e.campaign_id = $2 AND e.customer_id = g.customer_id AND e.entry_key = g.entry_key`,
			tenant, id); err != nil {
			return r, fmt.Errorf("hold enrollments of campaign %s: %w", id, err)
		}
	case campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE:
		if _, err := tx.Exec(ctx, `
			UPDATE enrollments e SET held = false
			FROM (SELECT l.customer_id, l.entry_key FROM enrollments l
				WHERE l.tenant = $1 AND l.campaign_id = $2 AND l.held `+enrollmentsInKeyOrder+`) g
			WHERE e.tenant = $1 AND e.campaign_id = $2 AND e.customer_id = g.customer_id AND e.entry_key = g.entry_key`,
			tenant, id); err != nil {
			return r, fmt.Errorf("release enrollments of campaign %s: %w", id, err)
		}
	}
	if state == campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED {
		// A goal that ended an enrollment but was not settled yet keeps
		// it converted.
		if _, err := tx.Exec(ctx, `
			UPDATE enrollments u SET status = CASE WHEN s.settled = 'CONVERTED' THEN 'CONVERTED' ELSE 'EXITED' END,
				due_at = NULL, armed = false, held = false
			FROM (SELECT e.customer_id, e.entry_key, `+settledStatus+` AS settled
				FROM enrollments e `+conversion+`
				WHERE e.tenant = $1 AND e.campaign_id = $2 AND e.status = 'ACTIVE'
				ORDER BY e.customer_id, e.entry_key FOR UPDATE OF e) s
			WHERE u.tenant = $1 AND u.campaign_id = $2 AND u.customer_id = s.customer_id AND u.entry_key = s.entry_key`,
			tenant, id); err != nil {
			return r, fmt.Errorf("end enrollments of campaign %s: %w", id, err)
		}
	}
	r.State, r.Updated = state, now
	return GetCampaign(ctx, tx, tenant, id, 0)
}

// GetCampaign returns a campaign at version (0: current).
func GetCampaign(ctx context.Context, q Querier, tenant, id string, version int32) (Row, error) {
	r := Row{ID: id}
	var state int16
	err := q.QueryRow(ctx, `
		SELECT v.version, c.state, c.playbook, c.created_at, c.updated_at, v.spec
		FROM campaigns c JOIN campaign_versions v ON v.tenant = c.tenant AND v.campaign_id = c.id
			AND v.version = CASE WHEN $3 > 0 THEN $3 ELSE c.version END
		WHERE c.tenant = $1 AND c.id = $2`, tenant, id, version).Scan(&r.Version, &state, &r.Playbook, &r.Created, &r.Updated, &r.Spec)
	if errors.Is(err, pgx.ErrNoRows) {
		if version > 0 {
			return r, fmt.Errorf("campaign %q version %d: %w", id, version, ErrNotFound)
		}
		return r, fmt.Errorf("campaign %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("load campaign %s: %w", id, err)
	}
	r.State = campaignv1.CampaignState(state)
	return r, nil
}

// ListCampaigns returns the tenant's campaigns at their current version,
// by priority then id. states empty: every state.
func ListCampaigns(ctx context.Context, q Querier, tenant string, states ...campaignv1.CampaignState) ([]Row, error) {
	st := make([]int16, len(states))
	for i, s := range states {
		st[i] = int16(s)
	}
	rows, err := q.Query(ctx, `
		SELECT c.id, c.version, c.state, c.playbook, c.created_at, c.updated_at, v.spec
		FROM campaigns c JOIN campaign_versions v ON v.tenant = c.tenant AND v.campaign_id = c.id AND v.version = c.version
		WHERE c.tenant = $1 AND (cardinality($2::smallint[]) = 0 OR c.state = ANY($2))
		ORDER BY c.id`, tenant, st)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Row, error) {
		var r Row
		var state int16
		err := row.Scan(&r.ID, &r.Version, &state, &r.Playbook, &r.Created, &r.Updated, &r.Spec)
		r.State = campaignv1.CampaignState(state)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	return out, nil
}

// Ref names one campaign version of a tenant.
type Ref struct {
	Tenant, ID string
	Version    int32
}

// Claim is a scheduled campaign's audience claimed for one pass: due
// again at Held unless the pass completes (CompleteAudience).
type Claim struct {
	Ref
	At, Held time.Time
}

// ClaimAudiences claims the scheduled campaigns whose audience is due at
// now for lease (or their period, if shorter). The update is the claim: a
// replica that loses the race sees the moved time and skips. A replica
// that dies mid-pass leaves the claim to lapse, and the pass runs again
// (entry policies make a repeat harmless) instead of waiting a period.
func ClaimAudiences(ctx context.Context, q Querier, now time.Time, lease time.Duration) ([]Claim, error) {
	rows, err := q.Query(ctx, `
		UPDATE campaigns SET next_audience_at = $1::timestamptz + least(schedule_every, make_interval(secs => $2::float8))
		WHERE state = 1 AND schedule_every IS NOT NULL AND next_audience_at <= $1
		RETURNING tenant, id, version, next_audience_at`, now, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claim audiences: %w", err)
	}
	claims, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Claim, error) {
		c := Claim{At: now}
		err := row.Scan(&c.Tenant, &c.ID, &c.Version, &c.Held)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim audiences: %w", err)
	}
	return claims, nil
}

// CompleteAudience records a claimed pass as done: the audience is next
// due a period after the claim, unless an edit of the schedule moved its
// next time meanwhile (that time then stands), or the claim had lapsed and
// another replica claimed it again.
func CompleteAudience(ctx context.Context, q Querier, c Claim) error {
	_, err := q.Exec(ctx, `
		UPDATE campaigns SET next_audience_at = $3::timestamptz + schedule_every
		WHERE tenant = $1 AND id = $2 AND next_audience_at = $4 AND schedule_every IS NOT NULL`, c.Tenant, c.ID, c.At, c.Held)
	if err != nil {
		return fmt.Errorf("complete audience of %s: %w", c.ID, err)
	}
	return nil
}

// ReleaseAudience makes a claimed audience due again (after a failed pass).
func ReleaseAudience(ctx context.Context, q Querier, r Ref, now time.Time) error {
	_, err := q.Exec(ctx, `UPDATE campaigns SET next_audience_at = $3 WHERE tenant = $1 AND id = $2`, r.Tenant, r.ID, now)
	if err != nil {
		return fmt.Errorf("release audience of %s: %w", r.ID, err)
	}
	return nil
}

// Versions returns the stored definitions of the given versions.
func Versions(ctx context.Context, q Querier, refs []Ref) (map[Ref][]byte, error) {
	tenants, ids, versions := make([]string, len(refs)), make([]string, len(refs)), make([]int32, len(refs))
	for i, r := range refs {
		tenants[i], ids[i], versions[i] = r.Tenant, r.ID, r.Version
	}
	rows, err := q.Query(ctx, `
		SELECT v.tenant, v.campaign_id, v.version, v.spec
		FROM unnest($1::text[], $2::text[], $3::int[]) AS r(tenant, id, version)
		JOIN campaign_versions v ON v.tenant = r.tenant AND v.campaign_id = r.id AND v.version = r.version`, tenants, ids, versions)
	if err != nil {
		return nil, fmt.Errorf("load campaign versions: %w", err)
	}
	out := map[Ref][]byte{}
	for rows.Next() {
		var r Ref
		var spec []byte
		if err := rows.Scan(&r.Tenant, &r.ID, &r.Version, &spec); err != nil {
			return nil, fmt.Errorf("load campaign versions: %w", err)
		}
		out[r] = spec
	}
	return out, rows.Err()
}

// ActiveRefs returns the current version of each active campaign of the
// tenants.
func ActiveRefs(ctx context.Context, q Querier, tenants []string) ([]Ref, error) {
	rows, err := q.Query(ctx, `SELECT tenant, id, version FROM campaigns WHERE tenant = ANY($1) AND state = 1`, tenants)
	if err != nil {
		return nil, fmt.Errorf("list active campaigns: %w", err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Ref])
	if err != nil {
		return nil, fmt.Errorf("list active campaigns: %w", err)
	}
	return refs, nil
}
