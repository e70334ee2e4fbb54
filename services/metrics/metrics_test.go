package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/server"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

var (
	shopStart = day("2024-01-01")
	shopDays  = 365 + 181 // to 2025-07-01
	shopEnd   = shopStart.AddDate(0, 0, shopDays)
)

// TestFiguresMatchTheReference sends a shop with refunds, re-sent and
// conflicting orders and repeated survey answers, in order to one tenant and
// shuffled to another, and checks that both answer every figure exactly as
// the domain's reference computation over the same facts does.
func TestFiguresMatchTheReference(t *testing.T) {
	s := setup(t)
	sh := newShop(1, 300, shopStart, shopDays)
	s.publish(t, "ordered", sh.events)
	s.publish(t, "shuffled", shuffled(2, sh.events))
	s.caughtUp(t)

	qs := figureQueries(shopStart, shopEnd)
	want := reference(t, sh, qs)
	sameFigures(t, "in order vs reference", figures(t, s.client(t, "ordered"), qs), want)
	sameFigures(t, "shuffled vs reference", figures(t, s.client(t, "shuffled"), qs), want)

	t.Run("another tenant sees nothing of them", func(t *testing.T) {
		resp, err := s.client(t, "stranger").GetSales(context.Background(), &metricsv1.GetSalesRequest{Period: pbPeriod(mustPeriod(shopStart, shopEnd))}, s.client(t, "stranger").creds)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Orders != 0 || resp.Customers != 0 || resp.Currency != "" {
			t.Fatalf("stranger sees %s", dump(resp))
		}
	})
}

// TestDuplicatesAndRedeliveryChangeNothing re-sends every fact under new
// event ids (only natural keys can tell), then makes the server redeliver
// the whole stream to a restarted service (only the inbox can tell).
func TestDuplicatesAndRedeliveryChangeNothing(t *testing.T) {
	s := setup(t)
	sh := newShop(3, 120, shopStart, shopDays)
	s.publish(t, "shop", sh.events)
	s.caughtUp(t)
	qs := figureQueries(shopStart, shopEnd)
	c := s.client(t, "shop")
	before := figures(t, c, qs)
	sameFigures(t, "first delivery vs reference", before, reference(t, sh, qs))

	// The same orders and refunds under new event ids: new messages to the
	// bus and to the inbox; the natural keys make them no-ops. (Survey
	// answers are identified by their event id, so they are not re-sent.)
	var again []*eventsv1.Event
	for _, ev := range sh.events {
		if ev.GetSurveyAnswered() != nil {
			continue
		}
		ev = proto.Clone(ev).(*eventsv1.Event)
		ev.Id = "again-" + ev.Id
		again = append(again, ev)
	}
	s.publish(t, "shop", again)
	// The same messages again: JetStream drops them within its window.
	s.publish(t, "shop", sh.events)
	s.caughtUp(t)
	sameFigures(t, "after re-sends", figures(t, c, qs), before)

	// Redelivery of everything: stop the service, delete its durable
	// consumer so the server delivers the stream from the start again, and
	// start a new instance on the same database.
	s.stop()
	ctx := context.Background()
	js, err := jetstream.New(s.bus.NC)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, bus.EventsStream, "metrics-facts"); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	s.caughtUp(t)
	c = s.client(t, "shop")
	sameFigures(t, "after redelivery", figures(t, c, qs), before)
	if n := count(t, s, `SELECT count(*) FROM bus_inbox WHERE consumer = 'metrics-facts'`); n != len(sh.events)+len(again) {
		t.Fatalf("inbox holds %d ids, want %d", n, len(sh.events)+len(again))
	}
}

// TestLateEventCorrectsThePast sends, after the figures were read, an order
// placed a year earlier by a customer who already had later orders, and a
// refund of an old order: every period they touch changes to what the
// reference computes with them.
func TestLateEventCorrectsThePast(t *testing.T) {
	s := setup(t)
	sh := newShop(4, 120, shopStart, shopDays)
	s.publish(t, "shop", sh.events)
	s.caughtUp(t)
	qs := figureQueries(shopStart, shopEnd)
	c := s.client(t, "shop")
	before := figures(t, c, qs)

	// c0007's first order moves back to 2024-02-10; order-late-2 is a
	// brand-new customer in 2024-03; the first order gets a refund.
	first := sh.orders[0]
	late := []*eventsv1.Event{
		orderEvent("late-1", "order-late-1", "c0007", day("2024-02-10").Add(10*time.Hour), 12345, "EUR"),
		orderEvent("late-2", "order-late-2", "newcomer", day("2024-03-05"), 999, "EUR"),
		refundEvent("late-3", "refund-late-3", first.ID, string(first.Customer), day("2025-06-01"), 200),
	}
	sh.events = append(sh.events, late...)
	sh.orders = append(sh.orders,
		retention.Order{ID: "order-late-1", Customer: "c0007", At: day("2024-02-10").Add(10 * time.Hour), TotalMinor: 12345},
		retention.Order{ID: "order-late-2", Customer: "newcomer", At: day("2024-03-05"), TotalMinor: 999})
	sh.refunds = append(sh.refunds, retention.Refund{ID: "refund-late-3", OrderID: first.ID, AmountMinor: 200})
	s.publish(t, "shop", late)
	s.caughtUp(t)

	after := figures(t, c, qs)
	sameFigures(t, "after late events vs reference", after, reference(t, sh, qs))
	changed := 0
	for i := range after {
		if !proto.Equal(after[i].msg, before[i].msg) {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("the late events changed no figure")
	}
	t.Logf("late events changed %d of %d figures", changed, len(after))
}

// TestRebuildReproducesEveryFigure drops the tenant's projections, replays
// the stream, and compares every figure; the live consumer keeps running.
func TestRebuildReproducesEveryFigure(t *testing.T) {
	s := setup(t)
	sh := newShop(5, 150, shopStart, shopDays)
	s.publish(t, "shop", sh.events)
	s.publish(t, "other", sh.events[:100])
	// One poison message: it is dead-lettered live and refused in the
	// replay, changing nothing.
	s.publish(t, "shop", []*eventsv1.Event{orderEvent("bad-1", "", "c0001", day("2024-05-01"), 100, "EUR")})
	s.caughtUp(t)
	qs := figureQueries(shopStart, shopEnd)
	before := figures(t, s.client(t, "shop"), qs)
	otherBefore := figures(t, s.client(t, "other"), qs)

	ctx := context.Background()
	admin := s.client(t, "shop", auth.ScopeAdmin)
	resp, err := admin.Rebuild(ctx, &metricsv1.RebuildRequest{}, admin.creds)
	if err != nil {
		t.Fatal(err)
	}
	if resp.EventsReplayed != int64(len(sh.events)+1) || resp.EventsApplied != int64(len(sh.events)) || resp.EventsRejected != 1 {
		t.Fatalf("rebuild: %s, want %d replayed, %d applied, 1 rejected", dump(resp), len(sh.events)+1, len(sh.events))
	}
	sameFigures(t, "after rebuild", figures(t, s.client(t, "shop"), qs), before)
	sameFigures(t, "other tenant after rebuild", figures(t, s.client(t, "other"), qs), otherBefore)

	// Rebuilding again (nothing changed) is just as exact.
	if _, err := admin.Rebuild(ctx, &metricsv1.RebuildRequest{}, admin.creds); err != nil {
		t.Fatal(err)
	}
	sameFigures(t, "after a second rebuild", figures(t, s.client(t, "shop"), qs), before)
	if n := count(t, s, `SELECT count(*) FROM bus_dead_letters WHERE consumer = 'metrics-facts'`); n != 1 {
		t.Fatalf("%d dead letters, want the 1 poison message", n)
	}
}

// TestTwoReplicasAgree runs two service instances on one database and one
// durable consumer, as two replicas do: batches of one tenant go to either,
// each process caching the customers it wrote, and every figure is still
// the reference's (a replica must notice the other's writes).
func TestTwoReplicasAgree(t *testing.T) {
	s := setup(t)
	s.start(t) // the second replica
	sh := newShop(7, 200, shopStart, shopDays)
	// Shuffled (a customer's orders land in many batches) and in slices, so
	// that the replicas take the tenant's batches in turn.
	evs := shuffled(8, sh.events)
	for i := 0; i < len(evs); i += 40 {
		s.publish(t, "shop", evs[i:min(i+40, len(evs))])
		s.caughtUp(t)
	}
	qs := figureQueries(shopStart, shopEnd)
	sameFigures(t, "two replicas vs reference", figures(t, s.client(t, "shop"), qs), reference(t, sh, qs))
}

// TestWindowEdges pins the half-open window on the service: an order exactly
// at from-W makes its customer active at from, an order exactly at to does
// not make its customer active at to nor new in the period.
func TestWindowEdges(t *testing.T) {
	s := setup(t)
	from, to := day("2025-04-01"), day("2025-07-01")
	w := 90 * 24 * time.Hour
	s.publish(t, "shop", []*eventsv1.Event{
		orderEvent("a1", "a1", "at-from-minus-w", from.Add(-w), 100, "EUR"),                // in S
		orderEvent("b1", "b1", "just-before-window", from.Add(-w-time.Second), 100, "EUR"), // in nothing
		orderEvent("c1", "c1", "at-to", to, 100, "EUR"),                                    // not in E, not new
		orderEvent("d1", "d1", "just-before-to", to.Add(-time.Second), 100, "EUR"),         // new, in E
		orderEvent("e1", "e1", "retained", from.Add(-time.Hour), 100, "EUR"),               // in S
		orderEvent("e2", "e2", "retained", to.Add(-w), 100, "EUR"),                         // and in E
	})
	s.caughtUp(t)
	c := s.client(t, "shop")
	got, err := c.GetRetention(context.Background(), &metricsv1.GetRetentionRequest{Period: pbPeriod(mustPeriod(from, to)), WindowDays: 90}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	want := &metricsv1.GetRetentionResponse{
		Period: pbPeriod(mustPeriod(from, to)), WindowDays: 90,
		ActiveAtStart: 2, ActiveAtEnd: 2, NewCustomers: 1, Retained: 1, Churned: 1, Reactivated: 0, NewActiveAtEnd: 1,
		// (E - N) / S = (2 - 1) / 2; churned / S = 1 / 2; churned / N = 1 / 1.
		RetentionRate:   &metricsv1.Ratio{Numerator: 1, Denominator: 2, Defined: true, Percent: 50, Value: 0.5},
		ChurnRate:       &metricsv1.Ratio{Numerator: 1, Denominator: 2, Defined: true, Percent: 50, Value: 0.5},
		LostPerAcquired: &metricsv1.Ratio{Numerator: 1, Denominator: 1, Defined: true, Percent: 100, Value: 1},
	}
	if !proto.Equal(got, want) {
		t.Fatalf("got %s\nwant %s", dump(got), dump(want))
	}

	// No customer active at the start: every rate over S is "no figure".
	empty, err := c.GetRetention(context.Background(), &metricsv1.GetRetentionRequest{Period: pbPeriod(mustPeriod(day("2020-01-01"), day("2020-02-01")))}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	if empty.RetentionRate.Defined || empty.ChurnRate.Defined || empty.LostPerAcquired.Defined || empty.WindowDays != 90 {
		t.Fatalf("empty period: %s", dump(empty))
	}
}

// TestInvalidRequestsNameTheField checks every validation on the edge.
func TestInvalidRequestsNameTheField(t *testing.T) {
	s := setup(t)
	s.publish(t, "multi", []*eventsv1.Event{
		orderEvent("m1", "m1", "c1", day("2025-01-01"), 100, "EUR"),
		orderEvent("m2", "m2", "c2", day("2025-01-02"), 100, "GBP"),
	})
	s.caughtUp(t)
	ctx := context.Background()
	c := s.client(t, "multi")
	q2 := pbPeriod(mustPeriod(day("2025-04-01"), day("2025-07-01")))
	nextYear := time.Date(time.Now().Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
	inverted := &metricsv1.Period{From: q2.To, To: q2.From}
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
		says  string
	}{
		{"from after to", func() error {
			_, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: inverted}, c.creds)
			return err
		}, "period", "must be before"},
		{"from equal to to", func() error {
			_, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: &metricsv1.Period{From: q2.From, To: q2.From}}, c.creds)
			return err
		}, "period", "must be before"},
		{"no period", func() error {
			_, err := c.GetNPS(ctx, &metricsv1.GetNPSRequest{}, c.creds)
			return err
		}, "period.from", "required"},
		{"no end", func() error {
			_, err := c.GetRepeatPurchase(ctx, &metricsv1.GetRepeatPurchaseRequest{Period: &metricsv1.Period{From: q2.From}}, c.creds)
			return err
		}, "period.to", "required"},
		{"window over ten years", func() error {
			_, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: q2, WindowDays: 3651}, c.creds)
			return err
		}, "window_days", "between 1 and 3650"},
		{"negative window", func() error {
			_, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: q2, WindowDays: -5}, c.creds)
			return err
		}, "window_days", "between 1 and 3650"},
		{"cohorts over 120 months", func() error {
			_, err := c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: "2010-01", ToMonth: "2020-01", Currency: "EUR"}, c.creds)
			return err
		}, "to_month", "at most 120"},
		{"cohorts inverted", func() error {
			_, err := c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: "2020-02", ToMonth: "2020-01", Currency: "EUR"}, c.creds)
			return err
		}, "to_month", "after last month"},
		{"not a month", func() error {
			_, err := c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: "2020-13", ToMonth: "2021-01"}, c.creds)
			return err
		}, "from_month", "YYYY-MM"},
		{"percent over 100", func() error {
			_, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: q2, Percent: 150, Currency: "EUR"}, c.creds)
			return err
		}, "percent", "(0, 100]"},
		{"page size too big", func() error {
			_, err := c.GetRFM(ctx, &metricsv1.GetRFMRequest{PageSize: 5000, Currency: "EUR"}, c.creds)
			return err
		}, "page_size", "between 1 and 1000"},
		{"foreign page token", func() error {
			_, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: q2, PageToken: "!!", Currency: "EUR"}, c.creds)
			return err
		}, "page_token", "is malformed"},
		{"lower-case currency", func() error {
			_, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: q2, Currency: "eur"}, c.creds)
			return err
		}, "currency", `must be upper case: "EUR"`},
		{"three letters that are no currency", func() error {
			_, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: q2, Currency: "XYZ"}, c.creds)
			return err
		}, "currency", `"XYZ" is not an ISO 4217 currency code`},
		{"period starting in the future", func() error {
			_, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: pbPeriod(mustPeriod(nextYear, nextYear.AddDate(0, 3, 0)))}, c.creds)
			return err
		}, "period.from", "is not in the past"},
		{"rfm as of a future instant", func() error {
			_, err := c.GetRFM(ctx, &metricsv1.GetRFMRequest{At: ts(time.Now().Add(time.Hour)), Currency: "EUR"}, c.creds)
			return err
		}, "at", "is in the future"},
		{"cohorts starting after this month", func() error {
			_, err := c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: nextYear.Format("2006-01"), ToMonth: nextYear.Format("2006-01"), Currency: "EUR"}, c.creds)
			return err
		}, "from_month", "the cohort has no customers yet"},
		{"two currencies and none named", func() error {
			_, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: q2}, c.creds)
			return err
		}, "currency", "EUR GBP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st := wantCode(t, err, codes.InvalidArgument)
			if !strings.Contains(st.Message(), tc.says) {
				t.Errorf("message %q does not say %q", st.Message(), tc.says)
			}
			var fields []string
			for _, v := range server.Violations(err) {
				fields = append(fields, v.Field)
			}
			if len(fields) != 1 || fields[0] != tc.field {
				t.Errorf("field violations %v, want [%s]", fields, tc.field)
			}
		})
	}

	t.Run("a named currency answers", func(t *testing.T) {
		resp, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: pbPeriod(mustPeriod(day("2025-01-01"), day("2025-02-01"))), Currency: "GBP"}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Orders != 1 || resp.NetRevenueMinor != 100 || resp.Currency != "GBP" {
			t.Fatalf("GBP sales: %s", dump(resp))
		}
	})
}

// TestPeriodsEndingInTheFutureAreMeasuredToNow: a period that ends after now
// (this quarter, asked for whole) is measured up to now, and says so, instead
// of counting every customer who has not ordered by a date nobody has reached
// as churned. The figures are those of the period [from, now) asked for
// explicitly.
func TestPeriodsEndingInTheFutureAreMeasuredToNow(t *testing.T) {
	s := setup(t)
	now := time.Now().UTC().Truncate(time.Second)
	from := now.AddDate(0, 0, -20)
	end := now.AddDate(0, 0, 70) // a quarter's end, still to come
	s.publish(t, "shop", []*eventsv1.Event{
		// Active at from and at now under 30 days; not at end.
		orderEvent("r1", "r1", "regular", from.AddDate(0, 0, -5), 1000, "EUR"),
		orderEvent("r2", "r2", "regular", now.AddDate(0, 0, -10), 2000, "EUR"),
		// Active at from; at now too (its order is 25 days old); not at end.
		orderEvent("q1", "q1", "quiet", from.AddDate(0, 0, -5).Add(time.Hour), 500, "EUR"),
		// New in the period.
		orderEvent("n1", "n1", "new", now.AddDate(0, 0, -1), 700, "EUR"),
	})
	s.caughtUp(t)
	ctx := context.Background()
	c := s.client(t, "shop")
	future := pbPeriod(mustPeriod(from, end))
	// measuredToNow checks that a response's period is [from, now) for a now
	// taken while the call ran, and returns it.
	measuredToNow := func(t *testing.T, call func() (*metricsv1.Period, error)) *metricsv1.Period {
		t.Helper()
		before := time.Now().Truncate(time.Microsecond)
		got, err := call()
		if err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		if !got.GetFrom().AsTime().Equal(from) || got.GetTo().AsTime().Before(before) || got.GetTo().AsTime().After(after) {
			t.Fatalf("measured %v to %v, want %v to now (between %v and %v)", got.GetFrom().AsTime(), got.GetTo().AsTime(), from, before, after)
		}
		return got
	}

	t.Run("retention", func(t *testing.T) {
		var resp *metricsv1.GetRetentionResponse
		p := measuredToNow(t, func() (_ *metricsv1.Period, err error) {
			resp, err = c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: future, WindowDays: 30}, c.creds)
			return resp.GetPeriod(), err
		})
		if resp.ActiveAtStart != 2 || resp.Retained != 2 || resp.Churned != 0 || resp.NewCustomers != 1 || resp.ActiveAtEnd != 3 {
			t.Fatalf("so far: %s", dump(resp))
		}
		explicit, err := c.GetRetention(ctx, &metricsv1.GetRetentionRequest{Period: p, WindowDays: 30}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp, explicit) {
			t.Fatalf("so far %s\nexplicit [from, now) %s", dump(resp), dump(explicit))
		}
	})
	t.Run("repeat, nps, top, sales", func(t *testing.T) {
		measuredToNow(t, func() (*metricsv1.Period, error) {
			r, err := c.GetRepeatPurchase(ctx, &metricsv1.GetRepeatPurchaseRequest{Period: future}, c.creds)
			return r.GetPeriod(), err
		})
		measuredToNow(t, func() (*metricsv1.Period, error) {
			r, err := c.GetNPS(ctx, &metricsv1.GetNPSRequest{Period: future}, c.creds)
			return r.GetPeriod(), err
		})
		measuredToNow(t, func() (*metricsv1.Period, error) {
			r, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: future}, c.creds)
			return r.GetPeriod(), err
		})
		var sales *metricsv1.GetSalesResponse
		measuredToNow(t, func() (_ *metricsv1.Period, err error) {
			sales, err = c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: future}, c.creds)
			return sales.GetPeriod(), err
		})
		if sales.Orders != 2 || sales.NetRevenueMinor != 2700 {
			t.Fatalf("sales so far: %s", dump(sales))
		}
	})
	t.Run("cohorts end at this month", func(t *testing.T) {
		before := retention.MonthOf(time.Now())
		resp, err := c.GetCohorts(ctx, &metricsv1.GetCohortsRequest{FromMonth: from.Format("2006-01"), ToMonth: end.AddDate(1, 0, 0).Format("2006-01")}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		after := retention.MonthOf(time.Now())
		if resp.ToMonth != before.String() && resp.ToMonth != after.String() {
			t.Fatalf("cohorts to %s, want this month %s", resp.ToMonth, after)
		}
		last := resp.Rows[len(resp.Rows)-1]
		if last.Cohort != resp.ToMonth || last.Cells[len(last.Cells)-1].Month != resp.ToMonth {
			t.Fatalf("last row %s", dump(last))
		}
	})
	t.Run("rfm as of now is accepted", func(t *testing.T) {
		resp, err := c.GetRFM(ctx, &metricsv1.GetRFMRequest{At: ts(time.Now())}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Customers != 3 {
			t.Fatalf("rfm: %s", dump(resp))
		}
	})
}

// TestScopes: queries need read, rebuild needs admin, everything a token.
func TestScopes(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	q := &metricsv1.GetRetentionRequest{Period: pbPeriod(mustPeriod(day("2025-04-01"), day("2025-07-01")))}

	writer := s.client(t, "shop", auth.ScopeEventsWrite)
	_, err := writer.GetRetention(ctx, q, writer.creds)
	wantCode(t, err, codes.PermissionDenied)

	reader := s.client(t, "shop", auth.ScopeRead)
	if _, err := reader.GetRetention(ctx, q, reader.creds); err != nil {
		t.Fatal(err)
	}
	_, err = reader.Rebuild(ctx, &metricsv1.RebuildRequest{}, reader.creds)
	wantCode(t, err, codes.PermissionDenied)

	anonymous := metricsv1.NewMetricsServiceClient(s.conn)
	_, err = anonymous.GetRetention(ctx, q)
	wantCode(t, err, codes.Unauthenticated)
}

// TestPoisonMessagesAreDeadLettered: what can never apply is terminated and
// kept with its reason, and the rest of its batch applies.
func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	s := setup(t)
	s.publish(t, "shop", []*eventsv1.Event{
		orderEvent("good", "good", "c1", day("2025-01-01"), 100, "EUR"),
		orderEvent("no-customer", "o2", "", day("2025-01-01"), 100, "EUR"),
		surveyEvent("bad-score", "c1", day("2025-01-01"), eventsv1.SurveyKind_SURVEY_KIND_CSAT, 9),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.bus.Publish(ctx, bus.Message{Subject: bus.EventSubject("shop", "order.placed"), ID: "shop/garbage", Type: "order.placed", Data: []byte{0xff, 0x01}}); err != nil {
		t.Fatal(err)
	}
	s.caughtUp(t)
	pool := s.pool(t)
	rows, err := pool.Query(ctx, `SELECT msg_id, reason FROM bus_dead_letters WHERE consumer = 'metrics-facts' ORDER BY msg_id`)
	if err != nil {
		t.Fatal(err)
	}
	type dl struct{ ID, Reason string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dl])
	if err != nil {
		t.Fatal(err)
	}
	want := []dl{
		{"shop/bad-score", "survey_answered.score: 9 is out of range for CSAT"},
		{"shop/garbage", "cannot decode"},
		{"shop/no-customer", "order_placed.customer_id: is required"},
	}
	if len(got) != len(want) {
		t.Fatalf("dead letters %v, want %v", got, want)
	}
	for i := range want {
		if got[i].ID != want[i].ID || !strings.Contains(got[i].Reason, want[i].Reason) {
			t.Errorf("dead letter %d = %v, want %v", i, got[i], want[i])
		}
	}
	c := s.client(t, "shop")
	sales, err := c.GetSales(ctx, &metricsv1.GetSalesRequest{Period: pbPeriod(mustPeriod(day("2025-01-01"), day("2025-01-02")))}, c.creds)
	if err != nil {
		t.Fatal(err)
	}
	if sales.Orders != 1 {
		t.Fatalf("the good order of the batch was not applied: %s", dump(sales))
	}
}
