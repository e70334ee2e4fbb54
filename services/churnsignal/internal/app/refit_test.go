package app

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/retainhq/retain/services/churnsignal/internal/facts"
	"github.com/retainhq/retain/services/churnsignal/internal/model"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// TestRefitDue walks the edges of the refit rule: no model, the age limit,
// the least gap, and growth of exactly the percentage in orders or in
// customers. The data is counted only when the answer depends on it.
func TestRefitDue(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fit := store.Size{Orders: 1000, Customers: 200}
	at := func(age time.Duration) *basis { return &basis{at: now.Add(-age), size: fit} }
	errCount := errors.New("count failed")
	for _, tc := range []struct {
		name     string
		last     *basis
		interval time.Duration
		cur      store.Size
		countErr error
		// refit: due; later: kept, to be checked again; counted: the rule
		// read the data.
		refit, later, counted bool
	}{
		{name: "no model", last: nil, refit: true},
		{name: "at the age limit", last: at(24 * time.Hour), cur: fit, refit: true},
		{name: "just under the age limit, no growth", last: at(24*time.Hour - time.Nanosecond), cur: fit, counted: true},
		{name: "grown, just under the least gap", last: at(DefaultMinRefitGap - time.Nanosecond), cur: store.Size{Orders: 5000, Customers: 900}, later: true},
		{name: "orders +25% at the least gap", last: at(DefaultMinRefitGap), cur: store.Size{Orders: 1250, Customers: 200}, refit: true, counted: true},
		{name: "orders and customers just under +25%", last: at(time.Hour), cur: store.Size{Orders: 1249, Customers: 249}, counted: true},
		{name: "customers +25%, orders barely", last: at(time.Hour), cur: store.Size{Orders: 1001, Customers: 250}, refit: true, counted: true},
		{name: "shrunk", last: at(time.Hour), cur: store.Size{Orders: 900, Customers: 150}, counted: true},
		{name: "size not recorded (a model stored before it was)", last: &basis{at: now.Add(-time.Hour)}, cur: fit, refit: true, counted: true},
		{name: "age limit below the least gap", last: at(2 * time.Minute), interval: time.Minute, refit: true},
		{name: "count fails", last: at(time.Hour), countErr: errCount, counted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			interval := tc.interval
			if interval == 0 {
				interval = 24 * time.Hour
			}
			counted := false
			r := rule{interval: interval, minGap: DefaultMinRefitGap, growth: DefaultRefitGrowthPercent}
			v, err := r.due(tc.last, now, func() (store.Size, error) {
				counted = true
				return tc.cur, tc.countErr
			})
			if !errors.Is(err, tc.countErr) {
				t.Fatalf("err = %v, want %v", err, tc.countErr)
			}
			if counted != tc.counted {
				t.Errorf("counted = %v, want %v", counted, tc.counted)
			}
			if err != nil {
				return
			}
			if got := v.refit != ""; got != tc.refit || v.later != tc.later {
				t.Errorf("refit %q, later %v; want refit %v, later %v", v.refit, v.later, tc.refit, tc.later)
			}
			if v.refit == "" && !v.later && (v.size == nil || *v.size != tc.cur) {
				t.Errorf("kept after counting, size %v, want %v", v.size, tc.cur)
			}
		})
	}
}

// TestOrdersToGrow: the consumer's count before the next check is exactly
// what is missing for the growth (at least one order).
func TestOrdersToGrow(t *testing.T) {
	r := rule{growth: DefaultRefitGrowthPercent}
	for _, from := range []int64{0, 1, 3, 4, 10, 999, 1000, 1001} {
		for _, cur := range []int64{from, from + from/5, from + from/4, from * 2} {
			n := r.ordersToGrow(from, cur)
			if n < 1 {
				t.Fatalf("ordersToGrow(%d, %d) = %d", from, cur, n)
			}
			size := func(orders int64) store.Size { return store.Size{Orders: orders, Customers: 1} }
			if !r.grown(size(from), size(cur+n)) {
				t.Errorf("ordersToGrow(%d, %d) = %d: %d orders have not grown from %d", from, cur, n, cur+n, from)
			}
			if n > 1 && r.grown(size(from), size(cur+n-1)) {
				t.Errorf("ordersToGrow(%d, %d) = %d: %d orders already grew from %d", from, cur, n, cur+n-1, from)
			}
		}
	}
}

// TestUnusable: a fit that expects nobody to order again is unusable; the
// published CDNOW fit on lively histories is not.
func TestUnusable(t *testing.T) {
	cdnow := model.Params{R: 0.2426, Alpha: 4.4136, A: 0.7929, B: 2.4259}
	lively := []model.Group{{Summary: model.Summary{X: 2, Tx: 30, T: 39}, Count: 10}, {Summary: model.Summary{X: 0, T: 20}, Count: 10}}
	// What churn-signal fitted on the first tenth of a time-ordered
	// import (TestModelFittedEarlyInAnImportIsRefit on the old code):
	// a dropout probability of 0.96, certain, after every purchase.
	gone := model.Params{R: 0.0105, Alpha: 0.104, A: 9.25e6, B: 3.98e5}
	early := []model.Group{{Summary: model.Summary{X: 1, Tx: 2, T: 24}, Count: 30}, {Summary: model.Summary{X: 0, T: 23}, Count: 300}}
	for _, tc := range []struct {
		name   string
		p      model.Params
		groups []model.Group
		want   bool
	}{
		{"CDNOW, lively", cdnow, lively, false},
		{"gone, early histories", gone, early, true},
		{"CDNOW on the early histories", cdnow, early, false},
	} {
		e, bad := unusable(tc.p, tc.groups)
		if bad != tc.want || (e < minExpectedOrders) != bad {
			t.Errorf("%s: unusable = %v (%.5f orders per customer), want %v", tc.name, bad, e, tc.want)
		}
	}
	// A fit of a shop ten days old (QA): dropout certain at every order.
	// Its one-time buyers keep the mean over everyone lively, so only the
	// repeat buyers' expectation shows it.
	young := model.Params{R: 0.5, Alpha: 2, A: 2.85e12, B: 1e-13}
	tenDays := []model.Group{{Summary: model.Summary{X: 1, Tx: 0.4, T: 1.2}, Count: 3}, {Summary: model.Summary{X: 0, T: 1.1}, Count: 80}}
	if _, bad := unusable(young, tenDays); bad {
		t.Errorf("the ten-day fit refused by unusable: the mean over everyone no longer shows what repeatersGone is for")
	}
	for _, tc := range []struct {
		name      string
		p         model.Params
		groups    []model.Group
		repeaters int
		want      bool
	}{
		{"ten days, every buyer leaving", young, tenDays, 3, true},
		{"CDNOW, lively", cdnow, lively, 10, false},
		{"CDNOW on the early histories", cdnow, early, 30, false},
		{"nobody ordered again", cdnow, []model.Group{{Summary: model.Summary{X: 0, T: 3}, Count: 5}}, 0, false},
	} {
		e, n, gone := repeatersGone(tc.p, tc.groups)
		if gone != tc.want || n != tc.repeaters || (n > 0 && (e < minExpectedOrders) != gone) {
			t.Errorf("%s: repeatersGone = %.5f over %d, %v; want %d repeat buyers, %v", tc.name, e, n, gone, tc.repeaters, tc.want)
		}
	}
	if got := newestOrderDays([]model.Group{{Summary: model.Summary{X: 0, T: 2}}, {Summary: model.Summary{X: 3, Tx: 10, T: 12.5}}}); got != 14 {
		t.Errorf("newestOrderDays = %d, want 14", got)
	}
}

// TestNoteBatch: the consumer flags a tenant for the refit loop once its
// orders since the model's fit reach the growth percentage of the model's, a
// tenant without a model at its first order, and counts afresh against a
// newer model.
func TestNoteBatch(t *testing.T) {
	e := &Engine{cfg: Config{RefitGrowthPercent: DefaultRefitGrowthPercent}, watches: map[string]*watch{}, wake: make(chan struct{}, 1), fetched: make(chan struct{})}
	fittedAt := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	models := map[string]store.Model{"a": {FittedAt: fittedAt, Orders: 1000}}
	orders := func(tenant string, n int) []facts.Order {
		out := make([]facts.Order, n)
		for i := range out {
			out[i] = facts.Order{Tenant: tenant, OrderID: fmt.Sprint(i)}
		}
		return out
	}
	woken := func() bool {
		select {
		case <-e.wake:
			return true
		default:
			return false
		}
	}
	e.noteBatch(orders("a", 249), models, nil)
	if woken() || len(e.pendingTenants()) != 0 {
		t.Fatalf("flagged after 249 orders on a model of 1000")
	}
	e.noteBatch(orders("a", 1), models, nil)
	if !woken() || fmt.Sprint(e.pendingTenants()) != "[a]" {
		t.Fatalf("not flagged after 250 orders on a model of 1000: %v", e.pendingTenants())
	}
	e.noteBatch(orders("b", 1), models, nil)
	if !woken() || fmt.Sprint(e.pendingTenants()) != "[a b]" {
		t.Fatalf("a tenant without a model not flagged at its first order: %v", e.pendingTenants())
	}
	models["a"] = store.Model{FittedAt: fittedAt.Add(time.Hour), Orders: 2000}
	e.noteBatch(orders("a", 499), models, nil)
	if fmt.Sprint(e.pendingTenants()) != "[b]" {
		t.Fatalf("after a refit on 2000 orders, 499 more flag it: %v", e.pendingTenants())
	}

	// A fit refused since the model (a new process's first scheduled
	// check, say) is what the orders count against, and stays the last
	// fit: the next batch must not fall back to the model's.
	refusedAt := fittedAt.Add(30 * time.Hour)
	e.refused("c", basis{at: refusedAt, size: store.Size{Orders: 4000, Customers: 900}})
	models["c"] = store.Model{FittedAt: fittedAt, Orders: 1000}
	e.noteBatch(orders("c", 1), models, nil)
	if last := e.lastFit("c", models["c"], true); last == nil || !last.at.Equal(refusedAt) {
		t.Fatalf("after a batch, the last fit of c is %+v, want the refused one at %s", last, refusedAt)
	}
	if slices.Contains(e.pendingTenants(), "c") {
		t.Fatalf("1 order after a fit refused on 4000 flags c: %v", e.pendingTenants())
	}
	e.noteBatch(orders("c", 999), models, nil)
	if !slices.Contains(e.pendingTenants(), "c") {
		t.Fatalf("1,000 orders after a fit refused on 4000 do not flag c: %v", e.pendingTenants())
	}
}
