package metrics_test

import (
	"testing"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
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
