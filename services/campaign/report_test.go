package campaign_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
)

// TestRevenueCountsEachOrderOnce: a per-order campaign gives a regular an
// enrollment per order, with overlapping attribution windows. Revenue is
// the orders placed within any of them, each once (QA: joined per window,
// a customer's 312k EUR was reported as 3.9G).
func TestRevenueCountsEachOrderOnce(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	s.create(t, tenant, sendNow("per-order", "{once_per_key: order_id}", 0))
	now := s.clock.Now()
	s.publish(t, tenant,
		orderEv("o1", "regular", now.Add(-3*time.Hour), 1000),
		orderEv("o2", "regular", now.Add(-2*time.Hour), 2000),
		orderEv("o3", "regular", now.Add(-time.Hour), 4000),
		// In the same instant as another enrollment's anchor: after o4's
		// own anchor only.
		orderEv("o4", "twice", now.Add(-time.Hour), 100),
		orderEv("o5", "twice", now.Add(-time.Hour), 200))
	s.caughtUp(t)
	rep := s.report(t, tenant, "per-order")
	// o1 opens the first window; o2 and o3 fall in it (o3 in o2's too).
	// o4 and o5 are each their own window's anchor, placed in the same
	// instant as the other's: neither is after an anchor.
	if rv := rep.GetRevenue(); rep.GetTreated() != 5 || len(rv) != 1 || rv[0].GetTreatedMinor() != 6000 || rv[0].GetHoldoutMinor() != 0 {
		t.Fatalf("%d enrolled, revenue %v; want 5 enrolled and 6000 EUR treated (o2 + o3, each once)", rep.GetTreated(), rv)
	}
}

// TestReportsDoNotStarveTheConsumers: reports over a large shop run for
// seconds, each on a pool connection the consumers share. A dozen at once
// (a dashboard refreshing, a script) used to take every connection, and
// no shop's events were applied until they ended (QA). Reports now take
// turns, and the facts consumer goes on meanwhile.
func TestReportsDoNotStarveTheConsumers(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	const tenant = "shop"
	s.create(t, tenant, sendNow("per-order", "{once_per_key: order_id}", 0))
	// Every report stops at the deliveries it counts, holding its
	// connection, until the lock is let go.
	lock, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `LOCK TABLE campaign_deliveries IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for range 12 {
		wg.Go(func() {
			_, _ = s.client().GetReport(rctx, &campaignv1.GetReportRequest{Id: "per-order"}, s.token(t, tenant))
		})
	}
	time.Sleep(500 * time.Millisecond) // the reports are under way
	s.publish(t, tenant, orderEv("o1", "c", s.clock.Now(), 1000))
	testenv.WaitForUpTo(t, 10*time.Second, "the order to be applied while reports run", func() bool {
		return s.count(t, `SELECT count(*) FROM enrollments WHERE customer_id = 'c'`) == 1
	})
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}
