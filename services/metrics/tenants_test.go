package metrics_test

import (
	"fmt"
	"testing"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// TestManyShopsInOneBatch publishes four shops' events interleaved, a few
// of each in turn, while the service is stopped, so that every batch it
// consumes then holds facts of several shops (one of them shop-a's
// history shuffled): each shop's figures are its own history's.
func TestManyShopsInOneBatch(t *testing.T) {
	s := setup(t)
	s.stop()
	a, b, c := newShop(11, 60, shopStart, shopDays), newShop(12, 40, shopStart, shopDays), newShop(13, 80, shopStart, shopDays)
	tenants := []string{"shop-a", "shop-b", "shop-c", "shop-a-shuffled"}
	shops := []*shop{a, b, c, a}
	evs := [][]*eventsv1.Event{a.events, b.events, c.events, shuffled(5, a.events)}
	for lo := 0; ; lo += 3 {
		sent := false
		for k, e := range evs {
			if lo < len(e) {
				s.publish(t, tenants[k], e[lo:min(lo+3, len(e))])
				sent = true
			}
		}
		if !sent {
			break
		}
	}
	s.start(t)
	s.caughtUp(t)
	qs := figureQueries(shopStart, shopEnd)
	for k, tenant := range tenants {
		sameFigures(t, tenant+" vs reference", figures(t, s.client(t, tenant), qs), reference(t, shops[k], qs))
	}
}

// TestManyShopsRefundsAndAnswers publishes eight shops' events interleaved
// while the service is stopped, every shop's refunds and answers first (so
// the first batches hold no orders and every refund waits for its order),
// then its orders and their re-sends; then, with the service running, a
// second refund of every refunded order (a refund arriving after its
// order). Every batch holds facts of several shops, whose order ids
// overlap: each shop's figures are its own history's.
func TestManyShopsRefundsAndAnswers(t *testing.T) {
	s := setup(t)
	s.stop()
	var (
		tenants []string
		shops   []*shop
		first   [][]*eventsv1.Event
		orders  [][]*eventsv1.Event
	)
	for k := range 8 {
		sh := newShop(uint64(30+k), 15+5*k, shopStart, shopDays)
		tenants, shops = append(tenants, fmt.Sprintf("shop-%d", k)), append(shops, sh)
		var f, o []*eventsv1.Event
		for _, ev := range sh.events {
			if ev.GetOrderPlaced() != nil {
				o = append(o, ev)
			} else {
				f = append(f, ev)
			}
		}
		first, orders = append(first, f), append(orders, o)
	}
	interleave := func(evs [][]*eventsv1.Event, step int) {
		for lo := 0; ; lo += step {
			sent := false
			for k, e := range evs {
				if lo < len(e) {
					s.publish(t, tenants[k], e[lo:min(lo+step, len(e))])
					sent = true
				}
			}
			if !sent {
				return
			}
		}
	}
	interleave(first, 2)
	interleave(orders, 3)
	s.start(t)
	s.caughtUp(t)
	qs := figureQueries(shopStart, shopEnd)
	for k, tenant := range tenants {
		sameFigures(t, tenant+" vs reference", figures(t, s.client(t, tenant), qs), reference(t, shops[k], qs))
	}

	again := make([][]*eventsv1.Event, len(shops))
	for k, sh := range shops {
		refunded := map[string]bool{}
		for _, r := range sh.refunds {
			if !refunded[r.OrderID] {
				refunded[r.OrderID] = true
				ev := refundEvent(fmt.Sprintf("again-%s", r.ID), "again-"+r.ID, r.OrderID, "c0000", shopStart, 1+r.AmountMinor/3)
				again[k] = append(again[k], ev)
				sh.refunds = append(sh.refunds, retention.Refund{ID: "again-" + r.ID, OrderID: r.OrderID, AmountMinor: 1 + r.AmountMinor/3})
			}
		}
	}
	interleave(again, 2)
	s.caughtUp(t)
	for k, tenant := range tenants {
		sameFigures(t, tenant+" vs reference after more refunds", figures(t, s.client(t, tenant), qs), reference(t, shops[k], qs))
	}
}
