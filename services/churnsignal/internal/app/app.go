// Package app is churn-signal's use cases: applying facts and rescoring the
// customers they touch (the bus handler), full rescoring passes on a
// schedule, refitting the purchase model, and the queries. Storage is
// internal/store, the math internal/model and internal/score.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/telemetry"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/churnsignal/internal/facts"
	"github.com/retainhq/retain/services/churnsignal/internal/model"
	"github.com/retainhq/retain/services/churnsignal/internal/score"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// SignalType is the type of the derived event, the last tokens of its
// subject retain.signals.<tenant>.churn.risk_changed.
const SignalType = "churn.risk_changed"

// Errors the API maps to status codes.
var (
	// ErrNotFound: nothing is known about the customer by the instant.
	ErrNotFound = errors.New("not found")
	// ErrNoModel: the tenant's model was never fitted.
	ErrNoModel = errors.New("no model fitted yet")
	// ErrNotEnoughData: the orders cannot identify a model.
	ErrNotEnoughData = errors.New("not enough purchase history to fit the model")
)

// Config tunes the engine.
type Config struct {
	// HorizonWeeks is the prediction horizon H.
	HorizonWeeks float64
	// ChunkSize is how many customers one transaction of a full rescoring
	// pass locks and rescores.
	ChunkSize int
	// Workers is how many transactions of a full pass run at once.
	Workers int
	// RescoreInterval spaces scheduled full passes (0: no schedule).
	RescoreInterval time.Duration
	// RefitInterval is the age at which a scheduled pass refits a tenant's
	// model (pinned models excepted); it is refit sooner when its data grew
	// (see rule.due).
	RefitInterval time.Duration
	// RefitGrowthPercent is how much the orders or the customers under a
	// live model must grow for it to be refit ahead of its age, and
	// MinRefitGap the least time from a fit to such a refit (0: the
	// defaults).
	RefitGrowthPercent int
	MinRefitGap        time.Duration
	// MaxLag is how far behind the stream the facts consumer may be (the
	// stream time of its batch's newest message) for a model to be fitted
	// by itself and a band change to be published (0: DefaultMaxLag).
	MaxLag time.Duration
	// TenantBacklog says how many of a tenant's facts the consumer has yet
	// to apply (bus.Consumer.TenantBacklog). While the consumer is more
	// than MaxLag behind, a tenant is behind only with more than
	// HoldMinBacklog of them (0: DefaultHoldMinBacklog): one shop's import
	// holds that shop's band changes and refits, not every shop's
	// (decision 0037). Nil: every tenant is behind with the consumer.
	TenantBacklog  func(ctx context.Context, tenant string) (int64, error)
	HoldMinBacklog int64
	// CaughtUp reports whether the facts consumer has applied everything
	// on the stream (bus.Consumer.CaughtUp): the start-up pass runs once
	// it has, or once the consumer has stored the facts of a batch, whose
	// lag then says whether it is behind. Nil: the start-up pass waits for that batch
	// consumerIdle at most.
	CaughtUp func(context.Context) (bool, error)
	// Now is the clock (tests move it); nil is time.Now.
	Now func() time.Time
	// Meter records the rescoring metrics; nil records nothing.
	Meter metric.Meter
}

// Engine runs the use cases.
type Engine struct {
	pool    *pgxpool.Pool
	cfg     Config
	log     *slog.Logger
	metrics passMetrics

	mu     sync.Mutex
	passes map[string]*sync.Mutex // per tenant: one full pass at a time

	// releases logs the held-release rounds' database outages once
	// (releaseAll runs every minute and at every wake-up).
	releases *pg.OutageLog
	// refits logs the scheduled refits' database outages once, whatever
	// the tenants waiting for one.
	refits *pg.OutageLog

	// stats refreshes the projection's statistics as it grows (see Handle).
	stats *pg.GrowthAnalyzer

	// wmu guards what the consumer tells the refit loop (see noteBatch,
	// applying): each tenant's watch, the consumer's last batch (when its
	// facts were stored or it was done, and when the newest of its
	// messages was stored in the stream), the batches being applied, and
	// the wake-up once it is idle.
	wmu                        sync.Mutex
	watches                    map[string]*watch
	lastBatch, lastBatchNewest time.Time
	handling                   int
	idleWake                   *time.Timer
	// wake tells the refit loop that a tenant was flagged, or that the
	// consumer went idle after a batch behind the stream.
	wake chan struct{}
	// fetched is closed once the lag of the consumer's first batch is
	// known (see applying).
	fetched     chan struct{}
	fetchedOnce sync.Once

	// bmu guards backlogs, each tenant's last answer of backlogBehind;
	// backlogErrs paces the log of backlogs that cannot be read.
	bmu         sync.Mutex
	backlogs    map[string]backlogAnswer
	backlogErrs telemetry.FailureRun
}

// New returns an engine on pool.
func New(pool *pgxpool.Pool, cfg Config, log *slog.Logger) (*Engine, error) {
	if cfg.HorizonWeeks <= 0 {
		cfg.HorizonWeeks = score.DefaultHorizonWeeks
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 2000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefitGrowthPercent <= 0 {
		cfg.RefitGrowthPercent = DefaultRefitGrowthPercent
	}
	if cfg.MinRefitGap <= 0 {
		cfg.MinRefitGap = DefaultMinRefitGap
	}
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.HoldMinBacklog <= 0 {
		cfg.HoldMinBacklog = DefaultHoldMinBacklog
	}
	if cfg.Meter == nil {
		cfg.Meter = noop.NewMeterProvider().Meter("")
	}
	m, err := newPassMetrics(cfg.Meter)
	if err != nil {
		return nil, err
	}
	e := &Engine{pool: pool, cfg: cfg, log: log, metrics: m, passes: map[string]*sync.Mutex{},
		stats:   pg.NewGrowthAnalyzer(pool, log, "churn_orders", "churn_tickets", "churn_answers", "churn_renewals", "churn_scores"),
		watches: map[string]*watch{}, wake: make(chan struct{}, 1), fetched: make(chan struct{}),
		backlogs: map[string]backlogAnswer{}, backlogErrs: telemetry.FailureRun{Every: 10 * time.Minute},
		releases: pg.NewOutageLog(log, "publishing held band changes", pool.Ping),
		refits:   pg.NewOutageLog(log, "scheduled refits", pool.Ping)}
	return e, nil
}

func (e *Engine) now() time.Time { return e.cfg.Now().UTC() }

// Stats counts what a rescoring did.
type Stats struct {
	// Customers rescored; Changed, the score rows written (those whose
	// score, band or reasons changed); BandChanges, each a
	// churn.risk_changed in the outbox (a customer's first score in LOW is
	// not counted: it announces nothing); Held, the customers left with a
	// band other than the one last published, held back (holdsBack).
	Customers, Changed, BandChanges, Held int
}

func (s *Stats) add(o Stats) {
	s.Customers += o.Customers
	s.Changed += o.Changed
	s.BandChanges += o.BandChanges
	s.Held += o.Held
}

// Handle is the bus handler of the facts consumer: it applies a batch of
// facts to the projection and rescores every customer it touched, all in the
// consumer's transaction, so a band change and its churn.risk_changed are
// committed together with the inbox.
//
// A batch more than MaxLag behind the stream (a shop's history import
// arriving, or the backlog of a restart during one) stores the band
// changes of the tenants whose own facts are behind (backlogBehind: more
// than HoldMinBacklog of them yet to apply) without publishing them: they
// are bands of half-loaded data, under a model fitted on less still, and
// each would be a "high churn risk" message to a customer. The other
// tenants of the batch, whose facts are all applied but for a few, wait
// behind the import on the stream but are not held. So does a batch of a
// tenant awaiting its model (awaiting: a refit check pending, which may
// refit it on what arrived, or no model yet). Once the tenant has caught
// up and its model is settled, the refit loop publishes, once, each band
// that then differs from the one last published (releaseHeld, changes).
func (e *Engine) Handle(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
	var b facts.Batch
	touched := map[facts.Customer]struct{}{}
	for _, d := range ds {
		c, ok, err := b.Add(d.Subject, d.Data)
		if err != nil {
			d.Reject(err.Error())
			continue
		}
		if ok {
			touched[c] = struct{}{}
		}
	}
	customers := make([]facts.Customer, 0, len(touched))
	for c := range touched {
		customers = append(customers, c)
	}
	// Locks are always taken in (tenant, customer) order.
	slices.SortFunc(customers, func(a, b facts.Customer) int { return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.ID, b.ID)) })
	newest := newestStored(ds)
	behind := !newest.IsZero() && time.Since(newest) > e.cfg.MaxLag
	// Whether each tenant's own facts are behind is asked before the
	// batch locks any row: a stale answer is a round trip to the server
	// or two (backlogBehind), which the batch's customer and score locks,
	// and the passes waiting on them, would otherwise be held through.
	backlogged := map[string]bool{}
	if behind {
		for _, c := range customers {
			if _, asked := backlogged[c.Tenant]; !asked {
				backlogged[c.Tenant] = e.backlogBehind(ctx, c.Tenant)
			}
		}
	}
	if err := store.ApplyFacts(ctx, tx, &b, customers); err != nil {
		return err
	}
	defer e.applying(newest)()
	ordered := map[string]bool{}
	for _, o := range b.Orders {
		ordered[o.Tenant] = true
	}
	models, held, err := e.rescoreCustomers(ctx, tx, customers, func(tenant string, fitted bool) bool {
		// A tenant without a model whose orders arrive is checked for its
		// first fit once this batch commits (noteBatch): its bands wait.
		first := !fitted && ordered[tenant] && e.cfg.RescoreInterval > 0
		return backlogged[tenant] || first || e.awaiting(tenant, fitted)
	})
	if err != nil {
		return err
	}
	// Counted once the batch commits: an attempt that rolls back is
	// applied again, and a refit woken before the commit would count
	// without this batch's orders. (stats: a projection that grows from
	// empty, a fresh service importing a shop's history, outruns
	// autovacuum's statistics, and with a table believed tiny Postgres
	// reads every order of the tenant for each batch instead of the
	// batch's customers: 50k facts then took minutes instead of seconds.)
	orders := b.Orders
	bus.AfterCommit(ctx, func() {
		e.stats.Applied(len(ds))
		e.noteBatch(orders, models, held)
	})
	return nil
}

// tenantEnv is what scoring a tenant's customers needs besides features.
type tenantEnv struct {
	pop   score.Population
	w     score.Weights
	model *store.Model
}

func (e *Engine) env(ctx context.Context, q store.Querier, tenant string) (tenantEnv, error) {
	m, ok, err := store.LoadModel(ctx, q, tenant)
	if err != nil {
		return tenantEnv{}, err
	}
	w, err := store.LoadWeights(ctx, q, tenant)
	if err != nil {
		return tenantEnv{}, err
	}
	return e.newEnv(m, ok, w), nil
}

// newEnv is a tenant's env from its model (if fitted: ok) and weights.
func (e *Engine) newEnv(m store.Model, ok bool, w store.TenantWeights) tenantEnv {
	env := tenantEnv{pop: score.Population{HorizonWeeks: e.cfg.HorizonWeeks}, w: w.Weights}
	if ok {
		p := m.Params
		env.pop.Model, env.pop.TypicalGapDays, env.model = &p, m.TypicalGapDays, &m
	}
	return env
}

// rescoreCustomers rescores customers of any number of tenants (sorted by
// tenant and id) as rescoreRows does one tenant's locked rows, with one
// statement per step whatever the number of tenants: the tenants' models
// and weights, the locks, the features, the score writes, the outbox. A
// batch of facts from many shops then costs about what one shop's does.
// It returns the models it scored with, by tenant (those with one), and
// the band changes it held back (those of the tenants hold says, given
// whether each has a model), by tenant.
func (e *Engine) rescoreCustomers(ctx context.Context, tx pgx.Tx, customers []facts.Customer, hold func(tenant string, fitted bool) bool) (map[string]store.Model, map[string]int, error) {
	if len(customers) == 0 {
		return nil, nil, nil
	}
	var tenants []string
	for _, c := range customers {
		if len(tenants) == 0 || tenants[len(tenants)-1] != c.Tenant {
			tenants = append(tenants, c.Tenant)
		}
	}
	models, weights, err := store.LoadModelsAndWeights(ctx, tx, tenants)
	if err != nil {
		return nil, nil, err
	}
	locked, err := store.LockScoresOf(ctx, tx, customers)
	if err != nil {
		return nil, nil, err
	}
	// As of an instant taken once every row is locked, as rescoreRows.
	now := e.now()
	feats, err := store.LoadFeaturesOf(ctx, tx, customers, now)
	if err != nil {
		return nil, nil, err
	}
	var (
		writes []store.TenantScores
		msgs   []bus.Message
		held   = map[string]int{}
	)
	for _, t := range locked {
		m, fitted := models[t.Tenant]
		written, signals, n, err := changes(t.Tenant, e.newEnv(m, fitted, weights[t.Tenant]), t.Rows, feats[t.Tenant], now, hold(t.Tenant, fitted))
		if err != nil {
			return nil, nil, err
		}
		writes, msgs = append(writes, store.TenantScores{Tenant: t.Tenant, Rows: written}), append(msgs, signals...)
		held[t.Tenant] += n
	}
	if err := store.WriteScoresOf(ctx, tx, writes); err != nil {
		return nil, nil, err
	}
	if err := bus.Enqueue(ctx, tx, msgs...); err != nil {
		return nil, nil, err
	}
	return models, held, nil
}

// rescoreRows scores locked rows as of now (taken once they are locked, so
// never before another writer's score of them), writes those whose score,
// band or reasons changed and enqueues a churn.risk_changed for each band
// change, unless hold (see changes). Features are read for sel, which
// selects at least the rows' customers.
func (e *Engine) rescoreRows(ctx context.Context, tx pgx.Tx, tenant string, env tenantEnv, rows []store.ScoreRow, sel store.Selector, hold bool) (Stats, error) {
	st := Stats{Customers: len(rows)}
	if len(rows) == 0 {
		return st, nil
	}
	now := e.now()
	feats, err := store.LoadFeatures(ctx, tx, tenant, sel, now)
	if err != nil {
		return st, err
	}
	writes, msgs, held, err := changes(tenant, env, rows, feats, now, hold)
	if err != nil {
		return st, err
	}
	st.Changed, st.BandChanges, st.Held = len(writes), len(msgs), held
	if err := store.WriteScores(ctx, tx, tenant, writes); err != nil {
		return st, err
	}
	if err := bus.Enqueue(ctx, tx, msgs...); err != nil {
		return st, err
	}
	return st, nil
}

// changes scores a tenant's locked rows from feats as of now and returns
// the rows to write, those whose score, band or reasons changed, and a
// churn.risk_changed for each band change. A row that only aged (a
// fraction of a point, "96 days" instead of "95 days since the last
// order") is left alone: its reasons are stored as evidence and read as of
// the instant they are shown.
//
// A band change is announced against the band last published, not the one
// stored: with hold, a band that differs from it is stored and counted
// (held) but not announced, and the published band kept; without, the
// change is announced (and the row written even if its score is as
// stored). A band that went and came back while held announces nothing,
// and one that moved twice is announced once, from the published band to
// the band now.
func changes(tenant string, env tenantEnv, rows []store.ScoreRow, feats map[string]*score.Features, now time.Time, hold bool) (writes []store.ScoreRow, msgs []bus.Message, held int, err error) {
	for _, row := range rows {
		res, band, hash, same := evaluate(row, feats[row.CustomerID], env, now)
		published, news := row.Published, isNews(row.Published, band)
		switch {
		case !news:
			published = band
		case hold:
			held++
		}
		announce := news && !hold
		if same && !announce && published == row.Published {
			continue
		}
		next := store.ScoreRow{
			CustomerID: row.CustomerID, Score: res.Score, Exact: res.Exact, Band: band, Published: published,
			Reasons: store.Reasons(res.Reasons), ReasonsHash: hash, BandChanges: row.BandChanges, ComputedAt: now,
		}
		// The exact score only orders equal scores, and it is indexed: kept
		// while score and band are, a change of reasons alone leaves every
		// indexed column as it was and Postgres updates the row in place
		// (HOT), without touching the indexes.
		if res.Score == row.Score && band == row.Band {
			next.Exact = row.Exact
		}
		if announce {
			next.BandChanges++
			next.Published = band
			m, err := riskChanged(tenant, next, res.Reasons, published, now)
			if err != nil {
				return nil, nil, 0, err
			}
			msgs = append(msgs, m)
		}
		writes = append(writes, next)
	}
	return writes, msgs, held, nil
}

// isNews reports whether a customer's band, last published as published,
// is to be announced: it differs, and is not a first score in LOW (their
// band is known).
func isNews(published, band score.Band) bool {
	return band != published && !(published == score.BandUnspecified && band == score.BandLow)
}

// evaluate scores a customer from f (nil: nothing known) as of now against
// their stored row: same when the score, band and reasons are those stored.
func evaluate(row store.ScoreRow, f *score.Features, env tenantEnv, now time.Time) (res score.Result, band score.Band, hash int64, same bool) {
	if f == nil {
		f = &score.Features{AsOf: now}
	}
	res = score.Compute(*f, env.pop, env.w)
	band = score.NextBand(row.Band, res.Score, env.w)
	hash = store.HashReasons(res.Reasons)
	return res, band, hash, band == row.Band && res.Score == row.Score && hash == row.ReasonsHash
}

// rescoreRange rescores a range of customers for a full pass in two steps.
// First, locking nobody, it reads their stored scores and features and
// finds those whose score, band or reasons are out of date: a fraction of
// them, while locking every row would dirty every page of the table (and
// log it) to change that fraction. Then it locks those, in customer order
// as every writer does, and rescores them from the features read under the
// lock (rescoreRows), as the consumer does.
//
// Leaving the others unlocked loses no update: a fact committed after the
// first reads is applied by the consumer, which rescores its customers
// under the lock in the fact's transaction, and one committed before them
// was read.
//
// A row whose band was held back is stale too, unless the tenant's
// changes are held back (holdsBack; the row stays held and is counted),
// so that a pass that may publish publishes it. Whether to hold is asked
// again once the rows are locked: a pass of a big tenant runs for minutes,
// and the consumer may have fallen behind an import since it began.
func (e *Engine) rescoreRange(ctx context.Context, tenant string, env tenantEnv, sel store.Selector) (Stats, error) {
	hold := e.holdsBack(ctx, tenant, env.model != nil)
	now := e.now()
	rows, err := store.ScoreRange(ctx, e.pool, tenant, sel)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Customers: len(rows)}
	if len(rows) == 0 {
		return st, nil
	}
	feats, err := store.LoadFeatures(ctx, e.pool, tenant, sel, now)
	if err != nil {
		return st, err
	}
	var stale []string
	for _, row := range rows {
		_, _, _, same := evaluate(row, feats[row.CustomerID], env, now)
		pending := row.Published != row.Band
		switch {
		case !same, pending && (!hold || !isNews(row.Published, row.Band)):
			stale = append(stale, row.CustomerID)
		case pending:
			st.Held++
		}
	}
	if len(stale) == 0 {
		return st, nil
	}
	err = pg.InTx(ctx, e.pool, func(tx pgx.Tx) error {
		locked, err := store.LockScores(ctx, tx, tenant, stale)
		if err != nil {
			return err
		}
		// Most of the range (a first pass, new weights, a refit): reading
		// its features again by range is cheaper than by ids.
		fsel := store.IDs(stale...)
		if 2*len(stale) > len(rows) {
			fsel = sel
		}
		written, err := e.rescoreRows(ctx, tx, tenant, env, locked, fsel, e.holdsBack(ctx, tenant, env.model != nil))
		st.Changed, st.BandChanges, st.Held = written.Changed, written.BandChanges, st.Held+written.Held
		return err
	})
	return st, err
}

// MsgID is the outbox id of a customer's n-th band change: deterministic,
// so the same change is never announced twice.
func MsgID(tenant, customer string, n int) string {
	return tenant + "/" + customer + "/" + strconv.Itoa(n)
}

func riskChanged(tenant string, r store.ScoreRow, reasons []score.Reason, prev score.Band, now time.Time) (bus.Message, error) {
	ev := &churnv1.ChurnRiskChanged{
		TenantId:     tenant,
		CustomerId:   r.CustomerID,
		Score:        int32(r.Score),
		Band:         churnv1.RiskBand(r.Band),
		PreviousBand: churnv1.RiskBand(prev),
		Reasons:      ProtoReasons(reasons, now),
		ComputedAt:   timestamppb.New(now),
		AsOf:         timestamppb.New(now),
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return bus.Message{}, fmt.Errorf("encode churn.risk_changed: %w", err)
	}
	return bus.Message{Subject: bus.SignalSubject(tenant, SignalType), ID: MsgID(tenant, r.CustomerID, r.BandChanges), Type: SignalType, Data: data}, nil
}

// ProtoReasons converts reasons to the API's, their sentences as of asOf.
func ProtoReasons(rs []score.Reason, asOf time.Time) []*churnv1.RiskReason {
	out := make([]*churnv1.RiskReason, len(rs))
	for i, r := range rs {
		out[i] = &churnv1.RiskReason{Code: r.Code, Description: r.Describe(asOf), Contribution: int32(r.Contribution)}
	}
	return out
}

// ProtoStoredReasons converts stored reasons to the API's, their sentences
// as of asOf.
func ProtoStoredReasons(rs []store.Reason, asOf time.Time) []*churnv1.RiskReason {
	out := make([]*churnv1.RiskReason, len(rs))
	for i, r := range rs {
		out[i] = &churnv1.RiskReason{Code: r.Code, Description: r.Describe(asOf), Contribution: int32(r.Contribution)}
	}
	return out
}

func (e *Engine) passLock(tenant string) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.passes[tenant]
	if m == nil {
		m = &sync.Mutex{}
		e.passes[tenant] = m
	}
	return m
}

// RescoreAll rescores every customer of tenant as of now: the customers
// are split into ranges of ChunkSize, each rescored by rescoreRange (which
// locks and writes only the rows whose score, band or reasons changed, in
// one transaction), Workers ranges at a time (so that scoring in Go and the
// database's work overlap). Running it twice in a row changes nothing the
// second time, and emits no second event.
//
// Each range it rescores while the tenant's changes are not held back
// (holdsBack: consumer behind, model awaited) also publishes the band
// changes held back before: one churn.risk_changed for each customer
// whose band differs from the one last published.
func (e *Engine) RescoreAll(ctx context.Context, tenant string) (st Stats, err error) {
	l := e.passLock(tenant)
	l.Lock()
	defer l.Unlock()
	// Every range is rescored as of the instant it is read, and what it
	// writes as of the instant its rows are locked (a customer the consumer
	// rescored since the pass began must not be taken back in time), all at
	// or after this one: the pass confirms the rows it leaves alone as of
	// its start.
	began, start := e.now(), time.Now()
	defer func() { e.metrics.pass(ctx, time.Since(start), err) }()
	env, err := e.env(ctx, e.pool, tenant)
	if err != nil {
		return Stats{}, err
	}
	if !e.holdsBack(ctx, tenant, env.model != nil) {
		// This pass is to publish what was held; a range that holds, a
		// batch that holds more meanwhile, or a failure flags it again.
		e.setHeld(tenant, false)
	}
	bounds, err := store.Boundaries(ctx, e.pool, tenant, e.cfg.ChunkSize)
	if err != nil {
		return Stats{}, err
	}
	ranges := make([]store.Selector, 0, len(bounds)+1)
	after := ""
	for i := range bounds {
		ranges = append(ranges, store.Range(after, &bounds[i]))
		after = bounds[i]
	}
	ranges = append(ranges, store.Range(after, nil)) // and customers added since

	var (
		mu    sync.Mutex
		total Stats
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.Workers)
	for _, sel := range ranges {
		g.Go(func() error {
			st, err := e.rescoreRange(gctx, tenant, env, sel)
			if err != nil {
				return err
			}
			mu.Lock()
			total.add(st)
			mu.Unlock()
			e.metrics.chunk(gctx, st)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		e.setHeld(tenant, true) // as far as this pass knows
		return total, fmt.Errorf("rescore %s: %w", tenant, err)
	}
	if total.Held > 0 {
		e.setHeld(tenant, true)
	}
	if err := store.MarkRescored(ctx, e.pool, tenant, began); err != nil {
		return total, err
	}
	return total, nil
}

// Refit fits the tenant's model on the orders placed by asOf (nil: now),
// stores it (pinned when asOf is given) and rescores every customer as of
// now with it. A fit that expects nobody to order again is not stored
// (ErrUnusableFit).
func (e *Engine) Refit(ctx context.Context, tenant string, asOf *time.Time) (store.Model, Stats, error) {
	m, err := e.fit(ctx, tenant, asOf, false)
	if err != nil {
		return store.Model{}, Stats{}, err
	}
	st, err := e.RescoreAll(ctx, tenant)
	return m, st, err
}

// fit fits tenant's model on the orders placed by asOf (nil: now) and
// stores it (pinned when asOf is given), unless it expects nobody to order
// again (unusable). A scheduled fit (not asked for) is also refused on a
// history without an order in its last quarterWeeks: one that does not
// reach today, as while an import is still arriving.
func (e *Engine) fit(ctx context.Context, tenant string, asOf *time.Time, scheduled bool) (store.Model, error) {
	now := e.now()
	at, pinned := now, false
	if asOf != nil {
		at, pinned = asOf.UTC(), true
	}
	h, err := store.Histories(ctx, e.pool, tenant, at)
	if err != nil {
		return store.Model{}, err
	}
	// A live fit not stored is remembered, so that the scheduled rule
	// tries again when the data has grown or aged, not at every check.
	refuse := func(err error) (store.Model, error) {
		if !pinned {
			e.refused(tenant, basis{at: now, size: h.Size})
		}
		return store.Model{}, err
	}
	if len(h.Groups) == 0 {
		return refuse(fmt.Errorf("%w: no orders placed by %s", ErrNotEnoughData, at.Format(time.RFC3339)))
	}
	days := newestOrderDays(h.Groups)
	if scheduled && days > 7*quarterWeeks {
		e.log.Info("scheduled fit not made: no recent order", "tenant", tenant, "customers", h.Customers, "orders", h.Orders,
			"newest_order_days_ago", days, "as_of", at)
		return refuse(fmt.Errorf("%w: the newest order is %d days before %s, more than %d weeks: the history does not reach today "+
			"(an import still arriving, or no orders since)", ErrUnusableFit, days, at.Format(time.RFC3339), quarterWeeks))
	}
	start := time.Now()
	res, err := model.Fit(h.Groups, model.FitOptions{})
	if err != nil {
		return refuse(fmt.Errorf("%w: %v", ErrNotEnoughData, err))
	}
	if expected, bad := unusable(res.Params, h.Groups); bad {
		e.log.Warn("fitted model not stored: it expects nobody to order again", "tenant", tenant, "customers", res.Customers, "orders", h.Orders,
			"r", res.Params.R, "alpha", res.Params.Alpha, "a", res.Params.A, "b", res.Params.B,
			"expected_orders_per_customer", expected, "newest_order_days_ago", days, "as_of", at)
		return refuse(fmt.Errorf("%w: over %d customers it expects %.4f orders per customer in the next %d weeks, fewer than %g (nobody orders again); "+
			"the newest order is %d days before %s: the history is incomplete (an import still arriving?) or ended long ago (fit as of its end)",
			ErrUnusableFit, res.Customers, expected, quarterWeeks, minExpectedOrders, days, at.Format(time.RFC3339)))
	}
	if expected, repeaters, gone := repeatersGone(res.Params, h.Groups); gone {
		e.log.Warn("fitted model not stored: it expects every customer who ordered again to have left", "tenant", tenant, "customers", res.Customers, "orders", h.Orders,
			"r", res.Params.R, "alpha", res.Params.Alpha, "a", res.Params.A, "b", res.Params.B,
			"repeat_buyers", repeaters, "expected_orders_per_repeat_buyer", expected, "as_of", at)
		return refuse(fmt.Errorf("%w: it expects the %d customers who ordered more than once to order %.4f times each in the next %d weeks, fewer than %g "+
			"(each left at their last order): too little repeat buying yet (%d orders over %d customers) to tell how customers leave",
			ErrUnusableFit, repeaters, expected, quarterWeeks, minExpectedOrders, h.Orders, res.Customers))
	}
	m := store.Model{
		Params: res.Params, LogLikelihood: res.LogLikelihood, Customers: res.Customers, Converged: res.Converged,
		TypicalGapDays: h.TypicalGapDays, AsOf: at, Pinned: pinned, FittedAt: now, Orders: h.Orders,
	}
	stored, err := store.SaveModel(ctx, e.pool, tenant, m, scheduled)
	if err != nil {
		return store.Model{}, err
	}
	if !stored {
		// Pinned, or refit by another fit that started later, while this
		// one ran: that model stays, and is what this call answers.
		e.log.Info("fitted model not stored: the model was pinned or refit meanwhile", "tenant", tenant, "as_of", at)
		current, ok, err := store.LoadModel(ctx, e.pool, tenant)
		if err != nil {
			return store.Model{}, err
		}
		if !ok {
			return store.Model{}, fmt.Errorf("model of %s: stored by another fit, then gone", tenant)
		}
		return current, nil
	}
	e.fitted(tenant, m)
	e.log.Info("model fitted", "tenant", tenant, "customers", res.Customers, "orders", h.Orders, "groups", res.Groups,
		"r", res.Params.R, "alpha", res.Params.Alpha, "a", res.Params.A, "b", res.Params.B,
		"log_likelihood", res.LogLikelihood, "converged", res.Converged, "as_of", at, "took", time.Since(start))
	return m, nil
}

// Model returns the tenant's current model.
func (e *Engine) Model(ctx context.Context, tenant string) (store.Model, error) {
	m, ok, err := store.LoadModel(ctx, e.pool, tenant)
	if err != nil {
		return store.Model{}, err
	}
	if !ok {
		return store.Model{}, ErrNoModel
	}
	return m, nil
}

// Risk is one customer's evaluated risk.
type Risk struct {
	CustomerID string
	Result     score.Result
	Band       score.Band
	Features   score.Features
	AsOf       time.Time
	ComputedAt time.Time
	Horizon    float64
}

// CustomerRisk evaluates a customer from the evidence as of asOf (nil: now).
// As of now the band applies hysteresis against the stored band; as of a
// past instant there is no history to apply, so the plain thresholds decide.
func (e *Engine) CustomerRisk(ctx context.Context, tenant, customer string, asOf *time.Time) (Risk, error) {
	now := e.now()
	at := now
	if asOf != nil {
		at = asOf.UTC()
	}
	// One snapshot: a batch of facts commits a customer's orders, tickets
	// and answers with the stored score they lead to, and reads of them
	// by several statements could otherwise mix two states (a count of
	// orders without the order the mean value includes, a score of the
	// old facts against the band of the new).
	var (
		env    tenantEnv
		f      *score.Features
		stored store.ScoreRow
		known  bool
	)
	err := pg.InSnapshot(ctx, e.pool, func(tx pgx.Tx) error {
		var err error
		if env, err = e.env(ctx, tx, tenant); err != nil {
			return err
		}
		feats, err := store.LoadFeatures(ctx, tx, tenant, store.IDs(customer), at)
		if err != nil {
			return err
		}
		if f = feats[customer]; f == nil {
			return fmt.Errorf("%w: nothing is known about customer %q by %s", ErrNotFound, customer, at.Format(time.RFC3339))
		}
		if f.MeanOrderValue, err = store.MeanOrderValue(ctx, tx, tenant, customer, at); err != nil {
			return err
		}
		if asOf == nil {
			stored, known, err = store.ReadScore(ctx, tx, tenant, customer)
		}
		return err
	})
	if err != nil {
		return Risk{}, err
	}
	res := score.Compute(*f, env.pop, env.w)
	band := score.PlainBand(res.Score, env.w)
	if known {
		band = score.NextBand(stored.Band, res.Score, env.w)
	}
	return Risk{CustomerID: customer, Result: res, Band: band, Features: *f, AsOf: at, ComputedAt: now, Horizon: env.pop.HorizonWeeks}, nil
}

// StoredScore is a stored score and the instant it is known to hold as of:
// its last change, or the start of a later complete rescoring pass (which
// found it unchanged). Its reasons read as of that instant.
type StoredScore struct {
	store.ScoreRow
	AsOf time.Time
}

// ListAtRisk pages through the stored scores in order.
func (e *Engine) ListAtRisk(ctx context.Context, tenant string, band score.Band, order store.Order, limit int, after *store.Cursor) ([]StoredScore, error) {
	rows, rescored, err := store.ListScores(ctx, e.pool, tenant, band, order, limit, after)
	if err != nil {
		return nil, err
	}
	out := make([]StoredScore, len(rows))
	for i, r := range rows {
		out[i] = StoredScore{ScoreRow: r, AsOf: r.ComputedAt}
		if rescored.After(r.ComputedAt) {
			out[i].AsOf = rescored
		}
	}
	return out, nil
}

// Weights returns the tenant's weights.
func (e *Engine) Weights(ctx context.Context, tenant string) (store.TenantWeights, error) {
	return store.LoadWeights(ctx, e.pool, tenant)
}

// SetWeights changes the tenant's weights: update gets the current ones
// (the defaults when never set) to change, and nothing is stored when it
// fails or leaves them invalid (a score.FieldErrors). They apply at once to
// every score computed from then on (the consumer's, reads); the stored
// scores of customers without new facts follow at the next full pass,
// which rescore runs before returning.
func (e *Engine) SetWeights(ctx context.Context, tenant string, update func(*score.Weights) error, rescore bool) (store.TenantWeights, Stats, error) {
	w, err := store.UpdateWeights(ctx, e.pool, tenant, update)
	if err != nil {
		return store.TenantWeights{}, Stats{}, err
	}
	e.log.Info("weights set", "tenant", tenant, "weights", fmt.Sprintf("%+v", w.Weights))
	if !rescore {
		return w, Stats{}, nil
	}
	st, err := e.RescoreAll(ctx, tenant)
	if err != nil {
		return w, st, fmt.Errorf("weights stored; %w", err)
	}
	return w, st, nil
}

// Run runs scheduled passes every RescoreInterval until ctx is done: for
// each tenant, refit the model when the refit rule says so (never a
// pinned one), then rescore every customer as of now, so that risk rises
// with silence even when no event arrives. Between passes it refits the
// models whose data grew (checkGrowth). With no RescoreInterval it does
// neither. Either way it publishes the band changes held back of each
// tenant whose facts have caught up (releaseAll): without it, a change
// held while they were behind would wait for the next full pass asked for
// by hand.
func (e *Engine) Run(ctx context.Context) error {
	// Passes, growth checks and releases share this goroutine, so that
	// this process never fits a tenant twice at once.
	//
	// The start-up pass waits until it is known whether the consumer is
	// behind: restarted during an import, it would otherwise fit the
	// model on what had arrived and publish the bands that gives.
	if !e.awaitConsumer(ctx) {
		return nil
	}
	var passes <-chan time.Time
	if e.cfg.RescoreInterval > 0 {
		t := time.NewTicker(e.cfg.RescoreInterval)
		defer t.Stop()
		passes = t.C
		e.Pass(ctx)
	}
	recheck := time.NewTicker(recheckEvery)
	defer recheck.Stop()
	e.tend(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-passes:
			e.Pass(ctx)
		case <-e.wake:
			e.tend(ctx)
		case <-recheck.C:
			e.tend(ctx)
		}
	}
}

// tend runs the refit checks of the flagged tenants (with a schedule),
// then publishes the band changes held back of those no longer awaiting.
func (e *Engine) tend(ctx context.Context) {
	if e.cfg.RescoreInterval > 0 {
		e.checkGrowth(ctx)
	}
	e.releaseAll(ctx)
}

// Pass is one scheduled pass over every tenant; failures are logged and
// retried at the next pass.
func (e *Engine) Pass(ctx context.Context) {
	tenants, err := store.Tenants(ctx, e.pool)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("scheduled rescoring: list tenants", "error", err)
		}
		return
	}
	for _, tenant := range tenants {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		if _, err := e.autoRefit(ctx, tenant); err != nil {
			e.logRefitError(ctx, tenant, err)
		}
		st, err := e.RescoreAll(ctx, tenant)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("scheduled rescoring failed", "tenant", tenant, "error", err)
			}
			continue
		}
		e.log.Info("rescored", "tenant", tenant, "customers", st.Customers, "changed", st.Changed,
			"band_changes", st.BandChanges, "held", st.Held, "took", time.Since(start))
	}
}

// Close waits for a statistics refresh still running, before the pool closes.
func (e *Engine) Close() { e.stats.Wait() }
