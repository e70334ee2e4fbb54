package store

import (
	"context"
	"fmt"
	"math/rand/v2"
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
		if err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error { _, err := s.LockAndApplyTenants(ctx, tx, fs); return err }); err != nil {
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

// withMoreRefunds adds to h refunds the consumer meets in a busy shop:
// orders refunded several times (together over their total), a refund
// re-sent with a smaller amount (it wins), and a refund re-sent naming an
// order that sorts first, after its first version's batch (it moves the
// refund away from the order the first one named).
func withMoreRefunds(h history, seed uint64) history {
	r := rand.New(rand.NewPCG(seed, 7))
	h.refunds = slices.Clone(h.refunds)
	moved := retention.Refund{ID: "moved", OrderID: "o3", AmountMinor: 70}
	h.refunds = append([]retention.Refund{moved}, h.refunds...)
	for i, o := range h.orders {
		if i%5 != 0 {
			continue
		}
		for k := range 2 + r.IntN(2) {
			h.refunds = append(h.refunds, retention.Refund{ID: fmt.Sprintf("x%s-%d", o.ID, k), OrderID: o.ID, AmountMinor: 1 + r.Int64N(o.TotalMinor/2+100)})
		}
		if i%15 == 0 {
			re := h.refunds[len(h.refunds)-1]
			re.AmountMinor = max(1, re.AmountMinor/2)
			h.refunds = append(h.refunds, re)
		}
	}
	moved.OrderID = "o2"
	h.refunds = append(h.refunds, moved)
	return h
}

// TestRefundsAndAnswersOfManyTenants applies twelve shops' histories rich
// in refunds (refunds before their orders, orders refunded several times
// and over their total, re-sent refunds, refunds of orders that never
// come) and answers (re-sent), every shop with the same order ids, in
// batches of all the shops: first their refunds and answers alone (batches
// without orders), then everything, then everything again shuffled. After
// each step every shop's figures are its reference's and its aggregates
// are exactly those of the same facts applied to one shop alone, in the
// same batches (Apply). A refund or an answer applied to another shop than
// its own changes both.
func TestRefundsAndAnswersOfManyTenants(t *testing.T) {
	s := newStore(t)
	start := mustDay("2024-01-01")
	var tenants []string
	var hs []history
	for k := range 12 {
		tenants = append(tenants, fmt.Sprintf("shop-%02d", k))
		hs = append(hs, withMoreRefunds(randomHistory(uint64(40+k), 6+3*k, start, 360), uint64(k)))
	}
	// One shop whose orders never come, one without answers.
	hs[5].orders = nil
	hs[7].answers = nil
	cases := figureCases(start, 12)
	first, last := retention.MonthOf(start), retention.MonthOf(start)+11

	steps := []struct {
		name string
		hs   []history
		size int
	}{
		{"refunds and answers before the orders", nil, 5},
		{"everything", hs, 7},
		{"everything again, shuffled", nil, 11},
	}
	steps[0].hs = make([]history, len(hs))
	steps[2].hs = make([]history, len(hs))
	for k, h := range hs {
		steps[0].hs[k] = history{refunds: h.refunds, answers: h.answers}
		steps[2].hs[k] = h.shuffled(uint64(60 + k))
	}
	sent := make([]history, len(hs))
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			batches := sendMany(t, s, tenants, step.hs, step.size)
			for k, tenant := range tenants {
				send(t, s, "alone-"+tenant, step.hs[k], step.size)
				sent[k].orders = append(sent[k].orders, step.hs[k].orders...)
				sent[k].refunds = append(sent[k].refunds, step.hs[k].refunds...)
				sent[k].answers = append(sent[k].answers, step.hs[k].answers...)
			}
			for k, tenant := range tenants {
				checkFigures(t, s, tenant, referenceOf(sent[k]), cases, first, last)
				sameAggregates(t, tenant+" vs alone", readAggregates(t, s, tenant), readAggregates(t, s, "alone-"+tenant))
			}
			t.Logf("%d batches of up to %d shops", batches, len(tenants))
		})
	}
	for _, tenant := range tenants {
		buildAgain(t, s, tenant)
	}
}
