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
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
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
	// model (pinned models excepted).
	RefitInterval time.Duration
	// Now is the clock (tests move it); nil is time.Now.
	Now func() time.Time
}

// Engine runs the use cases.
type Engine struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger

	mu     sync.Mutex
	passes map[string]*sync.Mutex // per tenant: one full pass at a time

	// applied counts facts applied by this process; when it reaches
	// analyzeAt the projection's statistics are refreshed (see Handle).
	applied, analyzeAt atomic.Int64
}

// New returns an engine on pool.
func New(pool *pgxpool.Pool, cfg Config, log *slog.Logger) *Engine {
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
	e := &Engine{pool: pool, cfg: cfg, log: log, passes: map[string]*sync.Mutex{}}
	e.analyzeAt.Store(1000)
	return e
}

func (e *Engine) now() time.Time { return e.cfg.Now().UTC() }

// Stats counts what a rescoring did.
type Stats struct {
	// Customers rescored, stored scores that changed, and band changes,
	// each a churn.risk_changed in the outbox (a customer's first score in
	// LOW is not counted: it announces nothing).
	Customers, Changed, BandChanges int
}

func (s *Stats) add(o Stats) {
	s.Customers += o.Customers
	s.Changed += o.Changed
	s.BandChanges += o.BandChanges
}

// Handle is the bus handler of the facts consumer: it applies a batch of
// facts to the projection and rescores every customer it touched, all in the
// consumer's transaction, so a band change and its churn.risk_changed are
// committed together with the inbox.
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
	if err := store.ApplyFacts(ctx, tx, &b, customers); err != nil {
		return err
	}
	// A projection that grows from empty (a fresh service importing a
	// shop's history) outruns autovacuum's statistics, and with a table
	// believed tiny Postgres reads every order of the tenant for each batch
	// instead of the batch's customers: 50k facts then took minutes instead
	// of seconds. So refresh them at 1k, 2k, 4k, ... facts applied; past a
	// few million autovacuum's own 10% threshold keeps up.
	n := e.applied.Add(int64(len(ds)))
	if at := e.analyzeAt.Load(); n >= at && at < 1<<22 && e.analyzeAt.CompareAndSwap(at, 2*n) {
		if _, err := tx.Exec(ctx, `ANALYZE churn_orders, churn_tickets, churn_answers, churn_renewals, churn_scores`); err != nil {
			return fmt.Errorf("refresh projection statistics: %w", err)
		}
	}
	for i := 0; i < len(customers); {
		j := i
		var ids []string
		for ; j < len(customers) && customers[j].Tenant == customers[i].Tenant; j++ {
			ids = append(ids, customers[j].ID)
		}
		if _, err := e.rescoreIDs(ctx, tx, customers[i].Tenant, ids); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// tenantEnv is what scoring a tenant's customers needs besides features.
type tenantEnv struct {
	pop   score.Population
	w     score.Weights
	model *store.Model
}

func (e *Engine) env(ctx context.Context, q store.Querier, tenant string) (tenantEnv, error) {
	env := tenantEnv{pop: score.Population{HorizonWeeks: e.cfg.HorizonWeeks}}
	m, ok, err := store.LoadModel(ctx, q, tenant)
	if err != nil {
		return env, err
	}
	if ok {
		p := m.Params
		env.pop.Model, env.pop.TypicalGapDays, env.model = &p, m.TypicalGapDays, &m
	}
	if env.w, err = store.LoadWeights(ctx, q, tenant); err != nil {
		return env, err
	}
	return env, nil
}

func (e *Engine) rescoreIDs(ctx context.Context, tx pgx.Tx, tenant string, ids []string) (Stats, error) {
	env, err := e.env(ctx, tx, tenant)
	if err != nil {
		return Stats{}, err
	}
	rows, err := store.LockScores(ctx, tx, tenant, ids)
	if err != nil {
		return Stats{}, err
	}
	return e.rescoreRows(ctx, tx, tenant, env, rows, nil)
}

// rescoreRows scores locked rows as of now, writes those that changed and
// enqueues a churn.risk_changed for each band change.
//
// rangeSel, when not nil, is the range the rows were locked by: features
// are read by range, which is cheaper than by a list of ids.
func (e *Engine) rescoreRows(ctx context.Context, tx pgx.Tx, tenant string, env tenantEnv, rows []store.ScoreRow, rangeSel *store.Selector) (Stats, error) {
	st := Stats{Customers: len(rows)}
	if len(rows) == 0 {
		return st, nil
	}
	now := e.now()
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.CustomerID
	}
	sel := store.IDs(ids...)
	if rangeSel != nil {
		sel = *rangeSel
	}
	feats, err := store.LoadFeatures(ctx, tx, tenant, sel, now)
	if err != nil {
		return st, err
	}
	var writes []store.ScoreRow
	var msgs []bus.Message
	for _, row := range rows {
		f := feats[row.CustomerID]
		if f == nil {
			f = &score.Features{AsOf: now}
		}
		res := score.Compute(*f, env.pop, env.w)
		band := score.NextBand(row.Band, res.Score, env.w)
		reasons := storeReasons(res.Reasons)
		next := store.ScoreRow{
			CustomerID: row.CustomerID, Score: res.Score, Exact: res.Exact, Band: band,
			Reasons: reasons, ReasonsHash: store.HashReasons(reasons), BandChanges: row.BandChanges, ComputedAt: now,
		}
		if band != row.Band {
			// A customer's first score in LOW is not news.
			if !(row.Band == score.BandUnspecified && band == score.BandLow) {
				next.BandChanges++
				m, err := riskChanged(tenant, next, row.Band, now)
				if err != nil {
					return st, err
				}
				msgs = append(msgs, m)
			}
		}
		if sameScore(row, next) {
			continue
		}
		writes = append(writes, next)
	}
	st.Changed, st.BandChanges = len(writes), len(msgs)
	if err := store.WriteScores(ctx, tx, tenant, writes); err != nil {
		return st, err
	}
	if err := bus.Enqueue(ctx, tx, msgs...); err != nil {
		return st, err
	}
	return st, nil
}

func sameScore(a, b store.ScoreRow) bool {
	return a.Score == b.Score && a.Band == b.Band && math.Abs(a.Exact-b.Exact) <= 1e-9 && a.BandChanges == b.BandChanges &&
		a.ReasonsHash == b.ReasonsHash
}

func storeReasons(rs []score.Reason) []store.Reason {
	out := make([]store.Reason, len(rs))
	for i, r := range rs {
		out[i] = store.Reason{Code: r.Code, Description: r.Description, Contribution: r.Contribution}
	}
	return out
}

// MsgID is the outbox id of a customer's n-th band change: deterministic,
// so the same change is never announced twice.
func MsgID(tenant, customer string, n int) string {
	return tenant + "/" + customer + "/" + strconv.Itoa(n)
}

func riskChanged(tenant string, r store.ScoreRow, prev score.Band, now time.Time) (bus.Message, error) {
	ev := &churnv1.ChurnRiskChanged{
		TenantId:     tenant,
		CustomerId:   r.CustomerID,
		Score:        int32(r.Score),
		Band:         churnv1.RiskBand(r.Band),
		PreviousBand: churnv1.RiskBand(prev),
		Reasons:      ProtoReasons(r.Reasons),
		ComputedAt:   timestamppb.New(now),
		AsOf:         timestamppb.New(now),
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return bus.Message{}, fmt.Errorf("encode churn.risk_changed: %w", err)
	}
	return bus.Message{Subject: bus.SignalSubject(tenant, SignalType), ID: MsgID(tenant, r.CustomerID, r.BandChanges), Type: SignalType, Data: data}, nil
}

// ProtoReasons converts stored reasons to the API's.
func ProtoReasons(rs []store.Reason) []*churnv1.RiskReason {
	out := make([]*churnv1.RiskReason, len(rs))
	for i, r := range rs {
		out[i] = &churnv1.RiskReason{Code: r.Code, Description: r.Description, Contribution: int32(r.Contribution)}
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
// are split into ranges of ChunkSize, each rescored in its own transaction,
// Workers ranges at a time (so that scoring in Go and the database's work
// overlap). Running it twice in a row changes nothing the second time, and
// emits no second event.
func (e *Engine) RescoreAll(ctx context.Context, tenant string) (Stats, error) {
	l := e.passLock(tenant)
	l.Lock()
	defer l.Unlock()
	env, err := e.env(ctx, e.pool, tenant)
	if err != nil {
		return Stats{}, err
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
			return pg.InTx(gctx, e.pool, func(tx pgx.Tx) error {
				rows, err := store.LockScoreRange(gctx, tx, tenant, sel)
				if err != nil {
					return err
				}
				st, err := e.rescoreRows(gctx, tx, tenant, env, rows, &sel)
				if err != nil {
					return err
				}
				mu.Lock()
				total.add(st)
				mu.Unlock()
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return total, fmt.Errorf("rescore %s: %w", tenant, err)
	}
	return total, nil
}

// Refit fits the tenant's model on the orders placed by asOf (nil: now),
// stores it (pinned when asOf is given) and rescores every customer as of
// now with it.
func (e *Engine) Refit(ctx context.Context, tenant string, asOf *time.Time) (store.Model, Stats, error) {
	m, err := e.fit(ctx, tenant, asOf)
	if err != nil {
		return store.Model{}, Stats{}, err
	}
	st, err := e.RescoreAll(ctx, tenant)
	return m, st, err
}

func (e *Engine) fit(ctx context.Context, tenant string, asOf *time.Time) (store.Model, error) {
	now := e.now()
	at, pinned := now, false
	if asOf != nil {
		at, pinned = asOf.UTC(), true
	}
	groups, gap, err := store.Histories(ctx, e.pool, tenant, at)
	if err != nil {
		return store.Model{}, err
	}
	if len(groups) == 0 {
		return store.Model{}, fmt.Errorf("%w: no orders placed by %s", ErrNotEnoughData, at.Format(time.RFC3339))
	}
	start := time.Now()
	res, err := model.Fit(groups, model.FitOptions{})
	if err != nil {
		return store.Model{}, fmt.Errorf("%w: %v", ErrNotEnoughData, err)
	}
	m := store.Model{
		Params: res.Params, LogLikelihood: res.LogLikelihood, Customers: res.Customers, Converged: res.Converged,
		TypicalGapDays: gap, AsOf: at, Pinned: pinned, FittedAt: now,
	}
	if err := store.SaveModel(ctx, e.pool, tenant, m); err != nil {
		return store.Model{}, err
	}
	e.log.Info("model fitted", "tenant", tenant, "customers", res.Customers, "groups", res.Groups,
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
	env, err := e.env(ctx, e.pool, tenant)
	if err != nil {
		return Risk{}, err
	}
	feats, err := store.LoadFeatures(ctx, e.pool, tenant, store.IDs(customer), at)
	if err != nil {
		return Risk{}, err
	}
	f := feats[customer]
	if f == nil {
		return Risk{}, fmt.Errorf("%w: nothing is known about customer %q by %s", ErrNotFound, customer, at.Format(time.RFC3339))
	}
	res := score.Compute(*f, env.pop, env.w)
	band := score.PlainBand(res.Score, env.w)
	if asOf == nil {
		stored, ok, err := store.ReadScore(ctx, e.pool, tenant, customer)
		if err != nil {
			return Risk{}, err
		}
		if ok {
			band = score.NextBand(stored.Band, res.Score, env.w)
		}
	}
	return Risk{CustomerID: customer, Result: res, Band: band, Features: *f, AsOf: at, ComputedAt: now, Horizon: env.pop.HorizonWeeks}, nil
}

// ListAtRisk pages through the stored scores, highest first.
func (e *Engine) ListAtRisk(ctx context.Context, tenant string, band score.Band, limit int, after *store.Cursor) ([]store.ScoreRow, error) {
	return store.ListScores(ctx, e.pool, tenant, band, limit, after)
}

// Run runs scheduled passes every RescoreInterval until ctx is done: for
// each tenant, refit the model when it is missing or older than
// RefitInterval (unless pinned), then rescore every customer as of now, so
// that risk rises with silence even when no event arrives.
func (e *Engine) Run(ctx context.Context) error {
	if e.cfg.RescoreInterval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(e.cfg.RescoreInterval)
	defer t.Stop()
	for {
		e.Pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
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
		if err := e.maybeRefit(ctx, tenant); err != nil {
			if errors.Is(err, ErrNotEnoughData) {
				e.log.Debug("scheduled refit skipped", "tenant", tenant, "reason", err)
			} else if ctx.Err() == nil {
				e.log.Warn("scheduled refit failed", "tenant", tenant, "error", err)
			}
		}
		st, err := e.RescoreAll(ctx, tenant)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("scheduled rescoring failed", "tenant", tenant, "error", err)
			}
			continue
		}
		e.log.Info("rescored", "tenant", tenant, "customers", st.Customers, "changed", st.Changed,
			"band_changes", st.BandChanges, "took", time.Since(start))
	}
}

func (e *Engine) maybeRefit(ctx context.Context, tenant string) error {
	m, ok, err := store.LoadModel(ctx, e.pool, tenant)
	if err != nil {
		return err
	}
	if ok && (m.Pinned || e.now().Sub(m.FittedAt) < e.cfg.RefitInterval) {
		return nil
	}
	_, err = e.fit(ctx, tenant, nil)
	return err
}
