// Package app is the campaign service's use cases: applying facts and
// signals (and enrolling the customers they trigger), recording goals and
// delivery outcomes, firing due timers, evaluating scheduled audiences,
// and the campaign API's operations. The rules live in internal/domain,
// the SQL in internal/store.
package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/telemetry"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

// Config tunes the engine.
type Config struct {
	// MaxTriggerAge: an event older than this (by its occurred_at) when
	// applied still updates facts and goals but enrolls nobody, so that
	// importing a shop's history does not message customers about orders
	// from last year.
	MaxTriggerAge time.Duration
	// TimerInterval spaces the scheduler's passes over due timers, and
	// TimerBatch is how many enrollments one pass transaction fires.
	TimerInterval time.Duration
	TimerBatch    int
	// AudienceInterval spaces the checks for scheduled audiences that are
	// due; AudienceChunk is how many customers one transaction evaluates.
	AudienceInterval time.Duration
	AudienceChunk    int
	// FactsBacklog and TenantFactsBacklog, set both or neither, say how
	// many events the facts consumer has yet to apply, and how many of
	// them are a tenant's (bus.Consumer.Backlog and TenantBacklog): a
	// tenant's scheduled audiences wait while its own are more than
	// AudienceMaxBacklog (default DefaultAudienceMaxBacklog).
	FactsBacklog       func(context.Context) (int64, error)
	TenantFactsBacklog func(ctx context.Context, tenant string) (int64, error)
	AudienceMaxBacklog int64
	// SharedFacts: the facts consumer runs on several replicas at once
	// (not exclusive), so a batch takes its customers' row locks first.
	SharedFacts bool
	// Now is the clock (tests move it); nil is time.Now.
	Now func() time.Time
}

// Engine runs the use cases.
type Engine struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger

	// plans caches compiled campaign versions, which never change.
	mu    sync.Mutex
	plans map[store.Ref]*domain.Plan

	// stats keeps the planner statistics of the tables facts grow.
	stats *pg.GrowthAnalyzer

	// envs caches, per tenant, what the facts consumer's conditions need
	// of the whole tenant (see env).
	envMu sync.Mutex
	envs  map[string]*tenantEnv

	// audienceWaits paces, per tenant, the log of its scheduled audiences
	// waiting for its facts (RunAudiences); a tenant leaves it when its
	// wait ends.
	waitMu        sync.Mutex
	audienceWaits map[string]*telemetry.FailureRun
	// backlogUnread paces the one log of every tenant's audiences
	// waiting because the facts consumer's backlog cannot be read (NATS
	// away): a line per tenant would be a line per shop of the
	// deployment every ten minutes.
	backlogUnread telemetry.FailureRun
	// heavy holds a token per heavy read under way (heavyRead); a
	// tenant's turn (one at a time per tenant) is in heavyTurns.
	heavy      chan struct{}
	heavyMu    sync.Mutex
	heavyTurns map[string]*heavyTurn

	// templates (a Templates), if set, are the notifier's, which Create
	// and Update check a campaign's send steps against. Atomic: `retain
	// dev` sets it once its API listens.
	templates atomic.Value
}

// envMaxAge is how long the facts consumer reuses a tenant's revenue ranking
// and RFM scales: computing them reads every order of the tenant, which per
// batch of events would stall a large shop's consumer.
const envMaxAge = 5 * time.Minute

// tenantEnv is what conditions need of a whole tenant, as of at.
type tenantEnv struct {
	at   time.Time
	revs []int64 // 365-day revenues, highest first; nil: not read
	rfm  *domain.RFMScales
}

// New returns an engine on pool.
func New(pool *pgxpool.Pool, cfg Config, log *slog.Logger) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TimerBatch <= 0 {
		cfg.TimerBatch = 500
	}
	if cfg.AudienceChunk <= 0 {
		cfg.AudienceChunk = 1000
	}
	if cfg.AudienceMaxBacklog <= 0 {
		cfg.AudienceMaxBacklog = DefaultAudienceMaxBacklog
	}
	// Only the columns the batch statements join and filter on: the
	// row counts are what the plans hinge on, and every other column would
	// only make each ANALYZE slower.
	stats := pg.NewGrowthAnalyzer(pool, log,
		"campaign_orders (tenant, customer_id, placed_at)",
		"campaign_customers (tenant, customer_id)",
		"campaign_members (tenant, campaign_id, customer_id)",
		"enrollments (tenant, campaign_id, customer_id, goal_event, status, due_at)",
		"coupons (tenant, code, campaign_id, customer_id)")
	return &Engine{pool: pool, cfg: cfg, log: log, plans: map[store.Ref]*domain.Plan{}, stats: stats, envs: map[string]*tenantEnv{},
		audienceWaits: map[string]*telemetry.FailureRun{}, backlogUnread: telemetry.FailureRun{Every: 10 * time.Minute}, heavy: make(chan struct{}, heavyReads),
		heavyTurns: map[string]*heavyTurn{}}
}

// Close waits for work the engine runs in the background (a statistics
// refresh) to finish; call it after the consumers have stopped.
func (e *Engine) Close() { e.stats.Wait() }

// Now is the engine's clock, in UTC.
func (e *Engine) Now() time.Time { return e.cfg.Now().UTC() }

// plansFor returns the compiled plans of refs.
func (e *Engine) plansFor(ctx context.Context, q store.Querier, refs []store.Ref) (map[store.Ref]*domain.Plan, error) {
	out := make(map[store.Ref]*domain.Plan, len(refs))
	var missing []store.Ref
	e.mu.Lock()
	for _, r := range refs {
		if p, ok := e.plans[r]; ok {
			out[r] = p
		} else {
			missing = append(missing, r)
		}
	}
	e.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	specs, err := store.Versions(ctx, q, missing)
	if err != nil {
		return nil, err
	}
	for _, r := range missing {
		spec, ok := specs[r]
		if !ok {
			return nil, fmt.Errorf("campaign %s v%d: %w", r.ID, r.Version, store.ErrNotFound)
		}
		c := &campaignv1.Campaign{}
		if err := proto.Unmarshal(spec, c); err != nil {
			return nil, fmt.Errorf("decode campaign %s v%d: %w", r.ID, r.Version, err)
		}
		c.Version = r.Version
		p, err := domain.CompileStored(c)
		if err != nil {
			return nil, fmt.Errorf("stored campaign %s v%d: %w", r.ID, r.Version, err)
		}
		out[r] = p
	}
	e.mu.Lock()
	for _, r := range missing {
		e.plans[r] = out[r]
	}
	e.mu.Unlock()
	return out, nil
}

// planned is a campaign version of a tenant, compiled.
type planned struct {
	ref  store.Ref
	plan *domain.Plan
}

// activePlans returns the active campaigns of tenants that pass keep,
// highest priority first.
func (e *Engine) activePlans(ctx context.Context, q store.Querier, tenants []string, keep func(store.Ref, *domain.Plan) bool) ([]planned, error) {
	refs, err := store.ActiveRefs(ctx, q, tenants)
	if err != nil {
		return nil, err
	}
	plans, err := e.plansFor(ctx, q, refs)
	if err != nil {
		return nil, err
	}
	var out []planned
	for _, r := range refs {
		if p := plans[r]; keep(r, p) {
			out = append(out, planned{ref: r, plan: p})
		}
	}
	slices.SortFunc(out, func(a, b planned) int {
		return cmp.Or(cmp.Compare(b.plan.Campaign.GetPriority(), a.plan.Campaign.GetPriority()), cmp.Compare(a.ref.ID, b.ref.ID))
	})
	return out, nil
}

// triggered is a tenant's customer's trigger with the template values it
// brings.
type triggered struct {
	tenant   string
	customer string
	trig     *domain.Trigger
	vars     store.Vars
	// replay: the trigger of an order applied earlier, evaluated again
	// because an order placed before it arrived late (laterOrders).
	replay bool
}

// env computes what the conditions of plans need beyond customers, as of
// now; with maxAge > 0 (the facts consumer) a tenant's revenue ranking and
// RFM scales are reused for that long: conditions are then evaluated
// against the tenant as it was up to maxAge earlier (RFM scores a customer's
// orders before the scales' instant, as metrics would at that instant).
func (e *Engine) env(ctx context.Context, q store.Querier, tenant string, plans []*domain.Plan, maxAge time.Duration) (domain.Env, error) {
	env := domain.Env{Now: e.Now()}
	pcts, useRFM := domain.TopRevenuePercents(plans), domain.UsesRFM(plans)
	if len(pcts) == 0 && !useRFM {
		return env, nil
	}
	te := &tenantEnv{at: env.Now}
	if maxAge > 0 {
		e.envMu.Lock()
		if c := e.envs[tenant]; c != nil && !env.Now.Before(c.at) && env.Now.Sub(c.at) < maxAge {
			*te = *c
		}
		e.envMu.Unlock()
	}
	if len(pcts) > 0 && te.revs == nil {
		revs, err := store.RevenuesDesc(ctx, q, tenant, te.at)
		if err != nil {
			return env, err
		}
		te.revs = append([]int64{}, revs...)
	}
	if useRFM && te.rfm == nil {
		// The instant Postgres can hold, so that the scales and the
		// customers' own values cut the orders at the same place.
		at := te.at.Truncate(time.Microsecond)
		vs, err := store.RFMValues(ctx, q, tenant, at)
		if err != nil {
			return env, err
		}
		te.rfm = domain.NewRFMScales(at, vs)
	}
	if maxAge > 0 {
		e.envMu.Lock()
		e.envs[tenant] = te
		e.envMu.Unlock()
	}
	if len(pcts) > 0 {
		env.TopRevenue = map[int32]int64{}
		for _, p := range pcts {
			if th, ok := domain.TopRevenueThreshold(te.revs, p); ok {
				env.TopRevenue[p] = th
			}
		}
	}
	env.RFM = te.rfm
	return env, nil
}

// triggerKinds are the kinds of trigger a tenant's events in a batch are.
type triggerKinds struct {
	types map[string]bool
	bands map[churnv1.RiskBand]bool
}

// enrollTriggered evaluates the triggers of a batch, of any tenants (and
// those of the stored orders a late order of theirs changes, laterOrders),
// against their tenants' active campaigns and enrolls the customers who
// qualify, running their first steps in tx. Each statement serves every
// tenant of the batch.
func (e *Engine) enrollTriggered(ctx context.Context, tx pgx.Tx, ts []triggered) error {
	if len(ts) == 0 {
		return nil
	}
	kinds := map[string]triggerKinds{}
	var tenants []string
	for _, t := range ts {
		k, ok := kinds[t.tenant]
		if !ok {
			k = triggerKinds{types: map[string]bool{}, bands: map[churnv1.RiskBand]bool{}}
			kinds[t.tenant] = k
			tenants = append(tenants, t.tenant)
		}
		if t.trig.Type == domain.TriggerChurnBand {
			k.bands[t.trig.Band] = true
		} else {
			k.types[t.trig.Type] = true
		}
	}
	plans, err := e.activePlans(ctx, tx, tenants, func(r store.Ref, p *domain.Plan) bool {
		tr, k := p.Campaign.GetTrigger(), kinds[r.Tenant]
		return k.types[tr.GetEvent()] || k.bands[tr.GetChurnBand()]
	})
	if err != nil || len(plans) == 0 {
		return err
	}
	plansOf := map[string][]*domain.Plan{}
	all := make([]*domain.Plan, len(plans))
	for i, p := range plans {
		plansOf[p.ref.Tenant] = append(plansOf[p.ref.Tenant], p.plan)
		all[i] = p.plan
	}
	envs := make(map[string]domain.Env, len(plansOf))
	for t, ps := range plansOf {
		if envs[t], err = e.env(ctx, tx, t, ps, envMaxAge); err != nil {
			return err
		}
	}
	keys := make([]store.CustomerKey, 0, len(ts))
	earliest := ts[0].trig.At
	for _, t := range ts {
		keys = append(keys, store.CustomerKey{Tenant: t.tenant, ID: t.customer})
		earliest = minTime(earliest, t.trig.At)
	}
	for _, env := range envs {
		earliest = minTime(earliest, envEarliest(env))
	}
	slices.SortFunc(keys, store.CompareCustomers)
	since, countCap := historyFrom(earliest, all)
	custs, err := store.LoadCustomers(ctx, tx, slices.Compact(keys), since, countCap)
	if err != nil {
		return err
	}
	// The replayed orders come after those of the batch: the customers'
	// orders loaded cover them.
	ts = append(ts, e.laterOrders(ts, custs)...)
	byTenant := map[string][]triggered{}
	for _, t := range ts {
		byTenant[t.tenant] = append(byTenant[t.tenant], t)
	}
	ins := make([]entering, 0, len(plans))
	for _, p := range plans {
		tr, env := p.plan.Campaign.GetTrigger(), envs[p.ref.Tenant]
		in := entering{p: p}
		for _, t := range byTenant[p.ref.Tenant] {
			if t.trig.Type == domain.TriggerChurnBand {
				if tr.GetChurnBand() != t.trig.Band {
					continue
				}
			} else if tr.GetEvent() != t.trig.Type {
				continue
			}
			if t.replay && p.plan.EntryKey != "" && p.plan.EntryKey != "order_id" {
				// Its key would be the event id, which a replay does not
				// have: an entry made the first time would be made again.
				continue
			}
			c := custs[store.CustomerKey{Tenant: t.tenant, ID: t.customer}]
			if c == nil {
				c = &domain.Customer{ID: t.customer}
			}
			if !p.plan.Matches(c, t.trig, env) {
				continue
			}
			in.es = append(in.es, store.Entrant{CustomerID: t.customer, Key: entryKey(p.plan, t.trig), Anchor: t.trig.At, Vars: withRenewal(p.plan, c, t.vars), TimeZone: c.TimeZone})
		}
		ins = append(ins, in)
	}
	return e.enroll(ctx, tx, ins)
}

// historyFrom is where the orders the plans' conditions need listed
// begin, earliest being the earliest instant they are evaluated at, and
// how far the earlier ones are counted (domain.HistoryNeeds).
func historyFrom(earliest time.Time, plans []*domain.Plan) (time.Time, int64) {
	n := domain.HistoryNeeds(plans)
	return earliest.Add(-n.Window), n.CountCap
}

// envEarliest is the earliest instant conditions are evaluated at under
// env: its own, or its RFM scales' (up to envMaxAge older).
func envEarliest(env domain.Env) time.Time {
	if env.RFM != nil {
		return minTime(env.Now, env.RFM.At)
	}
	return env.Now
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// laterOrders returns the order.placed triggers to evaluate again because
// an order of the batch arrived after them but was placed before them (a
// shop's webhook retried late, events exported out of order): the fresh
// orders already stored that a customer placed after an order of the
// batch. What their conditions saw has changed (the late order makes a
// later one the customer's 3rd, adds to the revenue), and evaluated in
// placement order they could have entered a campaign. An entry made the
// first time is not made again: the order id or "once" key exists, or
// that entry, within the gap of itself, refuses it (store.Admit; replays
// key a gapped entry by order).
// An entry a late order would have prevented (a "first order" that no
// longer is) stays: its messages may be out.
func (e *Engine) laterOrders(ts []triggered, custs map[store.CustomerKey]*domain.Customer) []triggered {
	// The customers whose last stored order (orders are listed oldest
	// first, then by id: domain.Order.After) comes after one of theirs in
	// the batch: in a stream in order, none but those with several orders
	// in the batch.
	earliest := map[store.CustomerKey]domain.Order{}
	for _, t := range ts {
		if t.trig.Type != domain.EventOrderPlaced {
			continue
		}
		k := store.CustomerKey{Tenant: t.tenant, ID: t.customer}
		c := custs[k]
		if c == nil || len(c.Orders) == 0 || !c.Orders[len(c.Orders)-1].After(t.trig.At, t.trig.OrderID) {
			continue
		}
		if e, ok := earliest[k]; !ok || e.After(t.trig.At, t.trig.OrderID) {
			earliest[k] = domain.Order{ID: t.trig.OrderID, At: t.trig.At}
		}
	}
	if len(earliest) == 0 {
		return nil
	}
	inBatch := map[[2]string]bool{}
	for _, t := range ts {
		if t.trig.Type == domain.EventOrderPlaced {
			inBatch[[2]string{t.tenant, t.trig.OrderID}] = true
		}
	}
	oldest := e.Now().Add(-e.cfg.MaxTriggerAge)
	var out []triggered
	for _, k := range slices.SortedFunc(maps.Keys(earliest), store.CompareCustomers) {
		first := earliest[k]
		for _, o := range custs[k].Orders {
			if !o.After(first.At, first.ID) || inBatch[[2]string{k.Tenant, o.ID}] || (e.cfg.MaxTriggerAge > 0 && o.At.Before(oldest)) {
				continue
			}
			out = append(out, triggered{
				tenant:   k.Tenant,
				customer: k.ID,
				trig: &domain.Trigger{Type: domain.EventOrderPlaced, EventID: "order:" + o.ID, At: o.At,
					OrderID: o.ID, OrderTotal: o.TotalMinor, Currency: o.Currency},
				vars:   store.Vars{OrderID: o.ID, OrderTotal: o.TotalMinor, Currency: o.Currency},
				replay: true,
			})
		}
	}
	return out
}

// entryKey is the enrollment's unique key under the campaign's entry
// policy: one key per customer for once_per_customer, the event's field
// for once_per_key, the event id otherwise (the gap is enforced by the
// member row; the key stops a replay of the same event).
func entryKey(p *domain.Plan, t *domain.Trigger) string {
	switch {
	case p.EntryKey != "":
		if k := t.Key(p.EntryKey); k != "" {
			return p.EntryKey + ":" + k
		}
		return "event:" + t.EventID
	case p.EntryEvery == 0:
		return "once"
	case t.Type == "":
		return "schedule:" + t.At.Format(time.RFC3339)
	}
	return "event:" + t.EventID
}

// withRenewal is v with the customer's renewal date when p's conditions
// test it and the trigger did not carry one (a scheduled audience, an
// order): the message can then say the date it is about.
func withRenewal(p *domain.Plan, c *domain.Customer, v store.Vars) store.Vars {
	if p.Renewal && v.RenewalDate == "" && c.RenewalDate != nil {
		v.RenewalDate = c.RenewalDate.Format(time.DateOnly)
	}
	return v
}

// entering is one campaign's entrants in a batch.
type entering struct {
	p  planned
	es []store.Entrant
}

// enroll admits the entrants of a batch's campaigns under their entry
// policies, creates their enrollments and runs their steps that are due:
// a statement per table for the whole batch, whatever the campaigns and
// their tenants.
// Entries the enrollment's unique key decides (once ever, once per key)
// go straight to the insert; those with a gap pass their member row's
// conditional upsert first. A customer keeps the holdout group of their
// first entry: a member row holds it for gapped policies, the earlier
// enrollments for keyed ones (read only once the campaign has been edited:
// until then the group is the hash of InHoldout, as it was at entry).
func (e *Engine) enroll(ctx context.Context, tx pgx.Tx, ins []entering) error {
	var (
		as             []store.Admission
		entered, reuse []store.Entrant
	)
	plans := map[[2]string]planned{}
	for _, in := range ins {
		if len(in.es) == 0 {
			continue
		}
		p := in.p
		plans[[2]string{p.ref.Tenant, p.ref.ID}] = p
		es := slices.Clone(in.es)
		for i := range es {
			es[i].Tenant, es[i].CampaignID = p.ref.Tenant, p.ref.ID
			es[i].Holdout = domain.InHoldout(p.ref.Tenant, p.ref.ID, es[i].CustomerID, p.plan.Campaign.GetHoldoutPercent())
		}
		gap := entryGap(p.plan)
		if gap == 0 {
			entered = append(entered, es...)
			if p.ref.Version > 1 {
				reuse = append(reuse, es...)
			}
			continue
		}
		if gap > 0 {
			// Once per gap: every entrant, Admit takes each customer's
			// oldest first, as if applied one by one in time order.
			as = append(as, store.Admission{Gap: gap, Entrants: es})
			continue
		}
		// Once ever: each customer's earliest entry.
		slices.SortStableFunc(es, func(a, b store.Entrant) int {
			return cmp.Or(cmp.Compare(a.CustomerID, b.CustomerID), a.Anchor.Compare(b.Anchor))
		})
		entered = append(entered, slices.CompactFunc(es, func(a, b store.Entrant) bool { return a.CustomerID == b.CustomerID })...)
	}
	admitted, err := store.Admit(ctx, tx, as)
	if err != nil {
		return err
	}
	entered = append(entered, admitted...)
	groups, err := store.HoldoutGroups(ctx, tx, reuse)
	if err != nil {
		return err
	}
	if len(entered) == 0 {
		return nil
	}
	now := e.Now()
	rows := make([]store.Enrollment, len(entered))
	run := make([]running, len(entered))
	for i, en := range entered {
		p := plans[[2]string{en.Tenant, en.CampaignID}]
		if h, ok := groups[store.MemberKey{Tenant: en.Tenant, CampaignID: en.CampaignID, CustomerID: en.CustomerID}]; ok {
			en.Holdout = h
		}
		rows[i] = store.Enrollment{
			Tenant: en.Tenant, CampaignID: p.ref.ID, Version: p.ref.Version, CustomerID: en.CustomerID, Key: en.Key,
			Holdout: en.Holdout, Anchor: en.Anchor, EnteredAt: now, AttributionUntil: en.Anchor.Add(p.plan.Attribution),
			GoalEvent: p.plan.GoalEvent, StopOnGoal: !p.plan.Campaign.GetGoal().GetContinueAfterGoal(), Vars: en.Vars,
			Status: domain.StatusActive, Due: &entered[i].Anchor,
		}
		run[i] = running{enr: &rows[i], plan: p.plan, tz: en.TimeZone}
	}
	return e.runSteps(ctx, tx, run, true)
}

// entryGap is p's entry policy as a gap: < 0 once ever, 0 whenever the
// entry key is new, > 0 again only that long after the last entry.
func entryGap(p *domain.Plan) time.Duration {
	switch {
	case p.EntryKey != "":
		return 0
	case p.EntryEvery == 0:
		return -1
	}
	return p.EntryEvery
}

// Errors the API maps to status codes.
var (
	ErrNotFound = store.ErrNotFound
	ErrExists   = store.ErrExists
	ErrArchived = store.ErrArchived
)

// InTx runs fn in a transaction of the engine's pool.
func (e *Engine) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pg.InTx(ctx, e.pool, fn)
}
