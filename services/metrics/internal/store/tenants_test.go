package store

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// sendMany applies the tenants' histories in batches holding the next size
// facts of each kind of every tenant, as a consumer's batch of many shops'
// events (LockAndApplyTenants), until every history is sent.
func sendMany(t *testing.T, s *Store, tenants []string, hs []history, size int) (batches int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; ; i++ {
		lo := i * size
		var fs []TenantFacts
		for k, h := range hs {
			f := Facts{
				Orders:  h.orders[min(lo, len(h.orders)):min(lo+size, len(h.orders))],
				Refunds: h.refunds[min(lo, len(h.refunds)):min(lo+size, len(h.refunds))],
				Answers: h.answers[min(lo, len(h.answers)):min(lo+size, len(h.answers))],
			}
			if !f.Empty() {
				fs = append(fs, TenantFacts{Tenant: tenants[k], Facts: f})
			}
		}
		if len(fs) == 0 {
			return batches
		}
		if err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error { return s.LockAndApplyTenants(ctx, tx, fs) }); err != nil {
			t.Fatal(err)
		}
		batches++
	}
}

// TestManyTenantsInOneBatch applies six shops' histories (re-sent orders
// moving across days, months and customers, refunds before their orders,
// re-sent answers) in batches that each hold facts of every shop still
// sending, in order and then again shuffled (the stored versions and
// cached customers of the first pass meet the second's): every shop's
// figures are its reference's, and its maintained aggregates what the bulk
// builder finds. Two shops have the same history under different tenants;
// one sends orders only; one sends first only its refunds and answers (in
// batches where the others' orders take the locks), its orders with the
// second pass.
func TestManyTenantsInOneBatch(t *testing.T) {
	s := newStore(t)
	start := mustDay("2024-01-01")
	tenants := []string{"shop-a", "shop-b", "shop-c", "shop-d", "shop-e", "twin-of-a"}
	hs := []history{
		randomHistory(11, 40, start, 360),
		randomHistory(12, 25, start, 360),
		randomHistory(13, 60, start, 360),
		randomHistory(14, 10, start, 360),
		randomHistory(15, 30, start, 360),
	}
	hs = append(hs, hs[0])
	hs[2].refunds, hs[2].answers = nil, nil
	firstPass := slices.Clone(hs)
	firstPass[3].orders = nil
	cases := figureCases(start, 12)
	first, last := retention.MonthOf(start), retention.MonthOf(start)+11

	batches := sendMany(t, s, tenants, firstPass, 9)
	for k, tenant := range tenants {
		checkFigures(t, s, tenant, referenceOf(firstPass[k]), cases, first, last)
	}
	t.Logf("%d batches of up to %d shops", batches, len(tenants))

	t.Run("shuffled and sent twice in other batches", func(t *testing.T) {
		again := make([]history, len(hs))
		for k, h := range hs {
			again[k] = h.shuffled(uint64(20 + k))
		}
		sendMany(t, s, tenants, again, 13)
		for k, tenant := range tenants {
			checkFigures(t, s, tenant, referenceOf(hs[k]), cases, first, last)
		}
	})
	t.Run("the bulk builder finds what the batches maintained", func(t *testing.T) {
		if a, b := readAggregates(t, s, "shop-a"), readAggregates(t, s, "twin-of-a"); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Error("two shops with one history have different aggregates")
		}
		for _, tenant := range tenants {
			buildAgain(t, s, tenant)
		}
	})
}
