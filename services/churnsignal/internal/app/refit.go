package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/services/churnsignal/internal/facts"
	"github.com/retainhq/retain/services/churnsignal/internal/model"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// When a live model is refit without being asked to.
//
// A model sees the orders known when it is fitted. Fitted early in a
// shop's history import (the service restarted, or its pass ran, while the
// import was under way), it sees the first months of the history with every
// customer's T running to today: everyone looks gone, and every customer
// scores HIGH. Its age alone (RefitInterval, 24 h) kept such a model a day.
// So besides its age:
//
//   - a model records what it was fitted on (orders and customers), and is
//     refit once either has grown by Config.RefitGrowthPercent since, but
//     not sooner than Config.MinRefitGap after the fit: a big shop
//     importing its history refits a few times, each on a quarter more
//     data at least (so all of its refits cost about five of its last
//     one), at most every MinRefitGap;
//   - a fit is not stored when it expects nobody to order again
//     (unusable), nor, when scheduled, when no order is from the last
//     quarterWeeks (the history does not reach today); the model before it,
//     if any, stays;
//   - nothing is fitted while the tenant's facts are far behind
//     (tenantBehind: the consumer more than Config.MaxLag behind, with
//     more than Config.HoldMinBacklog of the tenant's facts yet to
//     apply): the facts of the fit are still arriving.
//
// Every scheduled pass applies the rule to every tenant. Between passes the
// consumer counts each tenant's orders as it applies them and, once they
// could amount to the growth, has the refit loop apply it (noteBatch).
const (
	// DefaultRefitGrowthPercent is how much the orders or the customers
	// under a live model must grow before it is refit ahead of its age.
	DefaultRefitGrowthPercent = 25
	// DefaultMinRefitGap is the least time from a live fit (stored or
	// refused) to a refit for growth.
	DefaultMinRefitGap = 5 * time.Minute
	// DefaultMaxLag is how far behind the stream the facts consumer may be
	// for a refit to go ahead and band changes to be published: behind by
	// more, an import is still arriving.
	DefaultMaxLag = time.Minute
	// DefaultHoldMinBacklog is how many of a tenant's facts the consumer,
	// behind by more than MaxLag, may have yet to apply for the tenant's
	// refits to go ahead and its band changes to be published: two
	// batches (the one applied and the next, at the default batch size),
	// which a shop's live orders stay under while another shop's import
	// goes by and its own import does not (decision 0037).
	DefaultHoldMinBacklog = 1000

	// recheckEvery is how often the refit loop retries the tenants whose
	// check was deferred (too soon after a fit, consumer behind).
	recheckEvery = time.Minute
	// consumerIdle: a consumer that applied nothing for this long has caught
	// up, whatever the lag of its last batch.
	consumerIdle = 10 * time.Second

	// minExpectedOrders is the fewest orders per customer a usable fit
	// expects in the next quarterWeeks: one per hundred customers. Fits on
	// live shops expect several, occasional buyers and lapsed customers
	// included (CDNOW 0.27, a simulated year 0.28); one on the first tenth
	// of a year imported in time order expects ~0.004.
	minExpectedOrders = 0.01
	// quarterWeeks is the span both checks of a fit look at: the orders it
	// expects in the next quarter, and (scheduled fits) an order in the
	// last one.
	quarterWeeks = 13
)

// ErrUnusableFit: a fit is not stored, its data being unfit for a live
// model (see fit). It is an ErrNotEnoughData (FAILED_PRECONDITION for Refit).
var ErrUnusableFit = fmt.Errorf("%w: fit not stored", ErrNotEnoughData)

// basis is what a live fit, stored or refused, was made on.
type basis struct {
	at   time.Time
	size store.Size
}

// verdict is refitDue's answer.
type verdict struct {
	// refit says why the model is to be refit now ("": it is kept).
	refit string
	// later: kept only because the last fit is too recent to refit for
	// growth; the tenant is to be checked again, new orders or not.
	later bool
	// size is the data counted, when the rule needed it.
	size *store.Size
}

// rule is the refit rule's settings.
type rule struct {
	// interval is the age at which a model is refit, minGap the least
	// time from a fit to a refit for growth, growth the percentage.
	interval, minGap time.Duration
	growth           int64
}

// rule is the engine's refit rule.
func (e *Engine) rule() rule {
	return rule{interval: e.cfg.RefitInterval, minGap: e.cfg.MinRefitGap, growth: int64(e.cfg.RefitGrowthPercent)}
}

// due is the rule for a tenant whose last live fit (stored or refused)
// was made on last (nil: never): refit when there is none, when it is
// interval old, or when the orders or the customers have grown by growth
// percent since, minGap after it at the soonest. size counts the tenant's
// data now; it is called only when the answer depends on it, since it
// reads every order of the tenant.
func (r rule) due(last *basis, now time.Time, size func() (store.Size, error)) (verdict, error) {
	if last == nil {
		return verdict{refit: "no model"}, nil
	}
	age := now.Sub(last.at)
	if age >= r.interval {
		return verdict{refit: fmt.Sprintf("last fit %s ago (RETAIN_CHURN_REFIT_INTERVAL %s)", age.Round(time.Second), r.interval)}, nil
	}
	if age < r.minGap {
		return verdict{later: true}, nil
	}
	cur, err := size()
	if err != nil {
		return verdict{}, err
	}
	if r.grown(last.size, cur) {
		return verdict{refit: fmt.Sprintf("orders %d -> %d, customers %d -> %d since the last fit %s ago (refit at +%d%%)",
			last.size.Orders, cur.Orders, last.size.Customers, cur.Customers, age.Round(time.Second), r.growth)}, nil
	}
	return verdict{size: &cur}, nil
}

// grown reports whether the orders or the customers of cur are growth
// percent more than those of from. Data recorded as empty (a model stored
// before its size was) has always grown.
func (r rule) grown(from, cur store.Size) bool {
	more := func(a, b int64) bool { return b*100 >= a*(100+r.growth) }
	return more(from.Orders, cur.Orders) || more(from.Customers, cur.Customers)
}

// ordersToGrow is how many more orders than cur could make from's orders
// grow by growth percent (at least 1): the consumer counts that many
// before the rule reads the database again.
func (r rule) ordersToGrow(from, cur int64) int64 {
	target := (from*(100+r.growth) + 99) / 100
	return max(1, target-cur)
}

// unusable returns the orders per customer that p expects of the fitted
// customers in the next quarterWeeks, and whether that is fewer than
// minExpectedOrders: a model saying that nobody orders again, under
// which every customer scores HIGH. That is what a fit says of the first
// part of a history imported in time order, and of a history that ended
// long ago.
func unusable(p model.Params, groups []model.Group) (float64, bool) {
	e := p.MeanExpectedPurchases(groups, quarterWeeks)
	return e, e < minExpectedOrders
}

// repeatersGone returns the orders per customer p expects in the next
// quarterWeeks of the customers who ordered more than once, how many they
// are, and whether that is fewer than minExpectedOrders: a model in which
// every customer leaves at their next order (a/(a+b) -> 1), under which
// every repeat buyer scores HIGH the day after buying again. Customers
// who ordered once cannot have left in the model, so unusable's mean over
// everyone does not see it. A shop days old, where nobody has ordered a
// third time yet, fits it (QA: 100 customers over 10 days).
func repeatersGone(p model.Params, groups []model.Group) (expected float64, repeaters int, gone bool) {
	var rep []model.Group
	for _, g := range groups {
		if g.X > 0 {
			rep = append(rep, g)
			repeaters += g.Count
		}
	}
	if repeaters == 0 {
		return 0, 0, false // model.Fit refuses such a history itself
	}
	expected = p.MeanExpectedPurchases(rep, quarterWeeks)
	return expected, repeaters, expected < minExpectedOrders
}

// newestOrderDays is how many days before the end of the histories the
// newest purchase day is (time since the last purchase is T - t_x, t_x = 0
// without repeats).
func newestOrderDays(groups []model.Group) int {
	weeks := math.Inf(1)
	for _, g := range groups {
		weeks = min(weeks, g.T-g.Tx)
	}
	return int(math.Round(weeks * 7))
}

// watch is what the engine knows of a tenant between scheduled passes.
type watch struct {
	// fittedAt is the model the orders are counted against (zero: none).
	fittedAt time.Time
	// seen counts the orders the consumer applied since fittedAt or the
	// last check, need how many could make the model due for growth.
	seen, need int64
	// pending: the refit loop is to check the tenant.
	pending bool
	// deferredLogged: the check was deferred, the tenant's facts being
	// behind (tenantBehind), and that was logged; nothing more is until a
	// check gets past it (an import defers it once a batch).
	deferredLogged bool
	// refused is the last live fit not stored since the model.
	refused *basis
	// held: band changes of the tenant were stored but not published
	// (holdsBack); the refit loop publishes them once they are not held
	// back any more (releaseAll).
	held bool
	// unmodelled: the tenant has no model and its last automatic fit was
	// refused as unusable (a history that ends long ago, or a partial
	// one): its band changes are held until a fit is stored (awaiting).
	unmodelled bool
	// checked: this process ran the tenant's fit check (setUnmodelled,
	// settle, fitted) or saw its model: until then a tenant without one
	// awaits it.
	checked bool
}

// watchOf returns tenant's watch; e.wmu is held.
func (e *Engine) watchOf(tenant string) *watch {
	w := e.watches[tenant]
	if w == nil {
		w = &watch{}
		e.watches[tenant] = w
	}
	return w
}

// newestStored is when the newest message of a batch was stored in the
// stream (zero for none): the batch is that far behind.
func newestStored(ds []*bus.Delivery) time.Time {
	var newest time.Time
	for _, d := range ds {
		if d.Timestamp.After(newest) {
			newest = d.Timestamp
		}
	}
	return newest
}

// applying records that the consumer is applying a batch whose newest
// message was stored at newest (zero: unknown), and returns what records
// that it is done. Handle calls it once the batch's facts are stored
// (ApplyFacts), before its customers are rescored: a pass asks about the
// lag before the batch commits (or fails), and the start-up pass need not
// wait for a batch to commit (fetched); a batch whose facts cannot be
// stored (the database down) tells nothing. A batch
// behind the stream wakes the refit loop once the consumer has been idle
// for consumerIdle after it: caught up, held changes can be published.
func (e *Engine) applying(newest time.Time) (done func()) {
	note := func(delta int) {
		e.wmu.Lock()
		defer e.wmu.Unlock()
		e.handling += delta
		if newest.IsZero() {
			return
		}
		e.lastBatch, e.lastBatchNewest = time.Now(), newest
		if delta < 0 && e.lastBatch.Sub(newest) > e.cfg.MaxLag {
			// A little after consumerIdle, so that behind() has turned.
			after := consumerIdle + 100*time.Millisecond
			if e.idleWake == nil {
				e.idleWake = time.AfterFunc(after, e.wakeLoop)
			} else {
				e.idleWake.Reset(after)
			}
		}
	}
	note(1)
	if !newest.IsZero() {
		e.fetchedOnce.Do(func() { close(e.fetched) })
	}
	return func() { note(-1) }
}

// wakeLoop wakes the refit loop up.
func (e *Engine) wakeLoop() {
	select {
	case e.wake <- struct{}{}:
	default: // a wake-up is already waiting
	}
}

// noteBatch records what the consumer's committed batch says about
// refits: each tenant's orders, counted against the model each was scored
// with (models), and the tenants whose band changes it held back (held).
// A tenant whose count reaches its need is flagged for the refit loop, and
// woken up; one with changes held is marked for release (releaseAll),
// without a refit check, unless it has no model and this process has not
// checked it yet (awaiting): it is flagged for that check. The counts include repeats and are this
// replica's share only: the loop counts in the database before it
// refits, and scheduled passes catch what they miss.
func (e *Engine) noteBatch(orders []facts.Order, models map[string]store.Model, held map[string]int) {
	perTenant := map[string]int64{}
	for _, o := range orders {
		perTenant[o.Tenant]++
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	wake := false
	for tenant, n := range perTenant {
		w := e.watchOf(tenant)
		m, ok := models[tenant]
		if ok {
			w.unmodelled = false // fitted meanwhile (another replica, Refit)
		}
		if ok && m.FittedAt.After(w.fittedAt) {
			if w.refused != nil && !m.FittedAt.After(w.refused.at) {
				// A fit refused since this model is what the orders
				// count against (refused set the need from it).
				w.fittedAt = m.FittedAt
			} else {
				*w = watch{fittedAt: m.FittedAt, need: e.rule().ordersToGrow(m.Orders, m.Orders), held: w.held, checked: true}
			}
		}
		w.seen += n
		// A tenant already flagged wakes the loop too: its check may have
		// been deferred, and new orders are the moment to try again.
		if w.seen >= w.need || w.pending {
			w.pending, wake = true, true
		}
	}
	for tenant, n := range held {
		if n == 0 {
			continue
		}
		w := e.watchOf(tenant)
		w.held = true
		if _, ok := models[tenant]; !ok && !w.checked && e.cfg.RescoreInterval > 0 {
			// Held for want of a fit check (awaiting), perhaps without
			// an order to flag it: the loop is to run it.
			w.pending, wake = true, true
		}
	}
	if wake {
		e.wakeLoop()
	}
}

// behind reports how far behind the stream the consumer's last batch was,
// and whether that is too far to fit or publish: more than MaxLag, with a
// batch being applied or applied in the last consumerIdle.
func (e *Engine) behind() (time.Duration, bool) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	lag := e.lastBatch.Sub(e.lastBatchNewest)
	return lag, lag > e.cfg.MaxLag && (e.handling > 0 || time.Since(e.lastBatch) < consumerIdle)
}

// fitted records a stored fit: orders are counted against it from now on.
func (e *Engine) fitted(tenant string, m store.Model) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	w := e.watchOf(tenant)
	*w = watch{fittedAt: m.FittedAt, need: e.rule().ordersToGrow(m.Orders, m.Orders), held: w.held, checked: true}
}

// refused records a live fit not stored: the rule counts from it.
func (e *Engine) refused(tenant string, b basis) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	w := e.watchOf(tenant)
	w.refused, w.seen, w.need, w.pending = &b, 0, e.rule().ordersToGrow(b.size.Orders, b.size.Orders), false
}

// lastFit is the basis of tenant's live model (ok) or of its last fit
// refused since, whichever is later; nil for neither.
func (e *Engine) lastFit(tenant string, m store.Model, ok bool) *basis {
	var last *basis
	if ok {
		last = &basis{at: m.FittedAt, size: store.Size{Orders: m.Orders, Customers: int64(m.Customers)}}
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if r := e.watchOf(tenant).refused; r != nil && (last == nil || r.at.After(last.at)) {
		last = r
	}
	return last
}

// settle records a check that refit nothing: pending when it is to be
// repeated without new orders; with the data counted, the consumer counts
// what is still missing for the growth before the next check.
func (e *Engine) settle(tenant string, last *basis, v verdict) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	w := e.watchOf(tenant)
	w.pending, w.checked = v.later, true
	if v.size != nil && last != nil {
		w.seen, w.need = 0, e.rule().ordersToGrow(last.size.Orders, v.size.Orders)
	}
}

// deferCheck flags tenant for the refit loop's next round.
func (e *Engine) deferCheck(tenant string) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.watchOf(tenant).pending = true
}

// deferForLag defers tenant's refit check while its facts are behind,
// logged once until the check gets past the lag: an import defers it
// once a batch (QA: 301 of an import's 320 lines). reason is the refit
// that is due, when known.
func (e *Engine) deferForLag(tenant, reason string) {
	e.wmu.Lock()
	w := e.watchOf(tenant)
	first := !w.deferredLogged
	w.deferredLogged, w.pending = true, true
	e.wmu.Unlock()
	if !first {
		return
	}
	lag, _ := e.behind()
	attrs := []any{"tenant", tenant, "lag", lag.Round(time.Second)}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	e.log.Info("refit deferred until the tenant's facts catch up: the facts consumer is behind with many of them yet to apply (logged once until then)", attrs...)
}

// errBehind: the growth check was not counted, the tenant's facts being
// behind.
var errBehind = errors.New("the tenant's facts are behind")

// autoRefit refits tenant's live model when refitDue says so, unless its
// facts are far behind (tenantBehind), and reports whether it did. A
// pinned model is left alone.
func (e *Engine) autoRefit(ctx context.Context, tenant string) (bool, error) {
	m, ok, err := store.LoadModel(ctx, e.pool, tenant)
	if err != nil {
		e.deferCheck(tenant)
		return false, err
	}
	if ok {
		e.setUnmodelled(tenant, false)
	}
	if ok && m.Pinned {
		e.settle(tenant, nil, verdict{})
		return false, nil
	}
	last, now := e.lastFit(tenant, m, ok), e.now()
	v, err := e.rule().due(last, now, func() (store.Size, error) {
		// Counting reads every order of the tenant; while its facts are
		// far behind (its import arriving) a refit would be deferred
		// anyway, and every batch wakes the check again.
		if e.tenantBehind(ctx, tenant) {
			return store.Size{}, errBehind
		}
		return store.DataSize(ctx, e.pool, tenant, now)
	})
	if errors.Is(err, errBehind) {
		e.deferForLag(tenant, "")
		return false, nil
	}
	if !e.tenantBehind(ctx, tenant) {
		e.wmu.Lock()
		e.watchOf(tenant).deferredLogged = false
		e.wmu.Unlock()
	}
	if err != nil {
		e.deferCheck(tenant)
		return false, err
	}
	if v.refit == "" {
		e.settle(tenant, last, v)
		return false, nil
	}
	if e.tenantBehind(ctx, tenant) {
		e.deferForLag(tenant, v.refit)
		return false, nil
	}
	e.log.Info("refitting model", "tenant", tenant, "reason", v.refit)
	if _, err := e.fit(ctx, tenant, nil, true); err != nil {
		if !errors.Is(err, ErrNotEnoughData) {
			e.deferCheck(tenant)
		}
		switch {
		case ok: // its model serves meanwhile
		case errors.Is(err, ErrUnusableFit):
			// Bands without a model, of a history the fit says is partial
			// or long over (an import of old orders): published now, most
			// would change again under the model fitted by hand (`retain
			// churn refit --as-of`) or by growth.
			e.setUnmodelled(tenant, true)
		case errors.Is(err, ErrNotEnoughData):
			// A shop too small to fit: its bands, scored without a
			// model, are published as they come.
			e.setUnmodelled(tenant, false)
		}
		return false, err
	}
	return true, nil
}

// pendingTenants lists the tenants flagged for the refit loop, in order.
func (e *Engine) pendingTenants() []string {
	return e.tenantsWhere(func(w *watch) bool { return w.pending })
}

// tenantsWhere lists the tenants whose watch satisfies cond, in order.
func (e *Engine) tenantsWhere(cond func(*watch) bool) []string {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	var out []string
	for tenant, w := range e.watches {
		if cond(w) {
			out = append(out, tenant)
		}
	}
	slices.Sort(out)
	return out
}

// checkGrowth applies the refit rule to the flagged tenants and rescores
// every customer of those refit, as Refit does (which publishes the
// changes held back, unless still behind).
func (e *Engine) checkGrowth(ctx context.Context) {
	for _, tenant := range e.pendingTenants() {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		refit, err := e.autoRefit(ctx, tenant)
		e.logRefitError(ctx, tenant, err)
		if !refit {
			continue
		}
		st, err := e.RescoreAll(ctx, tenant)
		if err != nil {
			if ctx.Err() == nil {
				e.refits.Pass(ctx, err, "rescoring after a refit failed", "tenant", tenant)
			}
			continue
		}
		e.log.Info("rescored", "tenant", tenant, "customers", st.Customers, "changed", st.Changed,
			"band_changes", st.BandChanges, "held", st.Held, "took", time.Since(start))
	}
}

// logRefitError logs the outcome of a scheduled refit of tenant: a
// database outage once for every tenant while it lasts (refits), another
// failure each time.
func (e *Engine) logRefitError(ctx context.Context, tenant string, err error) {
	switch {
	case err == nil, errors.Is(err, ErrUnusableFit): // fit logged the latter
		e.refits.Answered()
	case errors.Is(err, ErrNotEnoughData):
		e.refits.Answered()
		e.log.Debug("scheduled refit skipped", "tenant", tenant, "reason", err)
	case ctx.Err() == nil:
		e.refits.Pass(ctx, err, "scheduled refit failed", "tenant", tenant)
	}
}
