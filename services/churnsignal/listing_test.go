package churnsignal_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/auth"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// TestExportByCustomerIDWhileRescoring: scores move while a listing is
// paged (here: weights that rank by purchases and by tickets in turn,
// rescoring every customer between two pages). Listed by customer id, each
// customer comes at most once, and every customer in the band at every
// rescoring comes exactly once; by score, no such promise holds (decision
// 0050). A token of one order does not page the other.
func TestExportByCustomerIDWhileRescoring(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	now := s.clock.Now()
	c := s.client()
	read, admin := s.token(t, "shop", auth.ScopeRead), s.token(t, "shop", auth.ScopeAdmin)
	evs := population(150, now)
	for k := 0; k < 150; k += 2 {
		cust := fmt.Sprintf("p%03d", k)
		evs = append(evs,
			ticketEv(cust+"-t1", cust, now.Add(-2*day), eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING),
			ticketEv(cust+"-t2", cust, now.Add(-5*day), eventsv1.TicketCategory_TICKET_CATEGORY_DELIVERY))
	}
	s.publish(t, "shop", evs...)
	s.caughtUp(t)
	if _, err := c.Refit(ctx, &churnv1.RefitRequest{}, admin); err != nil {
		t.Fatal(err)
	}
	weights := []*churnv1.SetWeightsRequest{
		{PurchaseOutlook: proto.Float64(90), Overdue: proto.Float64(20), SupportTickets: proto.Float64(0), PriceComplaints: proto.Float64(0), Sentiment: proto.Float64(0), Rescore: true},
		{PurchaseOutlook: proto.Float64(0), Overdue: proto.Float64(0), SupportTickets: proto.Float64(90), PriceComplaints: proto.Float64(90), Sentiment: proto.Float64(0), Rescore: true},
	}
	rescore := func(i int) {
		t.Helper()
		if _, err := c.SetWeights(ctx, weights[i%len(weights)], admin); err != nil {
			t.Fatal(err)
		}
	}
	// inBand is who is in band now (nothing changes while it pages).
	inBand := func(band churnv1.RiskBand) map[string]bool {
		out := map[string]bool{}
		for _, r := range listAll(t, s, band, 1000, read) {
			out[r.GetCustomerId()] = true
		}
		return out
	}

	for _, band := range []churnv1.RiskBand{churnv1.RiskBand_RISK_BAND_UNSPECIFIED, churnv1.RiskBand_RISK_BAND_HIGH} {
		t.Run(band.String(), func(t *testing.T) {
			rescore(0)
			always, ever := inBand(band), inBand(band)
			var listed []string
			tok := ""
			for page := 1; ; page++ {
				resp, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{Band: band, Order: churnv1.AtRiskOrder_AT_RISK_ORDER_CUSTOMER_ID, PageSize: 7, PageToken: tok}, read)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range resp.GetCustomers() {
					listed = append(listed, r.GetCustomerId())
				}
				if tok = resp.GetNextPageToken(); tok == "" {
					break
				}
				rescore(page)
				now := inBand(band)
				maps.DeleteFunc(always, func(id string, _ bool) bool { return !now[id] })
				maps.Copy(ever, now)
			}
			if band != churnv1.RiskBand_RISK_BAND_UNSPECIFIED && len(ever) == len(always) {
				t.Fatalf("the rescorings moved no customer in or out of %s: the test shows nothing", band)
			}
			seen := map[string]int{}
			for _, id := range listed {
				if seen[id]++; seen[id] == 2 {
					t.Errorf("%s is listed twice", id)
				}
				if !ever[id] {
					t.Errorf("%s is listed but never was in the band", id)
				}
			}
			for id := range always {
				if seen[id] == 0 {
					t.Errorf("%s was in the band throughout and is not listed", id)
				}
			}
			if !slices.IsSorted(listed) {
				t.Errorf("not listed by customer id: %v", listed)
			}
			t.Logf("%s: %d listed, %d in the band throughout, %d at some point", band, len(listed), len(always), len(ever))
		})
	}

	t.Run("a token continues only its own order", func(t *testing.T) {
		first, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{PageSize: 1}, read)
		if err != nil || first.GetNextPageToken() == "" {
			t.Fatalf("first page: %v %v", first, err)
		}
		_, err = c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{Order: churnv1.AtRiskOrder_AT_RISK_ORDER_CUSTOMER_ID, PageToken: first.GetNextPageToken()}, read)
		if fields := badFields(t, err); !slices.Equal(fields, []string{"page_token"}) {
			t.Fatalf("fields %v (%v)", fields, err)
		}
	})
}
