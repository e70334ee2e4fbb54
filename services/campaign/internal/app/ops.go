package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/telemetry"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

// RunAudiences evaluates every scheduled campaign whose audience is due
// and enrolls the customers who qualify; it returns how many campaigns it
// evaluated. A campaign of a tenant whose facts are still arriving
// (audienceFacts) stays due, for a later pass.
func (e *Engine) RunAudiences(ctx context.Context) (int, error) {
	claims, err := store.ClaimAudiences(ctx, e.pool, e.Now(), AudienceLease)
	if err != nil {
		return 0, err
	}
	current := e.audienceFacts(ctx)
	ran := 0
	for i, c := range claims {
		if !current(c.Tenant) {
			if err := store.ReleaseAudience(context.WithoutCancel(ctx), e.pool, c.Ref, e.Now()); err != nil {
				e.log.Warn("release audience", "campaign", c.ID, "error", err)
			}
			continue
		}
		if err := e.runAudience(ctx, c.Ref); err != nil {
			// Due again at once, for the next pass.
			for _, cc := range claims[i:] {
				if rerr := store.ReleaseAudience(context.WithoutCancel(ctx), e.pool, cc.Ref, e.Now()); rerr != nil {
					e.log.Warn("release audience", "campaign", cc.ID, "error", rerr)
				}
			}
			return ran, fmt.Errorf("audience of %s: %w", c.ID, err)
		}
		ran++
		if err := store.CompleteAudience(context.WithoutCancel(ctx), e.pool, c); err != nil {
			// The pass is done; the claim lapses and it runs again, harmlessly.
			e.log.Warn("complete audience", "campaign", c.ID, "error", err)
		}
	}
	return ran, nil
}

// heavyReads is how many reads over a whole campaign or shop (reports,
// audience previews) run at once. Each holds a pool connection for
// seconds on a large shop, and the pool (RETAIN_CAMPAIGN_WORKERS + 7) is
// the consumers' too: ten reports at once held every connection and
// stalled every shop's events (QA). The others wait their turn holding
// none, until their deadline. A tenant runs one at a time, so one shop
// asking in a loop keeps the other turn free for every other shop
// (tenant-isolation audit).
const heavyReads = 2

// heavyTurn is a tenant's one heavy read at a time; users counts the
// callers holding or awaiting it, so the entry goes with the last.
type heavyTurn struct {
	ch    chan struct{}
	users int
}

// heavyRead waits for tenant's turn, then for a turn at a heavy read;
// release ends both.
func (e *Engine) heavyRead(ctx context.Context, tenant string) (release func(), err error) {
	e.heavyMu.Lock()
	t := e.heavyTurns[tenant]
	if t == nil {
		t = &heavyTurn{ch: make(chan struct{}, 1)}
		e.heavyTurns[tenant] = t
	}
	t.users++
	e.heavyMu.Unlock()
	leave := func() {
		e.heavyMu.Lock()
		if t.users--; t.users == 0 {
			delete(e.heavyTurns, tenant)
		}
		e.heavyMu.Unlock()
	}
	select {
	case t.ch <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, fmt.Errorf("waiting for this shop's earlier report or preview to end: %w", ctx.Err())
	}
	select {
	case e.heavy <- struct{}{}:
		return func() { <-e.heavy; <-t.ch; leave() }, nil
	case <-ctx.Done():
		<-t.ch
		leave()
		return nil, fmt.Errorf("waiting for a turn (%d reports or previews at a time): %w", heavyReads, ctx.Err())
	}
}

// DefaultAudienceMaxBacklog is how many of a tenant's events the facts
// consumer may have yet to apply for the tenant's scheduled audiences to
// run (RETAIN_CAMPAIGN_AUDIENCE_MAX_BACKLOG): a few seconds of the
// consumer's work, which a shop's live traffic stays under and its history
// import does not. A deployment whose consumer runs further behind at its
// peak raises it.
const DefaultAudienceMaxBacklog = 10_000

// audienceFacts returns whether a tenant's facts are close enough to the
// stream's head for its scheduled audiences to run, asked once per tenant
// for the pass. An audience evaluated on half-imported history finds
// customers whose recent orders have not arrived yet lapsed (a win-back
// sent to active customers) and uses up a weekly campaign's run: so while
// the facts consumer has more than AudienceMaxBacklog of the tenant's
// events yet to apply, or that cannot be read, its audiences stay due and
// wait, logged when the wait starts, every ten minutes while it lasts,
// and when it ends. The consumer is shared by every tenant, and one
// shop's import makes it far behind: the others' audiences run meanwhile,
// their own events being few (docs/decisions/0037-per-tenant-facts-backlog.md).
//
// The consumer's whole backlog is read first, once: within the limit, no
// tenant's can exceed it, and no tenant's is read (each costs the server
// a consumer's creation). When it cannot be read (NATS away) every
// tenant waits, and one line says so rather than one a shop.
func (e *Engine) audienceFacts(ctx context.Context) func(tenant string) bool {
	if e.cfg.FactsBacklog == nil {
		return func(string) bool { return true }
	}
	var (
		asked bool
		total int64
		err   error
		known = map[string]bool{}
	)
	return func(t string) bool {
		if !asked {
			asked = true
			total, err = e.cfg.FactsBacklog(ctx)
			if err != nil {
				e.backlogUnreadable(err)
			} else {
				e.backlogReadable()
				if total <= e.cfg.AudienceMaxBacklog {
					e.endAudienceWaits()
				}
			}
		}
		if err != nil {
			return false
		}
		if total <= e.cfg.AudienceMaxBacklog {
			return true
		}
		if ok, seen := known[t]; seen {
			return ok
		}
		n, terr := e.cfg.TenantFactsBacklog(ctx, t)
		ok := terr == nil && n <= e.cfg.AudienceMaxBacklog
		known[t] = ok
		if ok {
			e.endAudienceWait(t)
		} else {
			e.audienceWait(t, n, terr)
		}
		return ok
	}
}

// audienceWait logs, paced, that tenant's scheduled audiences wait with
// n of its events yet to apply, or that its backlog could not be read (err).
func (e *Engine) audienceWait(tenant string, n int64, err error) {
	e.waitMu.Lock()
	r := e.audienceWaits[tenant]
	if r == nil {
		r = &telemetry.FailureRun{Every: 10 * time.Minute}
		e.audienceWaits[tenant] = r
	}
	e.waitMu.Unlock()
	l := r.Failed(time.Now())
	if !l.Log {
		return
	}
	attrs := []any{"tenant", tenant, "backlog", n, "limit", e.cfg.AudienceMaxBacklog}
	if err != nil {
		attrs = []any{"tenant", tenant, "error", err}
	}
	if !l.First {
		attrs = append(attrs, "waiting_for", l.FailingFor.Round(time.Second))
	}
	e.log.Warn("scheduled audiences of the shop wait for its facts to be applied: evaluated on facts still arriving they would enroll customers whose newer orders are behind", attrs...)
}

// backlogUnreadable logs, paced, that every tenant's scheduled audiences
// wait because the facts consumer's backlog could not be read (err).
func (e *Engine) backlogUnreadable(err error) {
	l := e.backlogUnread.Failed(time.Now())
	if !l.Log {
		return
	}
	attrs := []any{"error", err}
	if !l.First {
		attrs = append(attrs, "waiting_for", l.FailingFor.Round(time.Second))
	}
	e.log.Warn("scheduled audiences of every shop wait: how far the facts consumer is behind cannot be read, and evaluated on facts still arriving they would enroll customers whose newer orders are behind", attrs...)
}

// backlogReadable logs the end of a wait backlogUnreadable logged.
func (e *Engine) backlogReadable() {
	if l := e.backlogUnread.Ended(time.Now()); l.Log {
		e.log.Info("scheduled audiences run again where their shop's facts are caught up: the facts consumer's backlog can be read", "waited", l.FailingFor.Round(time.Second))
	}
}

// endAudienceWait logs the end of tenant's wait, if it was waiting.
func (e *Engine) endAudienceWait(tenant string) {
	e.waitMu.Lock()
	r := e.audienceWaits[tenant]
	delete(e.audienceWaits, tenant)
	e.waitMu.Unlock()
	if r == nil {
		return
	}
	if l := r.Ended(time.Now()); l.Log {
		e.log.Info("scheduled audiences of the shop run again: its facts caught up", "tenant", tenant, "waited", l.FailingFor.Round(time.Second))
	}
}

// endAudienceWaits ends every tenant's wait: the whole consumer caught up.
func (e *Engine) endAudienceWaits() {
	e.waitMu.Lock()
	tenants := slices.Collect(maps.Keys(e.audienceWaits))
	e.waitMu.Unlock()
	slices.Sort(tenants)
	for _, t := range tenants {
		e.endAudienceWait(t)
	}
}

// AudienceLease is how long a scheduled audience's pass holds its claim:
// a pass a replica did not finish (it crashed or was restarted) runs
// again this long after it started. A pass over 1M customers takes under
// a minute (BenchmarkAudiencePass).
const AudienceLease = 15 * time.Minute

func (e *Engine) runAudience(ctx context.Context, r store.Ref) error {
	plans, err := e.plansFor(ctx, e.pool, []store.Ref{r})
	if err != nil {
		return err
	}
	p := planned{ref: r, plan: plans[r]}
	env, err := e.env(ctx, e.pool, r.Tenant, []*domain.Plan{p.plan}, 0)
	if err != nil {
		return err
	}
	trig := &domain.Trigger{At: env.Now}
	return e.eachCustomerChunk(ctx, r.Tenant, env, p.plan, func(custs []*domain.Customer) error {
		var es []store.Entrant
		for _, c := range custs {
			if p.plan.Matches(c, nil, env) {
				es = append(es, store.Entrant{CustomerID: c.ID, Key: entryKey(p.plan, trig), Anchor: env.Now, Vars: withRenewal(p.plan, c, store.Vars{}), TimeZone: c.TimeZone})
			}
		}
		if len(es) == 0 {
			return nil
		}
		return e.InTx(ctx, func(tx pgx.Tx) error { return e.enroll(ctx, tx, []entering{{p: p, es: es}}) })
	})
}

// eachCustomerChunk calls fn with every known customer of tenant, a chunk
// at a time, with the orders p's conditions under env need
// (store.LoadCustomers).
func (e *Engine) eachCustomerChunk(ctx context.Context, tenant string, env domain.Env, p *domain.Plan, fn func([]*domain.Customer) error) error {
	since, countCap := historyFrom(envEarliest(env), []*domain.Plan{p})
	after := ""
	for {
		ids, err := store.CustomerIDs(ctx, e.pool, tenant, after, e.cfg.AudienceChunk)
		if err != nil || len(ids) == 0 {
			return err
		}
		keys := make([]store.CustomerKey, len(ids))
		for i, id := range ids {
			keys[i] = store.CustomerKey{Tenant: tenant, ID: id}
		}
		m, err := store.LoadCustomers(ctx, e.pool, keys, since, countCap)
		if err != nil {
			return err
		}
		custs := make([]*domain.Customer, 0, len(ids))
		for _, k := range keys {
			if c := m[k]; c != nil {
				custs = append(custs, c)
			}
		}
		if err := fn(custs); err != nil {
			return err
		}
		after = ids[len(ids)-1]
	}
}

// Preview is who would enter a campaign now.
type Preview struct {
	Count     int64
	Customers []string
	Note      string
}

// PreviewAudience evaluates c over every known customer without enrolling
// anyone; members the entry policy keeps out are not counted. stored says
// c is a saved version, which is checked as it runs (CompileStored), not
// by rules added since it was saved.
func (e *Engine) PreviewAudience(ctx context.Context, tenant string, c *campaignv1.Campaign, stored bool, limit int) (Preview, error) {
	compile := domain.Compile
	if stored {
		compile = domain.CompileStored
	}
	p, err := compile(c)
	if err != nil {
		return Preview{}, err
	}
	release, err := e.heavyRead(ctx, tenant)
	if err != nil {
		return Preview{}, err
	}
	defer release()
	env, err := e.env(ctx, e.pool, tenant, []*domain.Plan{p}, 0)
	if err != nil {
		return Preview{}, err
	}
	gap := entryGap(p)
	pv := Preview{Note: previewNote(c)}
	err = e.eachCustomerChunk(ctx, tenant, env, p, func(custs []*domain.Customer) error {
		var ids []string
		for _, cu := range custs {
			if p.PreviewMatches(cu, env) {
				ids = append(ids, cu.ID)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		blocked, err := store.Blocked(ctx, e.pool, tenant, c.GetId(), gap, ids, env.Now)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if blocked[id] {
				continue
			}
			pv.Count++
			if len(pv.Customers) < limit {
				pv.Customers = append(pv.Customers, id)
			}
		}
		return nil
	})
	return pv, err
}

// previewNote says who a preview of c counts and when they would enter:
// nobody enters a paused or archived campaign, whatever the count.
func previewNote(c *campaignv1.Campaign) string {
	var who, when string
	switch tr := c.GetTrigger(); {
	case tr.GetSchedule() != nil:
		who, when = "customers who match the conditions now and whom the entry policy lets in", "the next scheduled evaluation enrolls them"
	case tr.GetEvent() != "":
		who, when = "customers who match the customer conditions now", fmt.Sprintf("they enter on their next %s that also meets the event's own conditions", tr.GetEvent())
	default:
		who, when = "customers currently in the trigger's churn band who match the conditions", "they enter on their next band change into it"
	}
	switch c.GetState() {
	case campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED:
		return "the campaign is paused and enrolls nobody until it is resumed: " + who + "; once resumed, " + when
	case campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED:
		return "the campaign is archived and enrolls nobody: " + who + " if it were active"
	case campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE, campaignv1.CampaignState_CAMPAIGN_STATE_UNSPECIFIED:
	}
	if c.GetTrigger().GetSchedule() != nil {
		return who + ": " + when
	}
	return who + "; " + when
}

// stateVerbs are the calls that move a campaign to a state.
var stateVerbs = map[campaignv1.CampaignState]string{
	campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE:   "resume",
	campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED:   "pause",
	campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED: "archive",
}

// initialState is the state a new campaign c starts in: the one it says
// (active when unset), or paused when asked to. A campaign is not created
// archived.
func initialState(c *campaignv1.Campaign, paused bool) (campaignv1.CampaignState, *domain.Violation) {
	switch s := c.GetState(); s {
	case campaignv1.CampaignState_CAMPAIGN_STATE_UNSPECIFIED, campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE:
		if paused {
			return campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED, nil
		}
		return campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE, nil
	case campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED:
		return s, nil
	case campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED:
		return 0, &domain.Violation{Field: "state", Description: "a new campaign starts CAMPAIGN_STATE_ACTIVE or CAMPAIGN_STATE_PAUSED, not archived"}
	default:
		return 0, &domain.Violation{Field: "state", Description: fmt.Sprintf("unknown state %d: want CAMPAIGN_STATE_ACTIVE or CAMPAIGN_STATE_PAUSED", s)}
	}
}

// stateChange is the violation of an update whose state (set) differs
// from the campaign's current one: an update stores a definition, and
// pausing, resuming and archiving are calls of their own, so that
// applying a file kept in version control never starts or stops sending.
func stateChange(id string, current, want campaignv1.CampaignState) *domain.Violation {
	if want == campaignv1.CampaignState_CAMPAIGN_STATE_UNSPECIFIED || want == current {
		return nil
	}
	cur := strings.ToLower(strings.TrimPrefix(current.String(), "CAMPAIGN_STATE_"))
	verb, ok := stateVerbs[want]
	if !ok {
		return &domain.Violation{Field: "state", Description: fmt.Sprintf("unknown state %d; the campaign is %s (an update keeps the state: leave state out)", want, cur)}
	}
	return &domain.Violation{Field: "state", Description: fmt.Sprintf("is %s, but the campaign is %s and an update does not change the state: run `retain campaigns %s %s` (%sCampaign), or leave state out",
		want, cur, verb, id, strings.ToUpper(verb[:1])+verb[1:])}
}

// withViolation is inv (nil when valid) with v (nil: none) added, as an
// error, nil when neither is set.
func withViolation(inv *domain.InvalidError, v *domain.Violation) error {
	if v != nil {
		inv = inv.With(*v)
	}
	if inv == nil {
		return nil
	}
	return inv
}

// Create validates and stores a new campaign, in the state it gives
// (active when unset), or paused when asked to.
func (e *Engine) Create(ctx context.Context, tenant string, c *campaignv1.Campaign, playbook string, paused bool) (*campaignv1.Campaign, error) {
	p, err := e.compile(ctx, c)
	var inv *domain.InvalidError
	if err != nil && !errors.As(err, &inv) {
		return nil, err
	}
	state, bad := initialState(c, paused)
	if err := withViolation(inv, bad); err != nil {
		return nil, err
	}
	var row store.Row
	err = e.InTx(ctx, func(tx pgx.Tx) error {
		row, err = store.InsertCampaign(ctx, tx, tenant, c, state, playbook, p.Schedule, e.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	return row.Campaign()
}

// Update validates c and stores it as the campaign's next version, unless
// it equals the current version (changed false: nothing stored).
// A state in c must be the campaign's current one (stateChange).
func (e *Engine) Update(ctx context.Context, tenant string, c *campaignv1.Campaign) (_ *campaignv1.Campaign, changed bool, err error) {
	p, err := e.compile(ctx, c)
	var inv *domain.InvalidError
	if err != nil && (!errors.As(err, &inv) || c.GetState() == campaignv1.CampaignState_CAMPAIGN_STATE_UNSPECIFIED) {
		return nil, false, err
	}
	var row store.Row
	err = e.InTx(ctx, func(tx pgx.Tx) error {
		row, changed, err = store.UpdateCampaign(ctx, tx, tenant, c.GetId(), e.Now(), func(cur store.Row) (*campaignv1.Campaign, time.Duration, error) {
			// The store refuses any update of an archived campaign
			// (ErrArchived) once this accepts it: an invalid one is told
			// what is invalid first.
			if cur.State != campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED {
				if err := withViolation(inv, stateChange(c.GetId(), cur.State, c.GetState())); err != nil {
					return nil, 0, err
				}
			}
			if inv != nil {
				return nil, 0, inv
			}
			return c, p.Schedule, nil
		})
		return err
	})
	if err != nil {
		return nil, false, err
	}
	saved, err := row.Campaign()
	return saved, changed, err
}

// Get returns a campaign at version (0: current).
func (e *Engine) Get(ctx context.Context, tenant, id string, version int32) (*campaignv1.Campaign, error) {
	row, err := store.GetCampaign(ctx, e.pool, tenant, id, version)
	if err != nil {
		return nil, err
	}
	return row.Campaign()
}

// List returns the tenant's campaigns.
func (e *Engine) List(ctx context.Context, tenant string, includeArchived bool) ([]*campaignv1.Campaign, error) {
	states := []campaignv1.CampaignState{campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE, campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED}
	if includeArchived {
		states = nil
	}
	rows, err := store.ListCampaigns(ctx, e.pool, tenant, states...)
	if err != nil {
		return nil, err
	}
	out := make([]*campaignv1.Campaign, len(rows))
	for i, r := range rows {
		if out[i], err = r.Campaign(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SetState pauses, resumes or archives a campaign.
func (e *Engine) SetState(ctx context.Context, tenant, id string, state campaignv1.CampaignState) (*campaignv1.Campaign, error) {
	var row store.Row
	err := e.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		row, err = store.SetState(ctx, tx, tenant, id, state, e.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	return row.Campaign()
}

// Report computes a campaign's report.
func (e *Engine) Report(ctx context.Context, tenant, id string) (*campaignv1.Report, error) {
	c, err := e.Get(ctx, tenant, id, 0)
	if err != nil {
		return nil, err
	}
	release, err := e.heavyRead(ctx, tenant)
	if err != nil {
		return nil, err
	}
	defer release()
	// One snapshot, so that the figures add up while events are applied.
	var n store.Counts
	if err := pg.InSnapshot(ctx, e.pool, func(tx pgx.Tx) error {
		n, err = store.ReportCounts(ctx, tx, tenant, id)
		return err
	}); err != nil {
		return nil, err
	}
	if n.Requested, err = e.requested(ctx, tenant, id, n.StepsDone); err != nil {
		return nil, err
	}
	return BuildReport(id, c.GetHoldoutPercent(), n), nil
}

// requested counts the messages a campaign requested: the send steps
// among the steps its treated enrollments completed (each step's request
// went to the outbox in the transaction that recorded it done).
func (e *Engine) requested(ctx context.Context, tenant, id string, done map[int32]map[string]int64) (int64, error) {
	refs := make([]store.Ref, 0, len(done))
	for v := range done {
		refs = append(refs, store.Ref{Tenant: tenant, ID: id, Version: v})
	}
	plans, err := e.plansFor(ctx, e.pool, refs)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, r := range refs {
		for _, s := range plans[r].Steps {
			if s.Kind == domain.KindSend {
				n += done[r.Version][s.ID]
			}
		}
	}
	return n, nil
}

// BuildReport turns counts into the report with its lift statistics.
func BuildReport(id string, holdoutPercent int32, n store.Counts) *campaignv1.Report {
	r := &campaignv1.Report{
		CampaignId: id, HoldoutPercent: holdoutPercent,
		Enrolled: n.Treated + n.Holdout, Treated: n.Treated, Holdout: n.Holdout, Active: n.Active,
		MessagesRequested: n.Requested, MessagesDelivered: n.Delivered, MessagesFailed: n.Failed, MessagesSuppressed: n.Suppressed,
		ConversionsTreated: n.ConvTreated, ConversionsHoldout: n.ConvHoldout,
		CouponsIssued: n.CouponsIssued, CouponsRedeemed: n.CouponsRedeemed,
	}
	for _, rv := range n.Revenue {
		r.Revenue = append(r.Revenue, &campaignv1.RevenueLine{
			Currency: rv.Currency, TreatedMinor: rv.Treated, HoldoutMinor: rv.Holdout,
			IncrementalMinor: domain.Incremental(rv.Treated, n.Treated, rv.Holdout, n.Holdout),
		})
	}
	switch {
	case n.Treated == 0 && n.Holdout == 0:
		r.Note = "nobody has entered yet"
		return r
	case n.Holdout == 0:
		r.Note = "no holdout members yet: lift cannot be measured"
	case n.Treated == 0:
		r.Note = "no treated members yet: lift cannot be measured"
	}
	if n.Treated > 0 {
		r.ConversionRateTreated = float64(n.ConvTreated) / float64(n.Treated)
	}
	if n.Holdout > 0 {
		r.ConversionRateHoldout = float64(n.ConvHoldout) / float64(n.Holdout)
	}
	if n.Treated == 0 || n.Holdout == 0 {
		return r
	}
	l := domain.ComputeLift(n.ConvTreated, n.Treated, n.ConvHoldout, n.Holdout)
	r.AbsoluteLift, r.AbsoluteLiftLow, r.AbsoluteLiftHigh = l.Absolute, l.AbsoluteCI.Low, l.AbsoluteCI.High
	if l.RelativeOK {
		r.RelativeLift, r.RelativeLiftLow, r.RelativeLiftHigh = &l.Relative, &l.RelativeCI.Low, &l.RelativeCI.High
	}
	return r
}

// Enrollments lists a page of a customer's enrollments.
func (e *Engine) Enrollments(ctx context.Context, f store.EnrollmentFilter) ([]store.Enrollment, error) {
	return store.CustomerEnrollments(ctx, e.pool, f)
}

// InstallPlaybook creates a campaign from a playbook, under id (default
// the playbook's name).
func (e *Engine) InstallPlaybook(ctx context.Context, tenant, name, id string, paused bool) (*campaignv1.Campaign, error) {
	c, ok, err := domain.FindPlaybook(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		pbs, err := domain.Playbooks()
		if err != nil {
			return nil, err
		}
		names := make([]string, len(pbs))
		for i, p := range pbs {
			names[i] = p.Name
		}
		return nil, fmt.Errorf("playbook %q: %w; the playbooks are %s", name, ErrNotFound, strings.Join(names, ", "))
	}
	if id != "" {
		c.Id = id
	}
	return e.Create(ctx, tenant, c, name, paused)
}

// StepID is the id of a plan's step index (empty when none), for the
// enrollment listing.
func StepID(p *domain.Plan, step int) string {
	if p == nil || step < 0 || step >= len(p.Steps) {
		return ""
	}
	return p.Steps[step].ID
}

// PlanOf returns the compiled plan of a campaign version.
func (e *Engine) PlanOf(ctx context.Context, tenant, id string, version int32) (*domain.Plan, error) {
	r := store.Ref{Tenant: tenant, ID: id, Version: version}
	m, err := e.plansFor(ctx, e.pool, []store.Ref{r})
	if err != nil {
		return nil, err
	}
	return m[r], nil
}
