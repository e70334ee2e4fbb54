package app

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// Band changes held back (decision 0032).
//
// A band change found while the tenant's facts are behind the stream
// (tenantBehind), or while the tenant awaits its model, is stored without
// being published: the row keeps the band last published
// (store.ScoreRow.Published). The refit loop publishes them once neither
// holds (releaseAll), reading the held rows alone; a full pass publishes
// those it meets too.

// awaitPoll is how often the start-up wait asks whether the consumer has
// caught up.
const awaitPoll = 200 * time.Millisecond

// holdsBack reports whether band changes of tenant, which has a model
// stored or not (fitted), are to be stored without being published: while
// its facts are behind (its import arriving), or it awaits its model.
func (e *Engine) holdsBack(ctx context.Context, tenant string, fitted bool) bool {
	return e.tenantBehind(ctx, tenant) || e.awaiting(tenant, fitted)
}

// awaiting reports whether, with the refit loop running, tenant awaits
// its model: its refit check is pending (flagged, deferred, or too soon
// after a fit to tell), so a band published now could be one of a model
// fitted on part of an import, about to be replaced; or it has no model
// (fitted false) and either its last automatic fit was refused as
// unusable (unmodelled) or this process has not run its fit check yet
// (checked): unmodelled is known only to the process that tried the fit,
// and a restart would otherwise publish the bands it held until the
// start-up pass reaches the tenant.
func (e *Engine) awaiting(tenant string, fitted bool) bool {
	if e.cfg.RescoreInterval <= 0 {
		return false
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	w := e.watches[tenant]
	if w == nil {
		return !fitted
	}
	return w.pending || !fitted && (w.unmodelled || !w.checked)
}

// setHeld records whether tenant has band changes held back.
func (e *Engine) setHeld(tenant string, held bool) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.watchOf(tenant).held = held
}

// setUnmodelled records, once tenant's fit check ran, whether tenant is
// without a model after an automatic fit refused as unusable.
func (e *Engine) setUnmodelled(tenant string, v bool) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	w := e.watchOf(tenant)
	w.unmodelled, w.checked = v, true
}

// heldTenants lists the tenants with band changes held back that do not
// await their model, in order: as far as it is known without reading
// whether each has one, which releaseHeld does.
func (e *Engine) heldTenants() []string {
	var out []string
	for _, tenant := range e.tenantsWhere(func(w *watch) bool { return w.held }) {
		if !e.awaiting(tenant, true) {
			out = append(out, tenant)
		}
	}
	return out
}

// releaseAll publishes the band changes held back of every tenant that
// no longer awaits its model, and whose facts are not behind
// (tenantBehind): the loop is woken up once the consumer is idle
// (applying), or a tenant caught up while the consumer is still behind
// (backlogBehind), and runs every minute. The tenants with rows held are
// read from the database each time, not only from this process's flags:
// a replica that stops (or restarts) leaves the changes it held to the
// others, which started before it held them. The partial index of held
// rows makes that read cheap.
func (e *Engine) releaseAll(ctx context.Context) {
	tenants, err := store.HeldTenants(ctx, e.pool)
	if ctx.Err() == nil {
		e.releases.Pass(ctx, err, "list tenants with held band changes")
	}
	if err == nil {
		for _, tenant := range tenants {
			e.setHeld(tenant, true)
		}
	}
	for _, tenant := range e.heldTenants() {
		if ctx.Err() != nil {
			return
		}
		if e.tenantBehind(ctx, tenant) {
			continue
		}
		start := time.Now()
		st, err := e.releaseHeld(ctx, tenant)
		if ctx.Err() == nil {
			e.releases.Pass(ctx, err, "publishing held band changes failed", "tenant", tenant)
		}
		if err != nil {
			continue
		}
		if st.Customers > 0 {
			e.log.Info("held band changes published", "tenant", tenant, "customers", st.Customers,
				"band_changes", st.BandChanges, "held", st.Held, "took", time.Since(start))
		}
	}
}

// releaseHeld rescores tenant's customers whose band change was held
// back, and only those, ChunkSize at a time in customer order, each chunk
// in one transaction: a chunk that holdsBack no longer, once its rows are
// locked, publishes one churn.risk_changed for each customer whose band
// differs from the one last published (see changes). A full pass would
// read every customer of the tenant, and the changes held are a few of
// each tenant whose facts were behind (those of a restart, or without
// TenantBacklog of every tenant the consumer met while behind).
//
// It leaves the tenant alone while a full pass of it runs: that pass
// publishes what is held, or marks it held again.
func (e *Engine) releaseHeld(ctx context.Context, tenant string) (total Stats, err error) {
	l := e.passLock(tenant)
	if !l.TryLock() {
		return Stats{}, nil
	}
	defer l.Unlock()
	// Cleared first: a batch that holds a change after this reads the
	// rows flags the tenant again once it commits.
	e.setHeld(tenant, false)
	defer func() {
		if err != nil || total.Held > 0 {
			e.setHeld(tenant, true)
		}
	}()
	env, err := e.env(ctx, e.pool, tenant)
	if err != nil {
		return Stats{}, err
	}
	after := ""
	for {
		var (
			st   Stats
			hold bool
		)
		err := pg.InTx(ctx, e.pool, func(tx pgx.Tx) error {
			rows, err := store.LockHeldScores(ctx, tx, tenant, after, e.cfg.ChunkSize)
			if err != nil || len(rows) == 0 {
				return err
			}
			if hold = e.holdsBack(ctx, tenant, env.model != nil); hold {
				// Behind again (or a refit check due): still held.
				st.Held = len(rows)
				return nil
			}
			ids := make([]string, len(rows))
			for i, r := range rows {
				ids[i] = r.CustomerID
			}
			after = ids[len(ids)-1]
			st, err = e.rescoreRows(ctx, tx, tenant, env, rows, store.IDs(ids...), false)
			return err
		})
		if err != nil {
			return total, err
		}
		total.add(st)
		if hold || st.Customers == 0 {
			return total, nil
		}
	}
}

// awaitConsumer waits until it is known whether the consumer is behind,
// and reports false when ctx is done first: until it has caught up
// (CaughtUp: nothing pending), or it stored the facts of a batch, whose
// lag tells (applying).
// Without CaughtUp it waits for a batch consumerIdle at most.
func (e *Engine) awaitConsumer(ctx context.Context) bool {
	var timeout <-chan time.Time
	if e.cfg.CaughtUp == nil {
		timeout = time.After(consumerIdle)
	}
	start, told := time.Now(), false
	for {
		if e.cfg.CaughtUp != nil {
			ok, err := e.cfg.CaughtUp(ctx)
			if err == nil && ok {
				return true
			}
			if !told && time.Since(start) > consumerIdle {
				// A consumer that cannot fetch (the bus or the database
				// down) delays the start-up pass until it can.
				told = true
				e.log.Info("start-up pass waits for the facts consumer to fetch a batch or catch up", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-e.fetched:
			return true
		case <-timeout:
			return true
		case <-time.After(awaitPoll):
		}
	}
}
