package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

// TestOrdersAfterNowAreNotCounted: ingest accepts orders dated up to a day
// ahead, and every figure is measured up to now, so such an order counts
// nowhere until its time comes. Cohorts read whole months of aggregates,
// so this month's row is the case that matters: two customers whose first
// order was earlier today are its members, not the two whose only order is
// later today or tomorrow, and its revenue leaves out an existing
// customer's order later today (the QA report: 4 members and 230.00 shown,
// 2 and 60.00 right). The other figures of the same tenant are pinned
// alike: a future order is not a buyer, a repeat, a last order or revenue,
// and a future survey answer is not counted.
func TestOrdersAfterNowAreNotCounted(t *testing.T) {
	now := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	s := setupWith(t, &stack{clock: testenv.NewClock(now)})
	today := now.Truncate(24 * time.Hour)
	s.publish(t, "shop", []*eventsv1.Event{
		// A February customer whose next order is later today.
		orderEvent("p1", "p1", "p", day("2026-02-10"), 1000, "EUR"),
		orderEvent("p2", "p2", "p", today.Add(15*time.Hour), 3000, "EUR"),
		// March's members: first orders earlier today; a orders again
		// later today.
		orderEvent("a1", "a1", "a", today.Add(8*time.Hour), 2000, "EUR"),
		orderEvent("b1", "b1", "b", today.Add(10*time.Hour), 4000, "EUR"),
		orderEvent("a2", "a2", "a", today.Add(20*time.Hour), 5000, "EUR"),
		// Customers whose only order is later today, and tomorrow.
		orderEvent("c1", "c1", "c", today.Add(18*time.Hour), 5000, "EUR"),
		orderEvent("d1", "d1", "d", today.Add(33*time.Hour), 7000, "EUR"),
		surveyEvent("s1", "a", today.Add(11*time.Hour), eventsv1.SurveyKind_SURVEY_KIND_NPS, 10),
		surveyEvent("s2", "c", today.Add(13*time.Hour), eventsv1.SurveyKind_SURVEY_KIND_NPS, 0),
	})
	s.caughtUp(t)
	ctx := context.Background()
	c := s.client(t, "shop")
	thisMonth := pbPeriod(mustPeriod(day("2026-03-01"), day("2026-04-01")))

	t.Run("cohorts", func(t *testing.T) {
		resp, err := c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: "2026-02", ToMonth: "2026-03"}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Rows) != 2 {
			t.Fatalf("rows: %s", dump(resp))
		}
		feb, mar := resp.Rows[0], resp.Rows[1]
		if mar.Members != 2 || mar.Cells[0].Active != 2 || mar.Cells[0].RevenueMinor != 6000 || mar.Cells[0].RevenuePerMemberMinor != 3000 {
			t.Fatalf("March cohort so far: want 2 members and 6000, got %s", dump(mar))
		}
		if feb.Members != 1 || feb.Cells[1].Active != 0 || feb.Cells[1].RevenueMinor != 0 {
			t.Fatalf("February cohort in March counts p's order later today: %s", dump(feb))
		}
	})
	t.Run("repeat purchase", func(t *testing.T) {
		resp, err := c.GetRepeatPurchase(ctx, &metricsv1.GetRepeatPurchaseRequest{Period: thisMonth}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if in, life := resp.InPeriod, resp.Lifetime; in.Buyers != 2 || in.RepeatBuyers != 0 || life.Buyers != 3 || life.RepeatBuyers != 0 {
			t.Fatalf("repeat: %s", dump(resp))
		}
	})
	t.Run("retention", func(t *testing.T) {
		resp, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: thisMonth, WindowDays: 30}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ActiveAtStart != 1 || resp.ActiveAtEnd != 2 || resp.NewCustomers != 2 || resp.Retained != 0 {
			t.Fatalf("retention: %s", dump(resp))
		}
	})
	t.Run("nps", func(t *testing.T) {
		resp, err := c.GetNPS(ctx, &metricsv1.GetNPSRequest{Period: thisMonth}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Nps.Answers != 1 || resp.Nps.Promoters != 1 {
			t.Fatalf("nps: %s", dump(resp))
		}
	})
	t.Run("sales and top", func(t *testing.T) {
		sales, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: thisMonth}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if sales.Orders != 2 || sales.Customers != 2 || sales.NetRevenueMinor != 6000 {
			t.Fatalf("sales: %s", dump(sales))
		}
		top, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: thisMonth, Percent: 100}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if top.Customers != 2 || top.RevenueMinor != 6000 || top.Top[0].CustomerId != "b" {
			t.Fatalf("top: %s", dump(top))
		}
	})
	t.Run("rfm", func(t *testing.T) {
		resp, err := c.GetRFM(ctx, &metricsv1.GetRFMRequest{}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Customers != 3 {
			t.Fatalf("rfm customers: %s", dump(resp))
		}
		for _, sc := range resp.Scores {
			last := map[string]time.Time{"a": today.Add(8 * time.Hour), "b": today.Add(10 * time.Hour), "p": day("2026-02-10")}[sc.CustomerId]
			if !sc.LastOrderAt.AsTime().Equal(last) || sc.Frequency != 1 {
				t.Fatalf("rfm of %s counts an order after now: %s", sc.CustomerId, dump(sc))
			}
		}
	})
	// Last: it moves the clock. A period ending after now is cut at each
	// page's now; the pages of one listing stay the first page's ranking.
	t.Run("top pages of a period ending after now are one ranking", func(t *testing.T) {
		first, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: thisMonth, Percent: 100, PageSize: 1}, c.creds)
		if err != nil || len(first.Top) != 1 || first.Top[0].CustomerId != "b" || first.NextPageToken == "" {
			t.Fatalf("first page: %v %s", err, dump(first))
		}
		// By 20:00 c (18:00, 5000) and p (15:00, 3000) have ordered.
		s.clock.Advance(8 * time.Hour)
		next, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: thisMonth, Percent: 100, PageSize: 1, PageToken: first.NextPageToken}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if len(next.Top) != 1 || next.Top[0].CustomerId != "a" || next.Top[0].Rank != 2 || next.NextPageToken != "" ||
			!next.Period.To.AsTime().Equal(first.Period.To.AsTime()) {
			t.Fatalf("second page, want a at rank 2 of the first page's ranking (to %v): %s", first.Period.To.AsTime(), dump(next))
		}
	})
}

// TestRefundCountsAgainstItsOrdersCustomer: a refund names its order, and
// it is the order's customer whose revenue it takes off, whatever
// customer_id the refund carries (metrics does not read it): not the
// customer it names, who may have orders of their own or none.
func TestRefundCountsAgainstItsOrdersCustomer(t *testing.T) {
	s := setup(t)
	s.publish(t, "shop", []*eventsv1.Event{
		orderEvent("x1", "x1", "x", day("2025-03-10"), 10000, "EUR"),
		orderEvent("y1", "y1", "y", day("2025-03-11"), 3000, "EUR"),
		refundEvent("r1", "r1", "x1", "y", day("2025-03-12"), 4000),
		refundEvent("r2", "r2", "x1", "ghost", day("2025-03-12"), 1000),
	})
	s.caughtUp(t)
	ctx := context.Background()
	c := s.client(t, "shop")
	want := map[string]int64{"x": 5000, "y": 3000}

	top, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: pbPeriod(mustPeriod(day("2025-03-01"), day("2025-04-01"))), Percent: 100}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Top) != 2 || top.RevenueMinor != 8000 {
		t.Fatalf("top: %s", dump(top))
	}
	for _, r := range top.Top {
		if r.RevenueMinor != want[r.CustomerId] {
			t.Fatalf("top: %s has %d, want %d: %s", r.CustomerId, r.RevenueMinor, want[r.CustomerId], dump(top))
		}
	}
	rfm, err := c.GetRFM(ctx, &metricsv1.GetRFMRequest{At: ts(day("2025-04-01"))}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	if rfm.Customers != 2 || len(rfm.Scores) != 2 {
		t.Fatalf("rfm: %s", dump(rfm))
	}
	for _, sc := range rfm.Scores {
		if sc.MonetaryMinor != want[sc.CustomerId] {
			t.Fatalf("rfm: %s has monetary %d, want %d: %s", sc.CustomerId, sc.MonetaryMinor, want[sc.CustomerId], dump(rfm))
		}
	}
}
