package churnsignal_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/churnsignal/internal/score"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

const day = 24 * time.Hour

// listAll pages through ListAtRisk.
func listAll(t *testing.T, s *stack, band churnv1.RiskBand, pageSize int32, cred grpc.CallOption) []*churnv1.CustomerRisk {
	t.Helper()
	var out []*churnv1.CustomerRisk
	tok := ""
	for pages := 0; ; pages++ {
		resp, err := s.client().ListAtRisk(context.Background(), &churnv1.ListAtRiskRequest{Band: band, PageSize: pageSize, PageToken: tok}, cred)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp.GetCustomers()...)
		if tok = resp.GetNextPageToken(); tok == "" {
			return out
		}
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
	}
}

func signalsFor(evs []*churnv1.ChurnRiskChanged, customer string) []*churnv1.ChurnRiskChanged {
	var out []*churnv1.ChurnRiskChanged
	for _, e := range evs {
		if e.GetCustomerId() == customer {
			out = append(out, e)
		}
	}
	return out
}

func reasonCodes(rs []*churnv1.RiskReason) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetCode())
	}
	return out
}

func checkReasonsAddUp(t *testing.T, what string, score int32, rs []*churnv1.RiskReason) {
	t.Helper()
	sum := int32(0)
	for _, r := range rs {
		if r.GetDescription() == "" || r.GetContribution() <= 0 {
			t.Errorf("%s: reason %v", what, r)
		}
		sum += r.GetContribution()
	}
	if sum != score {
		t.Errorf("%s: contributions add up to %d, score %d", what, sum, score)
	}
}

// TestLifecycle follows one shop through the service: facts become
// features, a band change publishes exactly one event with its reasons,
// rescoring again publishes nothing, and duplicated, re-sent and replayed
// events change no score.
func TestLifecycle(t *testing.T) {
	s := setup(t)
	top := t // the replayed service must outlive its subtest
	ctx := context.Background()
	now := s.clock.Now()
	read, admin := s.token(t, "shop", auth.ScopeRead), s.token(t, "shop", auth.ScopeAdmin)

	var sent []*eventsv1.Event
	send := func(evs ...*eventsv1.Event) {
		t.Helper()
		s.publish(t, "shop", evs...)
		sent = append(sent, evs...)
	}
	send(population(60, now)...)
	// c-1 ordered every 30 days for 8 months and went quiet 95 days ago.
	var c1 []*eventsv1.Event
	for k := range 8 {
		c1 = append(c1, orderEv(fmt.Sprintf("c1-o%d", k), "c-1", now.Add(-time.Duration(95+30*k)*day), 4200))
	}
	c1 = append(c1, renewalEv("c1-profile", "c-1", now.Add(-200*day), "2026-03-20"))
	send(c1...)
	s.caughtUp(t)

	refit, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if m := refit.GetModel(); m.GetCustomers() != 61 || !m.GetConverged() || m.GetPinned() || refit.GetCustomersRescored() != 61 {
		t.Fatalf("refit: %v", refit)
	}

	var before *churnv1.GetCustomerRiskResponse
	t.Run("facts become features", func(t *testing.T) {
		r, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "c-1"}, read)
		if err != nil {
			t.Fatal(err)
		}
		f := r.GetFeatures()
		if f.GetOrders() != 8 || f.GetPurchaseDays() != 8 || f.GetRepeatPurchases() != 7 || f.GetDaysSinceLastOrder() != 95 ||
			f.GetMeanOrderValue().GetAmountMinor() != 4200 || f.GetMeanOrderValue().GetCurrency() != "EUR" ||
			f.GetRenewalDate() != "2026-03-20" || f.ExpectedPurchases == nil || f.GetHorizonWeeks() != 13 {
			t.Fatalf("features %v", f)
		}
		if r.GetRisk().GetBand() == churnv1.RiskBand_RISK_BAND_HIGH {
			t.Fatalf("c-1 is already high before any ticket: %v", r.GetRisk())
		}
		checkReasonsAddUp(t, "c-1", r.GetRisk().GetScore(), r.GetRisk().GetReasons())
		before = r
	})

	t.Run("a band change publishes exactly one event with reasons", func(t *testing.T) {
		evs, _ := s.signals(t)
		n := len(signalsFor(evs, "c-1"))
		send(
			ticketEv("t1", "c-1", now.Add(-20*day), eventsv1.TicketCategory_TICKET_CATEGORY_DELIVERY),
			resolvedEv("t1", "c-1", now.Add(-18*day)),
			ticketEv("t2", "c-1", now.Add(-9*day), eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING),
			ticketEv("t3", "c-1", now.Add(-2*day), eventsv1.TicketCategory_TICKET_CATEGORY_PRODUCT),
			npsEv("c1-nps", "c-1", now.Add(-5*day), 6),
		)
		evs, ids := s.signals(t)
		mine := signalsFor(evs, "c-1")
		if len(mine) != n+1 {
			t.Fatalf("%d churn.risk_changed for c-1, want %d", len(mine), n+1)
		}
		ev := mine[len(mine)-1]
		if ev.GetBand() != churnv1.RiskBand_RISK_BAND_HIGH || ev.GetPreviousBand() != before.GetRisk().GetBand() || ev.GetTenantId() != "shop" {
			t.Fatalf("event %v", ev)
		}
		if !ev.GetAsOf().AsTime().Equal(now) {
			t.Errorf("as_of %v, want %v", ev.GetAsOf().AsTime(), now)
		}
		checkReasonsAddUp(t, "event", ev.GetScore(), ev.GetReasons())
		codes := reasonCodes(ev.GetReasons())
		for _, want := range []string{score.CodeSupportTickets, score.CodePriceComplaints, score.CodeSentiment, score.CodeOverdue, score.CodePurchaseOutlook} {
			if !slices.Contains(codes, want) {
				t.Errorf("reasons %v lack %s", codes, want)
			}
		}
		var text, shown []string
		for _, r := range ev.GetReasons() {
			text = append(text, r.GetDescription())
			shown = append(shown, fmt.Sprintf("+%d %s: %s", r.GetContribution(), r.GetCode(), r.GetDescription()))
		}
		joined := strings.Join(text, "; ")
		for _, want := range []string{"3 tickets in 30 days, 2 still open", "1 ticket about billing or price in 30 days, 28 days before the renewal on 2026-03-20", "NPS 6 (detractor), 5 days ago", "95 days since the last order, usually orders every 30.9 days"} {
			if !strings.Contains(joined, want) {
				t.Errorf("reasons %q lack %q", joined, want)
			}
		}
		t.Logf("score %d (%s):\n%s", ev.GetScore(), ev.GetBand(), strings.Join(shown, "\n"))
		if id := ids[slices.Index(evs, ev)]; id != fmt.Sprintf("shop/c-1/%d", n+1) {
			t.Errorf("msg id %q, want shop/c-1/%d", id, n+1)
		}
		// The stored score agrees with the event.
		high := listAll(t, s, churnv1.RiskBand_RISK_BAND_HIGH, 10, read)
		if !slices.ContainsFunc(high, func(r *churnv1.CustomerRisk) bool { return r.GetCustomerId() == "c-1" && r.GetScore() == ev.GetScore() }) {
			t.Fatalf("c-1 not listed as high with score %d: %v", ev.GetScore(), high)
		}
	})

	t.Run("rescoring twice emits no second event", func(t *testing.T) {
		before, _ := s.signals(t)
		for range 2 {
			st, err := s.svc.RescoreAll(ctx, "shop")
			if err != nil {
				t.Fatal(err)
			}
			if st.BandChanges != 0 || st.Changed != 0 || st.Customers != 61 {
				t.Fatalf("rescoring: %+v", st)
			}
		}
		for range 2 {
			if r, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, admin); err != nil || r.GetBandChanges() != 0 {
				t.Fatalf("refit: %v %v", r, err)
			}
		}
		after, _ := s.signals(t)
		if len(after) != len(before) {
			t.Fatalf("%d signals after rescoring, %d before", len(after), len(before))
		}
	})

	snapshot := func() []*churnv1.CustomerRisk { return listAll(t, s, churnv1.RiskBand_RISK_BAND_UNSPECIFIED, 7, read) }
	t.Run("paging lists every customer once, highest score first", func(t *testing.T) {
		all := snapshot()
		if len(all) != 61 {
			t.Fatalf("%d customers listed, want 61", len(all))
		}
		seen := map[string]bool{}
		for i, r := range all {
			if seen[r.GetCustomerId()] {
				t.Fatalf("%s listed twice", r.GetCustomerId())
			}
			seen[r.GetCustomerId()] = true
			if i > 0 && r.GetScore() > all[i-1].GetScore() {
				t.Fatalf("not ordered by score: %d after %d", r.GetScore(), all[i-1].GetScore())
			}
		}
		medium := listAll(t, s, churnv1.RiskBand_RISK_BAND_MEDIUM, 5, read)
		for _, r := range medium {
			if r.GetBand() != churnv1.RiskBand_RISK_BAND_MEDIUM {
				t.Fatalf("band filter: %v", r)
			}
		}
	})

	t.Run("duplicated, re-sent and replayed events change no score", func(t *testing.T) {
		scores := snapshot()
		signals, _ := s.signals(t)
		// The same facts re-sent by the shop under new event ids (orders and
		// tickets are keyed by their own ids), and the same messages again
		// (dropped by JetStream's dedupe window).
		var again []*eventsv1.Event
		for _, ev := range sent {
			if ev.GetSurveyAnswered() != nil || ev.GetCustomerUpdated() != nil {
				continue // answers and profile updates are keyed by event id
			}
			c := proto.Clone(ev).(*eventsv1.Event)
			c.Id = "resent-" + c.GetId()
			again = append(again, c)
		}
		s.publish(t, "shop", again...)
		s.publish(t, "shop", sent[:100]...)
		s.caughtUp(t)
		// A replay of the whole stream: a new consumer delivers every
		// message again, and the inbox recognises them all.
		s.stop()
		if err := s.js.DeleteConsumer(ctx, bus.EventsStream, churnsignal.ConsumerName); err != nil {
			t.Fatal(err)
		}
		s.start(top)
		s.caughtUp(t)
		var inbox int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM bus_inbox WHERE consumer = $1`, churnsignal.ConsumerName).Scan(&inbox); err != nil {
			t.Fatal(err)
		}
		if want := len(sent) + len(again); inbox != want {
			t.Fatalf("inbox holds %d ids, want %d", inbox, want)
		}
		if diff := cmp.Diff(scores, snapshot(), protocmp.Transform(), protocmp.IgnoreFields(&churnv1.CustomerRisk{}, "computed_at", "as_of")); diff != "" {
			t.Fatalf("scores changed (-before +after):\n%s", diff)
		}
		if after, _ := s.signals(t); len(after) != len(signals) {
			t.Fatalf("%d signals, %d before", len(after), len(signals))
		}
	})

	t.Run("silence raises risk as time passes", func(t *testing.T) {
		r0, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "p001"}, read)
		if err != nil {
			t.Fatal(err)
		}
		s.clock.Set(now.Add(120 * day))
		if _, err := s.svc.RescoreAll(ctx, "shop"); err != nil {
			t.Fatal(err)
		}
		r1, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "p001"}, read)
		if err != nil {
			t.Fatal(err)
		}
		if !(r1.GetRisk().GetScore() > r0.GetRisk().GetScore()) {
			t.Fatalf("score %d after 120 silent days, %d before", r1.GetRisk().GetScore(), r0.GetRisk().GetScore())
		}
		// The as-of view of the earlier instant is unchanged.
		past, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "p001", AsOf: ts(now)}, read)
		if err != nil {
			t.Fatal(err)
		}
		if past.GetRisk().GetScore() != r0.GetRisk().GetScore() {
			t.Fatalf("as of %s: score %d, want %d", now, past.GetRisk().GetScore(), r0.GetRisk().GetScore())
		}
	})
}

// TestHysteresis drives a detractor's score down through the MEDIUM entry
// threshold as the answer ages: it stays MEDIUM within the hysteresis and
// every band change is announced once.
func TestHysteresis(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	w := score.DefaultWeights()
	w.MediumAt, w.HighAt, w.Hysteresis = 25, 90, 5
	if err := store.SaveWeights(ctx, s.db, "hyst", w); err != nil {
		t.Fatal(err)
	}
	read := s.token(t, "hyst", auth.ScopeRead)
	// NPS 6 today: sentiment 40 x 0.7 = 28 points, halving every 180 days.
	s.publish(t, "hyst", npsEv("a1", "c", now, 6))
	s.caughtUp(t)

	type step struct {
		days  int
		score int32
		band  churnv1.RiskBand
	}
	steps := []step{
		{0, 28, churnv1.RiskBand_RISK_BAND_MEDIUM},
		{20, 26, churnv1.RiskBand_RISK_BAND_MEDIUM},
		{40, 24, churnv1.RiskBand_RISK_BAND_MEDIUM}, // below 25, within the hysteresis
		{30, 25, churnv1.RiskBand_RISK_BAND_MEDIUM},
		{45, 24, churnv1.RiskBand_RISK_BAND_MEDIUM},
		{90, 20, churnv1.RiskBand_RISK_BAND_MEDIUM},
		{100, 19, churnv1.RiskBand_RISK_BAND_LOW},
		{95, 19, churnv1.RiskBand_RISK_BAND_LOW},
		{60, 22, churnv1.RiskBand_RISK_BAND_LOW}, // back above 20, below 25: stays low
	}
	for _, st := range steps {
		s.clock.Set(now.Add(time.Duration(st.days) * day))
		if _, err := s.svc.RescoreAll(ctx, "hyst"); err != nil {
			t.Fatal(err)
		}
		got := listAll(t, s, churnv1.RiskBand_RISK_BAND_UNSPECIFIED, 10, read)
		if len(got) != 1 || got[0].GetScore() != st.score || got[0].GetBand() != st.band {
			t.Fatalf("day %d: %v, want score %d band %s", st.days, got, st.score, st.band)
		}
	}
	evs, ids := s.signals(t)
	if len(evs) != 2 || evs[0].GetBand() != churnv1.RiskBand_RISK_BAND_MEDIUM || evs[0].GetPreviousBand() != churnv1.RiskBand_RISK_BAND_UNSPECIFIED ||
		evs[1].GetBand() != churnv1.RiskBand_RISK_BAND_LOW || evs[1].GetPreviousBand() != churnv1.RiskBand_RISK_BAND_MEDIUM {
		t.Fatalf("signals %v", evs)
	}
	if !slices.Equal(ids, []string{"hyst/c/1", "hyst/c/2"}) {
		t.Fatalf("msg ids %v", ids)
	}
}

// TestOrderIndependence sends the same facts to two tenants, one in order
// and one reversed with repeats and a ticket resolved before it was
// opened: every customer ends with the same score, reasons and features.
func TestOrderIndependence(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	var evs []*eventsv1.Event
	evs = append(evs, population(20, now)...)
	for c := range 5 {
		cust := fmt.Sprintf("p%03d", c)
		evs = append(evs,
			ticketEv(cust+"-t", cust, now.Add(-time.Duration(3+c)*day), eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING),
			resolvedEv(cust+"-t", cust, now.Add(-time.Duration(1+c)*day)),
			npsEv(cust+"-n1", cust, now.Add(-40*day), int32(5+c)),
			npsEv(cust+"-n2", cust, now.Add(-4*day), int32(9-c)),
			renewalEv(cust+"-u1", cust, now.Add(-50*day), "2026-03-05"),
			renewalEv(cust+"-u2", cust, now.Add(-10*day), ""),
		)
	}
	// The same order twice under two event ids, one a day later.
	dup := orderEv("p001-o0", "p001", now.Add(-299*day), 999)
	dup.Id = "p001-o0-again"
	evs = append(evs, dup)

	s.publish(t, "ordered", evs...)
	rev := slices.Clone(evs)
	slices.Reverse(rev)
	for i := 0; i < len(rev); i += 50 {
		s.publish(t, "reversed", rev[i:min(i+50, len(rev))]...)
		s.publish(t, "reversed", rev[i/2]) // repeats, dropped or recognised
	}
	s.caughtUp(t)
	for _, tenant := range []string{"ordered", "reversed"} {
		if _, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, s.token(t, tenant, auth.ScopeAdmin)); err != nil {
			t.Fatal(err)
		}
	}
	for c := range 20 {
		cust := fmt.Sprintf("p%03d", c)
		var got [2]*churnv1.GetCustomerRiskResponse
		for i, tenant := range []string{"ordered", "reversed"} {
			r, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: cust}, s.token(t, tenant, auth.ScopeRead))
			if err != nil {
				t.Fatal(err)
			}
			got[i] = r
		}
		if diff := cmp.Diff(got[0], got[1], protocmp.Transform()); diff != "" {
			t.Fatalf("%s differs (-ordered +reversed):\n%s", cust, diff)
		}
		if c < 5 && (got[0].GetFeatures().GetRenewalDate() != "" || got[0].GetFeatures().GetLatestNps() != int32(9-c) || got[0].GetFeatures().GetOpenTickets() != 0) {
			t.Fatalf("%s features %v", cust, got[0].GetFeatures())
		}
	}
}

// TestRefitAsOfUsesOnlyEarlierEvents fits as of an instant between two
// halves of the history: the model and the as-of reads see only the first.
func TestRefitAsOfUsesOnlyEarlierEvents(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	cut := now.Add(-120 * day)
	admin, read := s.token(t, "shop", auth.ScopeAdmin), s.token(t, "shop", auth.ScopeRead)
	evs := population(60, now)
	// A customer whose first order is after the cut, and a ticket after it.
	evs = append(evs, orderEv("late-o1", "late", cut.Add(day), 100), orderEv("late-o2", "late", cut.Add(30*day), 100),
		ticketEv("p001-t", "p001", cut.Add(2*day), eventsv1.TicketCategory_TICKET_CATEGORY_OTHER))
	s.publish(t, "shop", evs...)
	s.caughtUp(t)

	pinned, err := s.client().Refit(ctx, &churnv1.RefitRequest{AsOf: ts(cut)}, admin)
	if err != nil {
		t.Fatal(err)
	}
	// Count what existed by the cut independently of the service.
	customers := map[string]bool{}
	for _, ev := range evs {
		if o := ev.GetOrderPlaced(); o != nil && !ev.GetOccurredAt().AsTime().After(cut) {
			customers[o.GetCustomerId()] = true
		}
	}
	m := pinned.GetModel()
	if int(m.GetCustomers()) != len(customers) || customers["late"] || !m.GetPinned() || !m.GetAsOf().AsTime().Equal(cut) {
		t.Fatalf("pinned model %v; want %d customers", m, len(customers))
	}
	live, err := s.client().Refit(ctx, &churnv1.RefitRequest{}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if live.GetModel().GetCustomers() != 61 || live.GetModel().GetPinned() || live.GetModel().GetR() == m.GetR() {
		t.Fatalf("live model %v vs pinned %v", live.GetModel(), m)
	}
	got, err := s.client().GetModel(ctx, &churnv1.GetModelRequest{}, read)
	if err != nil || !proto.Equal(got.GetModel(), live.GetModel()) {
		t.Fatalf("GetModel %v, %v; want %v", got, err, live.GetModel())
	}

	if _, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "late", AsOf: ts(cut)}, read); status.Code(err) != codes.NotFound {
		t.Fatalf("late customer as of the cut: %v, want NotFound", err)
	}
	r, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "p001", AsOf: ts(cut)}, read)
	if err != nil {
		t.Fatal(err)
	}
	if f := r.GetFeatures(); f.GetTickets_30D() != 0 || f.GetLastOrderAt().AsTime().After(cut) || !r.GetRisk().GetAsOf().AsTime().Equal(cut) {
		t.Fatalf("as of the cut: %v", r)
	}
	r, err = s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "p001", AsOf: ts(cut.Add(3 * day))}, read)
	if err != nil || r.GetFeatures().GetTickets_30D() != 1 {
		t.Fatalf("after the ticket: %v %v", r, err)
	}
}

// TestAPI checks scopes, tenant isolation and argument validation.
func TestAPI(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	s.publish(t, "shop", population(30, now)...)
	s.caughtUp(t)
	c := s.client()
	read, admin, write := s.token(t, "shop", auth.ScopeRead), s.token(t, "shop", auth.ScopeAdmin), s.token(t, "shop", auth.ScopeEventsWrite)

	t.Run("scopes", func(t *testing.T) {
		if _, err := c.GetModel(ctx, &churnv1.GetModelRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("no token: %v", err)
		}
		if _, err := c.GetModel(ctx, &churnv1.GetModelRequest{}, write); status.Code(err) != codes.PermissionDenied {
			t.Errorf("events:write token: %v", err)
		}
		if _, err := c.Refit(ctx, &churnv1.RefitRequest{}, read); status.Code(err) != codes.PermissionDenied {
			t.Errorf("refit with read: %v", err)
		}
		if _, err := c.GetModel(ctx, &churnv1.GetModelRequest{}, read); status.Code(err) != codes.NotFound {
			t.Errorf("model before the first fit: %v", err)
		}
		if _, err := c.Refit(ctx, &churnv1.RefitRequest{}, admin); err != nil {
			t.Errorf("refit with admin: %v", err)
		}
		if _, err := c.GetModel(ctx, &churnv1.GetModelRequest{}, read); err != nil {
			t.Errorf("model with read: %v", err)
		}
	})
	t.Run("tenant from the token only", func(t *testing.T) {
		other := s.token(t, "other", auth.ScopeAdmin)
		if _, err := c.GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "p001"}, other); status.Code(err) != codes.NotFound {
			t.Errorf("another tenant's customer: %v", err)
		}
		if l, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{}, other); err != nil || len(l.GetCustomers()) != 0 {
			t.Errorf("another tenant's list: %v %v", l, err)
		}
		if _, err := c.Refit(ctx, &churnv1.RefitRequest{}, other); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("refit without orders: %v", err)
		}
	})
	t.Run("invalid arguments name their fields", func(t *testing.T) {
		tests := []struct {
			name   string
			call   func() error
			fields []string
		}{
			{"no customer", func() error {
				_, err := c.GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{}, read)
				return err
			}, []string{"customer_id"}},
			{"future as_of", func() error {
				_, err := c.GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "p001", AsOf: ts(now.Add(time.Hour))}, read)
				return err
			}, []string{"as_of"}},
			{"long id and future as_of", func() error {
				_, err := c.GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: strings.Repeat("x", 300), AsOf: ts(now.Add(time.Hour))}, read)
				return err
			}, []string{"customer_id", "as_of"}},
			{"negative page size and high band", func() error {
				_, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{PageSize: -1, Band: churnv1.RiskBand_RISK_BAND_HIGH}, read)
				return err
			}, []string{"page_size"}},
			// The server refuses an unknown band before the handler
			// looks at the rest (decision 0049).
			{"negative page size and unknown band", func() error {
				_, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{PageSize: -1, Band: 9}, read)
				return err
			}, []string{"band"}},
			{"bad page token", func() error {
				_, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{PageToken: "nope!"}, read)
				return err
			}, []string{"page_token"}},
			{"refit in the future", func() error {
				_, err := c.Refit(ctx, &churnv1.RefitRequest{AsOf: ts(now.Add(day))}, admin)
				return err
			}, []string{"as_of"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.call()
				if fields := badFields(t, err); !slices.Equal(fields, tt.fields) {
					t.Fatalf("fields %v, want %v (%v)", fields, tt.fields, err)
				}
			})
		}
		// A token of one band listing used for another.
		l, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{PageSize: 1}, read)
		if err != nil || l.GetNextPageToken() == "" {
			t.Fatalf("first page: %v %v", l, err)
		}
		if _, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{PageSize: 1, Band: churnv1.RiskBand_RISK_BAND_HIGH, PageToken: l.GetNextPageToken()}, read); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("token of another listing: %v", err)
		}
	})
}

// TestPoisonFactsAreDeadLettered: an undecodable or incomplete fact is
// dead-lettered with its reason and the consumer goes on.
func TestPoisonFactsAreDeadLettered(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	bad := orderEv("bad-1", "", now, 100) // no customer id
	s.publish(t, "shop", bad)
	if _, err := s.pub.PublishDurable(ctx, []bus.Message{{Subject: bus.EventSubject("shop", "order.placed"), ID: "shop/garbage", Type: "order.placed", Data: []byte("\xff\xff not protobuf")}}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, "shop", orderEv("good-1", "c", now, 100))
	s.caughtUp(t)
	rows, err := s.db.Query(ctx, `SELECT msg_id, reason FROM bus_dead_letters WHERE consumer = $1 ORDER BY msg_id`, churnsignal.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id, reason string
		if err := rows.Scan(&id, &reason); err != nil {
			t.Fatal(err)
		}
		got = append(got, id+": "+reason)
	}
	if len(got) != 2 || !strings.Contains(got[0], "shop/bad-1: invalid event: order_placed.customer_id: is required") || !strings.Contains(got[1], "shop/garbage: invalid event: cannot decode") {
		t.Fatalf("dead letters %q", got)
	}
	if _, err := s.client().GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: "c"}, s.token(t, "shop", auth.ScopeRead)); err != nil {
		t.Fatalf("the good fact after the poison ones: %v", err)
	}
}
