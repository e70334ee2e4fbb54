package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/testenv"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

func refundIn(id, refundID, orderID string, at time.Time, minor int64, currency string) *eventsv1.Event {
	ev := refundEvent(id, refundID, orderID, "c1", at, minor)
	ev.GetOrderRefunded().Amount.Currency = currency
	return ev
}

// TestRefundInAnotherCurrencyIsNotSubtracted: no currency is converted, so
// a refund of JPY 500 on an order of EUR 10.00 takes nothing off it, in
// whichever order the two arrive and after a rebuild. A refund whose
// order is known is refused with a dead letter naming the order and both
// currencies; one that arrived first stays out of the order's figures
// when the order lands. A refund in the order's currency still counts.
func TestRefundInAnotherCurrencyIsNotSubtracted(t *testing.T) {
	s := setupWith(t, &stack{logs: &testenv.SyncBuffer{}})
	at := day("2025-03-10")
	// mix: the order first, then the refund (the QA report's case).
	s.publish(t, "mix", []*eventsv1.Event{orderEvent("m1", "m1", "c1", at, 1000, "EUR")})
	s.caughtUp(t)
	s.publish(t, "mix", []*eventsv1.Event{refundIn("r1", "r1", "m1", at.Add(time.Hour), 500, "JPY")})
	// early: the refund first, then its order.
	s.publish(t, "early", []*eventsv1.Event{refundIn("r1", "r1", "m1", at.Add(time.Hour), 500, "JPY")})
	s.caughtUp(t)
	s.publish(t, "early", []*eventsv1.Event{orderEvent("m1", "m1", "c1", at, 1000, "EUR")})
	// same: order and refund in one batch.
	s.publish(t, "same", []*eventsv1.Event{
		orderEvent("m1", "m1", "c1", at, 1000, "EUR"), refundIn("r1", "r1", "m1", at.Add(time.Hour), 500, "JPY"),
		// A refund in the order's currency counts, before and after.
		refundIn("r2", "r2", "m1", at.Add(time.Hour), 200, "EUR"),
	})
	s.publish(t, "early", []*eventsv1.Event{refundIn("r2", "r2", "m1", at.Add(time.Hour), 200, "EUR")})
	s.caughtUp(t)
	s.publish(t, "mix", []*eventsv1.Event{refundIn("r2", "r2", "m1", at.Add(time.Hour), 200, "EUR")})
	s.caughtUp(t)

	ctx := context.Background()
	period := pbPeriod(mustPeriod(day("2025-03-01"), day("2025-04-01")))
	check := func(when string) {
		t.Helper()
		for _, tenant := range []string{"mix", "early", "same"} {
			c := s.client(t, tenant)
			got, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: period}, c.creds)
			if err != nil {
				t.Fatal(err)
			}
			if got.Currency != "EUR" || got.Orders != 1 || got.GrossRevenueMinor != 1000 || got.RefundedMinor != 200 || got.NetRevenueMinor != 800 {
				t.Errorf("%s: %s sales %s, want 1 order of EUR 10.00 with EUR 2.00 refunded (the JPY refund left out)", when, tenant, dump(got))
			}
			top, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: period, Percent: 100}, c.creds)
			if err != nil {
				t.Fatal(err)
			}
			if top.RevenueMinor != 800 {
				t.Errorf("%s: %s top customers %s, want EUR 8.00 of net revenue", when, tenant, dump(top))
			}
		}
	}
	check("live")

	rows, err := s.pool(t).Query(ctx, `SELECT msg_id, reason FROM bus_dead_letters WHERE consumer = 'metrics-facts' ORDER BY msg_id`)
	if err != nil {
		t.Fatal(err)
	}
	type dl struct{ ID, Reason string }
	dead, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dl])
	if err != nil {
		t.Fatal(err)
	}
	// early's refund arrived before its order: nothing to refuse it
	// against then, and it stays out of the figures.
	if len(dead) != 2 || dead[0].ID != "mix/r1" || dead[1].ID != "same/r1" {
		t.Fatalf("dead letters %v, want mix/r1 and same/r1", dead)
	}
	for _, d := range dead {
		for _, want := range []string{"order m1", "EUR", "JPY", "refund r1"} {
			if !strings.Contains(d.Reason, want) {
				t.Errorf("dead letter %s: reason %q does not say %q", d.ID, d.Reason, want)
			}
		}
	}

	// early's order landed after its refund in another currency: said once.
	if n := strings.Count(s.logs.String(), "refunds in another currency than their order's are not subtracted"); n != 1 {
		t.Errorf("%d warnings about early's refund left out, want 1:\n%s", n, s.logs.String())
	}
	for _, want := range []string{"tenant=early", "order_id=m1", "order_currency=EUR", "refund_currency=JPY", "refunded_minor=500"} {
		if !strings.Contains(s.logs.String(), want) {
			t.Errorf("the warning does not say %s:\n%s", want, s.logs.String())
		}
	}

	// A rebuild replays every fact in stream order: the same figures.
	for _, tenant := range []string{"mix", "early", "same"} {
		admin := s.client(t, tenant, auth.ScopeAdmin)
		if _, err := admin.Rebuild(ctx, &metricsv1.RebuildRequest{}, admin.creds); err != nil {
			t.Fatal(err)
		}
	}
	check("after rebuild")
}

// TestCurrencyWithoutOrdersIsRefused: naming a currency the tenant has no
// orders in would only print zeros; the answer says which it has.
func TestCurrencyWithoutOrdersIsRefused(t *testing.T) {
	s := setup(t)
	at := day("2025-03-10")
	s.publish(t, "mix", []*eventsv1.Event{
		orderEvent("m1", "m1", "c1", at, 1000, "EUR"),
		orderEvent("m2", "m2", "c2", at, 50000, "JPY"),
	})
	s.caughtUp(t)
	ctx := context.Background()
	period := pbPeriod(mustPeriod(day("2025-03-01"), day("2025-04-01")))
	c := s.client(t, "mix")
	_, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: period, Currency: "USD"}, c.creds)
	st := wantCode(t, err, codes.InvalidArgument)
	if msg := st.String(); !strings.Contains(msg, "no orders in USD") || !strings.Contains(msg, "EUR, JPY") {
		t.Errorf("the answer does not say the tenant has no USD orders and which currencies it has: %v", st)
	}
	got, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: period, Currency: "JPY"}, c.creds)
	if err != nil || got.GrossRevenueMinor != 50000 {
		t.Fatalf("sales in JPY: %v %v", got, err)
	}
	// A tenant without orders has no currency to name: zeros.
	empty := s.client(t, "empty")
	got, err = empty.GetSales(ctx, &metricsv1.GetSalesRequest{Period: period, Currency: "USD"}, empty.creds)
	if err != nil || got.Orders != 0 {
		t.Fatalf("sales of a tenant without orders: %v %v", got, err)
	}
}
